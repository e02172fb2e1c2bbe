"""Lineage for batch exports: Airflow asset events and OpenLineage datasets.

``target`` reduces an export to what lineage may know (no credentials), ``assets`` names the destination's
asset and emits the event through the task's alias, ``openlineage`` builds the OpenLineage datasets, and
``mixin`` gives operators and sensors the options and reads the export once a wait succeeded. Importing
any of them imports neither OpenLineage nor anything that touches the network.
"""

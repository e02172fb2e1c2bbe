"""Why a templated argument came out empty: the raw template of each field, and what the template reads.

Airflow renders a task's template fields in place just before ``execute``, so a
``batch_export_id="{{ var.value.posthog_batch_export_id }}"`` that rendered to ``""`` leaves nothing to say
where the empty value came from. :class:`TemplateSourcesMixin` keeps the raw template of each templated field
and the run's params while Airflow renders them, so an error can quote the template and name the param or
Variable it reads. What Airflow 3 does with each kind of reference:

- ``{{ var.value.x }}`` / ``{{ var.json.x }}`` with no Variable ``x``: rendering raises (the task fails before
  ``execute``); an existing but empty Variable renders ``""``.
- ``{{ var.value.get('x', '') }}``: the default when ``x`` does not exist.
- ``{{ params.x }}`` with no param ``x``: rendering raises (the DAG's templates are strict); a param whose
  value is ``None`` renders the string ``"None"``, an empty one ``""``.

See https://airflow.apache.org/docs/apache-airflow/stable/templates-ref.html.

Every DAG file imports this module (the mixin is a base of every operator and sensor), so it holds only the
mixin and two predicates; the explanations (``tasks.template_snapshot``) load when a task renders.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_posthog.tasks.args import config_error, optional_id, require_id

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context

    from airflow_provider_posthog.tasks.template_snapshot import TemplateSnapshot

_MARKERS = ("{{", "{%")


def is_template(value: Any) -> bool:
    """A string Jinja will render (as opposed to a literal)."""
    return isinstance(value, str) and any(marker in value for marker in _MARKERS)


def blank(value: Any) -> bool:
    """What a required value must not be after rendering: nothing, blank, or the ``"None"`` of a None."""
    return value is None or (isinstance(value, str) and value.strip() in ("", "None"))


class TemplateSourcesMixin:
    """Keeps each templated field's raw template while Airflow renders it, to explain empty results.

    Mix in before ``BaseOperator``. ``require_field`` / ``optional_field`` read a rendered id; a task whose
    fields were never rendered (``execute`` called directly) gets the plain checks of ``tasks.args``.
    """

    template_fields: Any
    _template_snapshot: TemplateSnapshot | None = None

    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        sources: dict[str, str] = {}
        for name in self.template_fields:
            value = getattr(self, name, None)
            if isinstance(value, str) and is_template(value):
                sources[name] = value
        from airflow_provider_posthog.tasks.template_snapshot import TemplateSnapshot

        var = context.get("var")
        self._template_snapshot = TemplateSnapshot(
            sources=sources,
            params=dict(context.get("params") or {}),
            variables=var.get("value") if isinstance(var, Mapping) else None,
        )
        try:
            super().render_template_fields(context, jinja_env)  # type: ignore[misc]
        except Exception as exc:
            # Airflow renders the fields in order and sets each one once rendered: the first template still
            # in place is the one that failed.
            failed = next((n for n, raw in sources.items() if getattr(self, n, None) is raw), None)
            message = None if failed is None else self._template_snapshot.explain_render_error(failed, exc)
            if message is None:
                raise
            raise config_error(message) from exc

    def template_source(self, name: str) -> str | None:
        """The raw template field ``name`` was rendered from (``None``: a literal, or not rendered)."""
        return None if self._template_snapshot is None else self._template_snapshot.sources.get(name)

    def require_field(self, name: str) -> str:
        """The rendered id in attribute ``name``; if its template rendered empty, say which and why."""
        value = getattr(self, name)
        snapshot = self._template_snapshot
        if snapshot is not None and name in snapshot.sources and blank(value):
            raise config_error(snapshot.explain_blank(name, value))
        return require_id(value, name)

    def optional_field(self, name: str) -> str | None:
        """As :meth:`require_field` for an id that may be left out: blank, or a template's ``"None"``."""
        value = getattr(self, name)
        if self.template_source(name) is not None and blank(value):
            return None
        return optional_id(value, name)

"""Destination builders end to end: real Airflow (``dag.test()``), real HTTP to the emulator on 127.0.0.1.

The DAG file below is what a user writes: an ``S3Destination`` naming the ``aws_default`` connection and a
templated prefix. It lives in its own DAG bundle (a temporary folder), so the DAG file is parsed by Airflow
exactly as a deployment would parse it. The connection is an ``AIRFLOW_CONN_AWS_DEFAULT`` variable with the
Amazon provider's field meanings (login = access key id, password = secret, extra ``region_name``).
"""

from __future__ import annotations

import json
import socket
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pathlib import Path

KEY_ID = "AKIADESTINATIONSE2E1"
SECRET = "destinations-e2e/Secret+Key-0123456789abcdef"
REGION = "eu-central-1"
CREATE_DAG = "posthog_destinations_e2e_create"
UPDATE_DAG = "posthog_destinations_e2e_update"
LOGICAL_DATE = "2024-03-01T00:00:00+00:00"

DAG_FILE = f'''
import datetime as dt
import os

import pendulum
from airflow.sdk import DAG

from airflow_provider_posthog.destinations import S3Destination
from airflow_provider_posthog.operators.batch_export import (
    PostHogCreateBatchExportOperator,
    PostHogUpdateBatchExportOperator,
)



def record_failure(context):
    """What a notifier (Slack, e-mail) gets: the exception object itself, unmasked by the log masker."""
    path = os.environ.get("POSTHOG_E2E_FAILURES")
    if path:
        with open(path, "a") as out:
            out.write(repr(context.get("exception")) + "\\n")


DEFAULTS = {{"retries": 2, "retry_delay": dt.timedelta(0), "on_failure_callback": record_failure}}

with DAG(
    dag_id="{CREATE_DAG}",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    default_args=DEFAULTS,
):
    PostHogCreateBatchExportOperator(
        task_id="create_export",
        name="events-to-s3 {{{{ ds }}}}",
        interval="hour",
        model="events",
        destination=S3Destination(
            bucket_name="analytics-raw", prefix="posthog/{{{{ ds }}}}/", aws_conn_id="aws_default"
        ),
    )

with DAG(
    dag_id="{UPDATE_DAG}",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    default_args=DEFAULTS,
    params={{"batch_export_id": ""}},
):
    PostHogUpdateBatchExportOperator(
        task_id="move_export",
        batch_export_id="{{{{ params.batch_export_id }}}}",
        destination=S3Destination(
            bucket_name="analytics-v2",
            prefix="v2/{{{{ ds }}}}/",
            aws_conn_id="aws_default",
            file_format="Parquet",
            compression="zstd",
        ),
    )
'''


# ------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def dag_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("destinations_dags")
    (folder / "posthog_destinations_e2e.py").write_text(DAG_FILE)
    return folder


@pytest.fixture
def bundle(dag_folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Airflow's default ``dags-folder`` bundle plus one holding this module's DAG file."""
    from airflow.configuration import conf

    bundles = json.loads(conf.get("dag_processor", "dag_bundle_config_list"))
    bundles = [b for b in bundles if b["name"] != "destinations-e2e"]
    bundles.append(
        {
            "name": "destinations-e2e",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(dag_folder), "refresh_interval": 0},
        }
    )
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))
    return dag_folder


@pytest.fixture
def dags(airflow_dags: Any, bundle: Path) -> dict[str, Any]:
    """Freshly parsed: ``dag.test()`` runs these objects, and each test must start from the DAG file."""
    return airflow_dags.parse(bundle)


@pytest.fixture
def aws_default(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {"conn_type": "aws", "login": KEY_ID, "password": SECRET, "extra": {"region_name": REGION}}
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(conn))


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Records (and refuses) every outgoing connection attempt."""
    attempts: list[Any] = []

    def connect(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise OSError("network used while parsing the DAG file")

    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


# -------------------------------------------------------------------------------------------------- helpers


def _run(dag: Any, **conf: Any) -> Any:
    import pendulum

    return dag.test(logical_date=pendulum.parse(LOGICAL_DATE), run_conf=conf or None)


def _rendered(dag_id: str, run_id: str) -> list[dict[str, Any]]:
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(RenderedTaskInstanceFields).where(
                RenderedTaskInstanceFields.dag_id == dag_id, RenderedTaskInstanceFields.run_id == run_id
            )
        ).all()
        return [dict(r.rendered_fields) for r in rows]


def _serialized(dag_id: str) -> str:
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = SerializedDagModel.get(dag_id, session=session)
        assert row is not None
        return json.dumps(row.data)


def _log_files(dag_id: str) -> str:
    """Whatever Airflow wrote to task log files for this DAG (``dag.test()`` also prints to stdout)."""
    from airflow.configuration import conf

    base = conf.get("logging", "base_log_folder")
    from pathlib import Path

    return "\n".join(
        p.read_text(errors="replace") for p in Path(base).rglob("*") if p.is_file() and dag_id in str(p)
    )


# ---------------------------------------------------------------------------------------------------- tests


def test_the_dag_file_parses_with_no_connection_and_no_network(
    airflow_dags: Any, bundle: Path, no_network: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from unittest import mock

    from tests.airflow_versions import dag_serialization

    DagSerialization = dag_serialization()

    from airflow_provider_posthog.destinations import S3Destination

    monkeypatch.delenv("AIRFLOW_CONN_AWS_DEFAULT", raising=False)
    with mock.patch(
        "airflow.sdk.BaseHook.get_connection", side_effect=AssertionError("connection looked up")
    ) as lookup:
        parsed = airflow_dags.parse(bundle)
        for dag in parsed.values():
            json.dumps(DagSerialization.to_dict(dag))  # what the DAG processor stores
    assert lookup.call_count == 0
    assert no_network == []
    assert sorted(parsed) == [CREATE_DAG, UPDATE_DAG]
    builder = parsed[CREATE_DAG].get_task("create_export").destination
    assert isinstance(builder, S3Destination) and builder.prefix == "posthog/{{ ds }}/"


def test_create_with_an_aws_connection_reaches_posthog_and_the_secret_goes_nowhere_else(
    dags: dict[str, Any],
    posthog_conn: Any,
    airflow_dags: Any,
    aws_default: None,
    capfd: pytest.CaptureFixture[str],
) -> None:
    emu = posthog_conn
    dag = dags[CREATE_DAG]
    dr = _run(dag)
    out = capfd.readouterr()
    assert dr.state == "success", airflow_dags.task_states(dag.dag_id, dr.run_id)

    # (a) The export reached PostHog (over HTTP) with the connection's keys and the rendered prefix.
    xcoms = airflow_dags.xcoms(dag.dag_id, dr.run_id)
    export_id = xcoms[("create_export", "return_value")]
    stored = emu.control.get_export(export_id)
    assert stored["name"] == "events-to-s3 2024-03-01"
    assert stored["destination"]["type"] == "S3"
    config = stored["destination"]["config"]
    assert config["bucket_name"] == "analytics-raw"
    assert config["prefix"] == "posthog/2024-03-01/"
    assert config["region"] == REGION
    assert config["aws_access_key_id"] == KEY_ID
    assert config["aws_secret_access_key"] == SECRET
    assert emu.control.count_requests("POST", "/batch_exports") == 1

    # (b) ... and nowhere else: task logs, XCom, rendered template fields, the serialized DAG.
    assert "Created batch export 'events-to-s3 2024-03-01'" in out.out  # the task log was captured
    assert SECRET not in out.out and SECRET not in out.err
    assert SECRET not in _log_files(dag.dag_id)
    assert xcoms and SECRET not in repr(xcoms)
    rendered = _rendered(dag.dag_id, dr.run_id)
    assert rendered and any("events-to-s3 2024-03-01" in repr(r) for r in rendered)
    assert all("destination" not in r and SECRET not in repr(r) for r in rendered)
    assert SECRET not in _serialized(dag.dag_id)


def test_an_error_quoting_the_secret_is_scrubbed_before_it_leaves_the_task(
    dags: dict[str, Any],
    posthog_conn: Any,
    airflow_dags: Any,
    aws_default: None,
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PostHog rejects the config quoting the submitted key: neither the log nor the exception a failure
    callback receives may carry it."""
    emu = posthog_conn
    failures = tmp_path / "failures.txt"
    monkeypatch.setenv("POSTHOG_E2E_FAILURES", str(failures))
    emu.control.add_fault(
        r"/batch_exports/?$",
        method="POST",
        status=400,
        body={
            "type": "validation_error",
            "code": "invalid_input",
            "detail": f"The AWS secret access key {SECRET} was rejected by S3.",
            "attr": "destination",
        },
    )
    dag = dags[CREATE_DAG]
    dr = _run(dag)
    out = capfd.readouterr()
    assert dr.state == "failed"
    assert airflow_dags.task_states(dag.dag_id, dr.run_id)["create_export"] == (
        "failed",
        1,
    )  # a 400 is not retried
    assert emu.control.count_requests("POST", "/batch_exports") == 1  # it did go out, with the key
    assert "The AWS secret access key *** was rejected by S3. [field: destination]" in out.out
    assert SECRET not in out.out and SECRET not in out.err
    assert SECRET not in _log_files(dag.dag_id)
    from airflow import __version__ as airflow_version

    seen = failures.read_text()
    assert SECRET not in seen
    if tuple(int(p) for p in airflow_version.split(".")[:2]) >= (3, 3):
        # dag.test() of Airflow 3.1 and 3.2 hands failure callbacks no exception; 3.3 hands them the task's.
        assert "PostHogValidationError" in seen and "The AWS secret access key *** was rejected" in seen


def test_a_missing_connection_fails_once_before_any_request(
    dags: dict[str, Any],
    posthog_conn: Any,
    airflow_dags: Any,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    emu = posthog_conn
    monkeypatch.delenv("AIRFLOW_CONN_AWS_DEFAULT", raising=False)
    dag = dags[CREATE_DAG]
    dr = _run(dag)
    assert dr.state == "failed"
    assert airflow_dags.task_states(dag.dag_id, dr.run_id)["create_export"] == (
        "failed",
        1,
    )  # retries=2, not retried
    assert (
        "aws_conn_id='aws_default': no Airflow connection with this id is defined." in capfd.readouterr().out
    )
    assert emu.control.request_log == []  # not even the list of exports: nothing reached PostHog


def test_update_with_a_builder_changes_the_destination(
    dags: dict[str, Any],
    posthog_conn: Any,
    airflow_dags: Any,
    aws_default: None,
    capfd: pytest.CaptureFixture[str],
) -> None:
    emu = posthog_conn
    export = emu.control.seed_export(
        name="events-to-s3",
        interval="hour",
        destination={
            "type": "S3",
            "config": {
                "bucket_name": "analytics-raw",
                "region": "us-east-1",
                "prefix": "posthog/",
                "aws_access_key_id": "AKIAOLDKEY0000000000",
                "aws_secret_access_key": "old-secret",
            },
        },
    )
    dag = dags[UPDATE_DAG]
    dr = _run(dag, batch_export_id=str(export["id"]))
    out = capfd.readouterr()
    assert dr.state == "success", airflow_dags.task_states(dag.dag_id, dr.run_id)
    config = emu.control.get_export(str(export["id"]))["destination"]["config"]
    assert config["bucket_name"] == "analytics-v2"
    assert config["prefix"] == "v2/2024-03-01/"
    assert config["region"] == REGION
    assert (config["file_format"], config["compression"]) == ("Parquet", "zstd")
    assert (config["aws_access_key_id"], config["aws_secret_access_key"]) == (KEY_ID, SECRET)
    assert emu.control.count_requests("PATCH", f"/batch_exports/{export['id']}") == 1
    assert SECRET not in out.out and SECRET not in out.err
    rendered = _rendered(dag.dag_id, dr.run_id)
    assert rendered and all(SECRET not in repr(r) for r in rendered)
    assert SECRET not in repr(airflow_dags.xcoms(dag.dag_id, dr.run_id))

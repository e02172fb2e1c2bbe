"""An in-memory PostHog for unit tests of operators, sensors and triggers (no HTTP, no emulator).

The tasks poll and cancel through ``hook.run(op)`` / ``await hook.arun(op)``, so these tests drive the real
operations of ``airflow_provider_posthog.api`` against scripted answers: :class:`FakePostHog` answers the
requests of the wait and cancel operations, and :func:`fake_hook` / :func:`fake_async_hook` are real hooks
whose transport is that fake. A test may still replace a public hook method it does not exercise (e.g.
``hook.create_backfill = mock.Mock(...)``).

Scripts: ``backfills[id]`` and ``runs_by_id[id]`` are lists of rows (or exceptions) answered one per GET, the
last one repeated; ``run_list`` is what the runs list answers (a list of rows, or a list of such lists /
exceptions answered one per call, the last repeated); ``cancels`` maps an id to what a cancel POST does:
``"cancel"`` (the job's next GETs say ``Cancelled``), ``"ignore"`` (success, nothing changes) or an exception.
``fail_next(n, exc)`` makes the next ``n`` requests raise ``exc`` (an outage).
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import TYPE_CHECKING, Any

from airflow_provider_posthog.api.connection import ConnectionSettings
from airflow_provider_posthog.api.errors import error_from_response
from airflow_provider_posthog.api.http import ApiResponse, RequestSpec
from airflow_provider_posthog.api.retry import NO_DEADLINE, Deadline, RetryPolicy
from airflow_provider_posthog.exceptions import PostHogAPIError, PostHogTransportError
from airflow_provider_posthog.hooks.posthog import PostHogHook
from airflow_provider_posthog.hooks.posthog_async import PostHogAsyncHook

if TYPE_CHECKING:
    from collections.abc import Callable
    from unittest import mock

EXPORT = "0190-export"
BACKFILL = "0190-backfill"
HOST = "https://ph.test"
PROJECT = 1

#: One attempt per request: the wait loop, not the hook's retries, is what these tests look at.
ONE_ATTEMPT = RetryPolicy(max_attempts=1, backoff_initial=0, backoff_max=0)


def backfill_row(status: str = "Running", **extra: Any) -> dict[str, Any]:
    return {
        "id": BACKFILL,
        "status": status,
        "batch_export": EXPORT,
        "start_at": "2024-01-01T00:00:00Z",
        # One interval of the hourly export, which ``run_row``'s default run covers: a completed backfill
        # succeeds only when every interval of its range has a completed run.
        "end_at": "2024-01-01T01:00:00Z",
        "created_at": "2024-01-02T00:00:00Z",
        **extra,
    }


def run_row(
    status: str = "Completed",
    *,
    run_id: str = "run-1",
    start: str = "2024-01-01T00:00:00Z",
    end: str = "2024-01-01T01:00:00Z",
    backfill_id: str | None = BACKFILL,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": run_id,
        "status": status,
        "batch_export": EXPORT,
        "backfill": backfill_id,
        "data_interval_start": start,
        "data_interval_end": end,
        "created_at": "2024-01-02T00:00:01Z",
        "records_completed": 10 if status == "Completed" else None,
        **extra,
    }


def export_row(interval: str = "hour", **extra: Any) -> dict[str, Any]:
    return {
        "id": EXPORT,
        "name": "events to S3",
        "interval": interval,
        "paused": False,
        "destination": {"type": "S3", "config": {"bucket_name": "b", "prefix": "p"}},
        **extra,
    }


def http_error(status: int, detail: str = "", *, method: str = "GET", path: str = "/x") -> PostHogAPIError:
    """The exception the hooks raise for an error answer with PostHog's envelope."""
    body = json.dumps({"type": "server_error", "detail": detail or f"HTTP {status}"}).encode()
    return error_from_response(method=method, path=path, status=status, content=body)


def dropped(method: str = "GET", path: str = "/x") -> PostHogTransportError:
    """A connection that closed without an answer."""
    return PostHogTransportError(
        f"PostHog API {method} {path}: RemoteDisconnected",
        method=method,
        path=path,
        code="RemoteDisconnected",
    )


_ROUTES: tuple[tuple[str, str, str], ...] = (
    ("GET", r"^batch_exports/(?P<e>[^/]+)/$", "export"),
    ("GET", r"^batch_exports/(?P<e>[^/]+)/backfills/$", "backfill_list"),
    ("GET", r"^batch_exports/(?P<e>[^/]+)/backfills/(?P<id>[^/]+)/$", "backfill"),
    ("POST", r"^batch_exports/(?P<e>[^/]+)/backfills/(?P<id>[^/]+)/cancel/$", "cancel"),
    ("GET", r"^batch_exports/(?P<e>[^/]+)/runs/$", "run_list"),
    ("GET", r"^batch_exports/(?P<e>[^/]+)/runs/(?P<id>[^/]+)/$", "run"),
    ("POST", r"^batch_exports/(?P<e>[^/]+)/runs/(?P<id>[^/]+)/cancel/$", "cancel"),
    ("GET", r"^batch_exports/(?P<e>[^/]+)/logs/$", "logs"),
)


@dataclasses.dataclass
class FakePostHog:
    """Scripted answers to the requests of the wait and cancel operations; ``sent`` logs every request."""

    backfills: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
    runs_by_id: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
    run_list: list[Any] = dataclasses.field(default_factory=list)
    export: dict[str, Any] = dataclasses.field(default_factory=export_row)
    cancels: dict[str, Any] = dataclasses.field(default_factory=dict)
    logs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    sent: list[RequestSpec] = dataclasses.field(default_factory=list)
    _failures: list[BaseException] = dataclasses.field(default_factory=list)
    _cancelled: set[str] = dataclasses.field(default_factory=set)
    _list_calls: int = 0

    # -- scripting ----------------------------------------------------------------------------------------
    def backfill(
        self, *statuses: str | BaseException, backfill_id: str = BACKFILL, **extra: Any
    ) -> FakePostHog:
        """The answers of successive GETs of the backfill (statuses or exceptions; the last repeats)."""
        self.backfills[backfill_id] = [
            s if isinstance(s, BaseException) else backfill_row(s, id=backfill_id, **extra) for s in statuses
        ]
        return self

    def run(self, *statuses: str | BaseException, run_id: str = "run-1", **extra: Any) -> FakePostHog:
        """The answers of successive GETs of one run (statuses or exceptions; the last repeats)."""
        self.runs_by_id[run_id] = [
            s if isinstance(s, BaseException) else run_row(s, run_id=run_id, **extra) for s in statuses
        ]
        return self

    def fail_next(self, count: int, exc: BaseException | None = None) -> FakePostHog:
        """The next ``count`` requests, whatever they are, raise ``exc`` (default: HTTP 503)."""
        self._failures.extend([exc or http_error(503, "Service Unavailable")] * count)
        return self

    def paths(self, method: str | None = None) -> list[str]:
        return [s.path for s in self.sent if method is None or s.method == method]

    # -- answering ----------------------------------------------------------------------------------------
    def answer(self, spec: RequestSpec) -> Any:
        self.sent.append(spec)
        if self._failures:
            raise self._failures.pop(0)
        for method, pattern, kind in _ROUTES:
            match = re.match(pattern, spec.path)
            if match and method == spec.method:
                return getattr(self, f"_{kind}")(match.groupdict(), spec)
        raise http_error(404, f"the fake has no answer for {spec.method} {spec.path}")

    @staticmethod
    def _next(script: list[Any], what: str) -> Any:
        if not script:
            raise http_error(404, f"Not found: {what}")
        answer = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def _export(self, ids: dict[str, str], spec: RequestSpec) -> Any:
        return dict(self.export, id=ids["e"])

    def _job_row(self, scripts: dict[str, list[Any]], kind: str, job_id: str) -> Any:
        """The next scripted row of a backfill or run; ``Cancelled`` once a cancel took effect."""
        row = dict(self._next(scripts.get(job_id, []), f"{kind} {job_id}"))
        if job_id in self._cancelled:
            row["status"] = "Cancelled"
        return row

    def _backfill(self, ids: dict[str, str], spec: RequestSpec) -> Any:
        return self._job_row(self.backfills, "backfill", ids["id"])

    def _backfill_list(self, ids: dict[str, str], spec: RequestSpec) -> Any:
        rows = [
            dict(script[0]) for script in self.backfills.values() if script and isinstance(script[0], dict)
        ]
        return {"next": None, "results": rows}

    def _run(self, ids: dict[str, str], spec: RequestSpec) -> Any:
        return self._job_row(self.runs_by_id, "run", ids["id"])

    def _run_list(self, ids: dict[str, str], spec: RequestSpec) -> Any:
        self._list_calls += 1
        script = self.run_list
        if script and all(isinstance(item, (list, BaseException)) for item in script):
            rows = self._next(script, "runs")
        else:
            rows = script
        return {"next": None, "results": [dict(r) for r in rows]}

    def _cancel(self, ids: dict[str, str], spec: RequestSpec) -> Any:
        effect = self.cancels.get(ids["id"], "cancel")
        if isinstance(effect, BaseException):
            raise effect
        if effect == "cancel":
            self._cancelled.add(ids["id"])
        return None

    def _logs(self, ids: dict[str, str], spec: RequestSpec) -> Any:
        return {"results": list(self.logs)}


SETTINGS = ConnectionSettings(base_url=HOST, api_key="phx_fake_key_for_tests", project_id=PROJECT)


class _FakeSettings:
    """Fixed settings instead of an Airflow connection."""

    def _settings(self, project_id: int | str | None = None) -> ConnectionSettings:
        return SETTINGS.with_project(project_id)

    async def _asettings(self, project_id: int | str | None = None) -> ConnectionSettings:
        return SETTINGS.with_project(project_id)


class FakeHook(_FakeSettings, PostHogHook):
    """A real ``PostHogHook`` whose requests are answered by a :class:`FakePostHog`."""

    def __init__(self, fake: FakePostHog, **kwargs: Any) -> None:
        super().__init__(posthog_conn_id="posthog_fake", retry_policy=ONE_ATTEMPT, **kwargs)
        self.fake = fake
        self.deadlines: list[float | None] = []

    def _send(
        self,
        spec: RequestSpec,
        settings: ConnectionSettings,
        policy: RetryPolicy | None = None,
        deadline: Deadline = NO_DEADLINE,
    ) -> ApiResponse:
        return ApiResponse(200, self.fake.answer(spec))

    def run(
        self, op: Any, project_id: int | str | None = None, *, deadline: float | None = None, **kw: Any
    ) -> Any:
        self.deadlines.append(deadline)
        return super().run(op, project_id, deadline=deadline, **kw)


class FakeAsyncHook(_FakeSettings, PostHogAsyncHook):
    """A real ``PostHogAsyncHook`` whose requests are answered by a :class:`FakePostHog`."""

    def __init__(self, fake: FakePostHog, **kwargs: Any) -> None:
        super().__init__(posthog_conn_id="posthog_fake", retry_policy=ONE_ATTEMPT, **kwargs)
        self.fake = fake
        self.deadlines: list[float | None] = []

    async def _send(
        self,
        spec: RequestSpec,
        settings: ConnectionSettings,
        policy: RetryPolicy | None = None,
        deadline: Deadline = NO_DEADLINE,
    ) -> ApiResponse:
        return ApiResponse(200, self.fake.answer(spec))

    async def arun(
        self, op: Any, project_id: int | str | None = None, *, deadline: float | None = None, **kw: Any
    ) -> Any:
        self.deadlines.append(deadline)
        return await super().arun(op, project_id, deadline=deadline, **kw)


def with_hook(task: Any, fake: FakePostHog, **overrides: Callable[..., Any] | mock.Mock) -> FakeHook:
    """Give an operator or sensor a :class:`FakeHook` (fills its cached ``hook``); ``overrides`` replace
    public hook methods the test does not exercise through the fake."""
    hook = FakeHook(fake)
    for name, value in overrides.items():
        setattr(hook, name, value)
    task.__dict__["hook"] = hook
    return hook


def with_async_hook(trigger: Any, fake: FakePostHog) -> FakeAsyncHook:
    """Give a trigger a :class:`FakeAsyncHook`."""
    hook = FakeAsyncHook(fake)
    trigger._hook = lambda: hook
    return hook

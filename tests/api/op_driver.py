"""Drive an operation generator with no HTTP, no Airflow and no real clock (imported by tests/api)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pendulum
from pendulum import DateTime

from airflow_provider_posthog.api.errors import error_from_response
from airflow_provider_posthog.api.http import NOW, ApiResponse, Operation, RequestSpec, Shared, Sleep
from airflow_provider_posthog.exceptions import PostHogAPIError, PostHogError

Answer = Callable[[RequestSpec], Any]
START = pendulum.datetime(2026, 11, 28, 20, 0, 30, tz="UTC")


class FakeClock:
    """The time the driver answers ``NOW`` with; a ``Sleep`` moves it forward instead of waiting."""

    def __init__(self, now: DateTime = START) -> None:
        self.now = now
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now = self.now.add(microseconds=round(seconds * 1_000_000))


def drive(
    op: Operation[Any], answer: Answer, clock: FakeClock | None = None, sent: list[RequestSpec] | None = None
) -> tuple[Any, list[RequestSpec]]:
    """Play the transport: ``answer(spec)`` returns a JSON body or raises the mapped exception. A shared
    read is read unshared, as the sync hook does (``Shared.alone``)."""
    clock = clock or FakeClock()
    sent = [] if sent is None else sent
    reply: Any = None
    error: PostHogError | None = None
    try:
        while True:
            command = op.throw(error) if error is not None else op.send(reply)
            reply, error = None, None
            if command is NOW:
                reply = clock.now
            elif isinstance(command, Sleep):
                clock.sleep(command.seconds)
            elif isinstance(command, Shared):
                try:
                    reply = drive(command.alone(), answer, clock, sent)[0]
                except PostHogError as exc:
                    error = exc
            else:
                assert isinstance(command, RequestSpec)
                sent.append(command)
                try:
                    reply = ApiResponse(200, answer(command))
                except PostHogError as exc:
                    error = exc
    except StopIteration as stop:
        return stop.value, sent


def first_request(op: Operation[Any]) -> RequestSpec:
    """The first request an operation sends (nothing answered; a shared read's own first request)."""
    command = next(op)
    op.close()
    if isinstance(command, Shared):
        return first_request(command.alone())
    assert isinstance(command, RequestSpec)
    return command


def page(*rows: dict[str, Any], next_link: str | None = None) -> dict[str, Any]:
    return {"next": next_link, "results": list(rows)}


def api_error(status: int, body: object = None, **kw: Any) -> PostHogAPIError:
    """The exception the transport maps a POST's error answer with JSON ``body`` to."""
    content = json.dumps(body).encode() if body is not None else b""
    return error_from_response(
        method="POST", path="/api/projects/1/batch_exports/", status=status, content=content, **kw
    )


def http_error(status: int, detail: str, method: str = "GET", path: str = "/x") -> PostHogAPIError:
    """The exception for an error answer carrying PostHog's ``detail``."""
    return error_from_response(
        method=method, path=path, status=status, content=json.dumps({"detail": detail}).encode()
    )

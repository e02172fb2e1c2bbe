"""Exceptions users can catch. All subclass ``AirflowException`` so ``soft_fail`` and retries behave.

Without Airflow installed (the pure client core in ``api/``) the same classes derive from plain
``Exception`` stand-ins, so the core imports and runs anywhere; with Airflow they are Airflow's own classes.

A wrong argument, a wrong key or an object that does not exist cannot be fixed by trying again, so those
errors (config, 400, 401/403, 404) also subclass ``AirflowFailException``: the task fails at once, whatever
its ``retries``. Throttling, server and network errors stay retryable.

Messages name the method, the path and PostHog's ``detail``; never the API key and never a request body
(export configs carry destination credentials).
"""

from __future__ import annotations

try:
    from airflow_provider_posthog.compat import AirflowException, AirflowFailException
except ModuleNotFoundError as missing:  # no Airflow: the client core alone
    if (missing.name or "").split(".")[0] != "airflow":
        raise

    class AirflowException(Exception):  # type: ignore[no-redef]
        """Stand-in for Airflow's base exception."""

    class AirflowFailException(AirflowException):  # type: ignore[no-redef]
        """Stand-in for Airflow's "fail without retrying" exception."""


class PostHogError(AirflowException):
    """Base class of every error this provider raises."""


class PostHogConfigError(PostHogError, AirflowFailException):
    """The Airflow connection or an argument is wrong; raised before the request it concerns. Not retried."""


class PostHogAPIError(PostHogError):
    """PostHog answered with an error status.

    :param http_status: HTTP status of the answer (``None`` for transport errors).
    :param method: HTTP method of the request.
    :param path: URL path of the request (no query string, no host).
    :param code: PostHog's error ``code`` (e.g. ``invalid_input``, ``throttled``).
    :param detail: PostHog's human-readable ``detail``.
    :param attr: the field PostHog blames, joined with ``__`` (validation errors only).
    """

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        method: str | None = None,
        path: str | None = None,
        code: str | None = None,
        detail: str | None = None,
        attr: str | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.method = method
        self.path = path
        self.code = code
        self.detail = detail
        self.attr = attr


class PostHogConnectionMismatchError(PostHogConfigError, PostHogAPIError):
    """The connection does not fit the server it reaches: an ``https://`` host on a plain-HTTP server, an
    ``http://`` host on an HTTPS server, or a TLS certificate the connection's ``verify`` cannot check.
    Found by the first request and final: neither the hook nor Airflow retries it; the message says what to
    change in the connection."""


class PostHogAuthError(PostHogAPIError, AirflowFailException):
    """401 or 403: bad key, missing scope (``batch_export:read``/``:write``) or no access to the project."""


class PostHogNotFoundError(PostHogAPIError, AirflowFailException):
    """404: unknown project, export, run or backfill. Never retried."""


class PostHogValidationError(PostHogAPIError, AirflowFailException):
    """400: PostHog rejected the request; ``attr`` and ``detail`` say why. Never retried."""


class PostHogUnexpectedResponseError(PostHogAPIError, AirflowFailException):
    """PostHog (or whatever answered in its place) sent an answer this provider cannot trust: another shape
    than PostHog's, a row of another object than the one asked for, a row without a field PostHog always
    sends, or list pages that do not end. Never read as success, and not retried: the same request gets the
    same answer. The message says what was expected and what came, by type and size only (a server that
    echoes the API key must not get it into a message)."""


class PostHogBackfillNotVisibleError(PostHogAPIError):
    """PostHog accepted a backfill but its row did not appear in time. Retryable: a retry re-attaches."""


class PostHogBackfillAlreadyRunningError(PostHogAPIError):
    """A backfill of the same export over the same range is still running (PostHog refuses a second one).

    :param backfill_id: id of the running backfill.
    :param backfill: the running backfill's record (an ``api.models.Backfill``), to re-attach to it.
    """

    def __init__(self, message: str, *, backfill_id: str, backfill: object, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.backfill_id = backfill_id
        self.backfill = backfill


class PostHogCancelNotEffectiveError(PostHogError):
    """PostHog answered a cancel with success but the run or backfill is still Starting/Running.

    :param kind: ``"run"`` or ``"backfill"``.
    :param object_id: id of the run or backfill.
    :param status: the status read back after the cancel.
    """

    def __init__(self, message: str, *, kind: str, object_id: str, status: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.object_id = object_id
        self.status = status


class PostHogRateLimitError(PostHogAPIError):
    """429 ``throttled`` after the retry budget was spent."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class PostHogTooManyBackfillsError(PostHogAPIError):
    """429 ``too_many_concurrent_backfills``: the team already runs its limit of backfills."""


class PostHogServerError(PostHogAPIError):
    """5xx (or a non-JSON error page) after the retry budget was spent."""


class PostHogTransportError(PostHogAPIError):
    """Connection refused, reset, DNS failure or timeout after the retry budget was spent."""


class PostHogDeadlineError(PostHogTransportError):
    """A request was cut short at its overall deadline: its own (connect + read timeout of the connection,
    however slowly the answer trickled in) or the end of the wait it polled for."""


class PostHogResponseTooLargeError(PostHogAPIError, AirflowFailException):
    """An answer larger than the connection's ``max_response_bytes`` was refused instead of read into
    memory. Not retried: the same request would get the same answer."""


class PostHogConnectError(PostHogTransportError):
    """The request provably never reached PostHog (DNS, refused, connect timeout, pool timeout).

    The only transport failure after which a non-idempotent POST (create export/backfill) may be resent.
    """


class PostHogUnreachableError(PostHogError):
    """A wait gave up because PostHog stayed unreachable longer than its ``unreachable_timeout``. Says
    nothing about the export, which may still be running; a task retry waits again."""


class PostHogJobFailedError(PostHogError):
    """The backfill or run finished in PostHog without succeeding (failed, cancelled, timed out, ...)."""


class PostHogRemoteFailureError(PostHogJobFailedError, AirflowFailException):
    """A watched backfill/run failed in PostHog: no sensor retry can change that; ``soft_fail`` skips."""


class PostHogIncompleteExportError(PostHogError, AirflowFailException):
    """The job completed, but some of its runs exported fewer records than PostHog counted for their
    interval (``completeness="fail"``). Not retried: waiting again reads the same numbers; retry the named
    runs instead."""


class PostHogWaitTimeoutError(PostHogError):
    """The task stopped waiting (``timeout`` or ``execution_timeout``) before PostHog finished."""


class PostHogTriggerError(PostHogError):
    """The waiting machinery itself failed (bad event, trigger crash). Says nothing about the export."""


class PostHogFinalTriggerError(PostHogTriggerError, AirflowFailException):
    """The deferred wait ended on an error no retry can fix (a wrong connection, key, scope or id): the task
    fails at once, whatever its ``retries``."""

"""Exceptions users can catch. All subclass ``AirflowException`` so ``soft_fail`` and retries behave.

Messages name the method, the path and PostHog's ``detail``; never the API key and never a request body
(export configs carry destination credentials).
"""

from __future__ import annotations

from airflow_provider_posthog.compat import AirflowException, AirflowFailException


class PostHogError(AirflowException):
    """Base class of every error this provider raises."""


class PostHogConfigError(PostHogError):
    """The Airflow connection or an argument is wrong; raised before any request is sent."""


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


class PostHogAuthError(PostHogAPIError):
    """401 or 403: bad key, missing scope (``batch_export:read``/``:write``) or no access to the project."""


class PostHogNotFoundError(PostHogAPIError):
    """404: unknown project, export, run or backfill (or a run outside PostHog's 7-day window)."""


class PostHogValidationError(PostHogAPIError):
    """400: PostHog rejected the request; ``attr`` and ``detail`` say why."""


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


class PostHogConnectError(PostHogTransportError):
    """The request provably never reached PostHog (DNS, refused, connect timeout, pool timeout).

    The only transport failure after which a non-idempotent POST (create export/backfill) may be resent.
    """


class PostHogJobFailedError(PostHogError):
    """The backfill or run finished in PostHog without succeeding (failed, cancelled, timed out, ...)."""


class PostHogRemoteFailureError(PostHogJobFailedError, AirflowFailException):
    """A watched backfill/run failed in PostHog: no sensor retry can change that; ``soft_fail`` skips."""


class PostHogWaitTimeoutError(PostHogError):
    """The task stopped waiting (``timeout`` or ``execution_timeout``) before PostHog finished."""


class PostHogTriggerError(PostHogError):
    """The waiting machinery itself failed (bad event, trigger crash). Says nothing about the export."""

"""PostHog's error envelope (drf-exceptions-hog) as one exception type the routes turn into responses."""

from __future__ import annotations


class ApiError(Exception):
    """An HTTP error answered with ``{"type", "code", "detail", "attr"}``."""

    def __init__(
        self,
        status: int,
        type_: str,
        code: str,
        detail: str,
        attr: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.type = type_
        self.code = code
        self.detail = detail
        self.attr = attr
        self.headers = headers or {}

    def body(self) -> dict[str, str | None]:
        return {"type": self.type, "code": self.code, "detail": self.detail, "attr": self.attr}


def validation(detail: str, attr: str | None = None, code: str = "invalid_input") -> ApiError:
    return ApiError(400, "validation_error", code, detail, attr)


def not_found(detail: str = "Not found.") -> ApiError:
    return ApiError(404, "invalid_request", "not_found", detail, None)


def permission_denied(detail: str) -> ApiError:
    return ApiError(403, "authentication_error", "permission_denied", detail, None)


def method_not_allowed(method: str) -> ApiError:
    return ApiError(405, "invalid_request", "method_not_allowed", f'Method "{method}" not allowed.', None)


def server_error(detail: str = "A server error occurred.", code: str = "error") -> ApiError:
    return ApiError(500, "server_error", code, detail, None)


def default_body_for_status(status: int) -> dict[str, str | None]:
    """What PostHog answers with for a bare status code (used by scripted faults)."""
    if status == 400:
        return {"type": "validation_error", "code": "invalid_input", "detail": "Invalid input.", "attr": None}
    if status == 401:
        return {
            "type": "authentication_error",
            "code": "not_authenticated",
            "detail": "Authentication credentials were not provided.",
            "attr": None,
        }
    if status == 403:
        return {
            "type": "authentication_error",
            "code": "permission_denied",
            "detail": "You do not have permission to perform this action.",
            "attr": None,
        }
    if status == 404:
        return {"type": "invalid_request", "code": "not_found", "detail": "Not found.", "attr": None}
    if status == 405:
        return {
            "type": "invalid_request",
            "code": "method_not_allowed",
            "detail": "Method not allowed.",
            "attr": None,
        }
    if status == 429:
        return {
            "type": "throttled_error",
            "code": "throttled",
            "detail": "Request was throttled.",
            "attr": None,
        }
    return {"type": "server_error", "code": "error", "detail": "A server error occurred.", "attr": None}

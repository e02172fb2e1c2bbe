"""Airflow connection fields -> validated PostHog client settings (no Airflow imports; no I/O but the check
of the ``verify`` CA bundle: the path exists, and a file holds a certificate).

One place decides what a PostHog connection means, so the UI form, ``airflow connections add``, the
``AIRFLOW_CONN_POSTHOG_DEFAULT`` URI and its JSON form all normalise to the same base URL, key, project and
timeouts, and a wrong connection fails with an actionable message *before* any request is sent.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import ssl
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_posthog.exceptions import PostHogConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_HOST = "https://us.posthog.com"
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 30.0
#: Answers above this size are refused rather than read into memory (one triggerer serves hundreds of waits;
#: PostHog's largest page, 100 runs, is well under 1 MB).
DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024
CONN_TYPE = "posthog"

#: PostHog's public ingestion hosts: they do not serve the private REST API.
INGESTION_HOSTS = {"us.i.posthog.com": "us.posthog.com", "eu.i.posthog.com": "eu.posthog.com"}


@dataclasses.dataclass(frozen=True)
class ConnectionSettings:
    """Everything a transport needs to talk to one PostHog project. ``repr`` never shows the key."""

    base_url: str
    api_key: str = dataclasses.field(repr=False)
    project_id: int
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    verify: bool | str = True
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES

    @property
    def request_timeout(self) -> float:
        """The overall deadline of one attempt: connect plus the whole answer, however slowly it comes."""
        return self.connect_timeout + self.read_timeout

    def with_project(self, project_id: int | str | None) -> ConnectionSettings:
        """The same settings for another project (per-call override)."""
        if project_id is None:
            return self
        return dataclasses.replace(
            self, project_id=parse_project_id(project_id, source="project_id argument")
        )


def plain_http_host(base_url: str) -> str | None:
    """The host the key would travel to in clear text: a plain ``http://`` base URL whose host is not this
    machine (``localhost``, 127.0.0.0/8, ``::1``); ``None`` for https and loopback."""
    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower()
    if parts.scheme != "http" or host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    return host


def extra_value(extra: Mapping[str, Any], name: str) -> Any:
    """Read an extra field saved plainly (``project_id``) or UI-prefixed (``extra__posthog__project_id``)."""
    value = extra.get(name)
    if value is None or value == "":
        value = extra.get(f"extra__{CONN_TYPE}__{name}")
    return None if value == "" else value


def normalise_base_url(
    host: str | None,
    *,
    scheme: str | None = None,
    port: int | None = None,
    path: str | None = None,
) -> str:
    """Turn whatever the user typed as host into ``scheme://host[:port][/prefix]`` without ``/api``.

    Accepts ``eu.posthog.com``, ``https://eu.posthog.com/``, ``https://eu.posthog.com/api``,
    ``posthog.example.com:8000`` and self-hosted path prefixes. A host without scheme means https unless
    ``scheme`` (the connection extra) says ``http``. ``path`` is the connection's ``schema`` (the path of a
    URI-form connection), used as a path prefix when the host has none.
    """
    raw = (host or "").strip()
    if not raw:
        raw = DEFAULT_HOST
    extra_scheme = (scheme or "").strip().lower() or None
    if extra_scheme is not None and extra_scheme not in ("http", "https"):
        raise PostHogConfigError(
            f"Connection extra 'scheme' must be 'http' or 'https', got {extra_scheme!r}."
        )
    if "://" in raw:
        parts = urlsplit(raw)
        url_scheme = parts.scheme.lower()
        if url_scheme not in ("http", "https"):
            raise PostHogConfigError(f"PostHog host must be an http(s) URL, got scheme {url_scheme!r}.")
    else:
        parts = urlsplit(f"//{raw}")
        url_scheme = extra_scheme or "https"
    if parts.query or parts.fragment:
        raise PostHogConfigError("PostHog host must not contain a query string or fragment.")
    if parts.username or parts.password:
        raise PostHogConfigError(
            "PostHog host must not contain credentials; put the API key in the password."
        )
    hostname = (parts.hostname or "").lower()
    if not hostname:
        raise PostHogConfigError(f"PostHog host {raw!r} has no host name.")
    if hostname in INGESTION_HOSTS:
        raise PostHogConfigError(
            f"{hostname} is PostHog's event ingestion host and does not serve the batch exports API; "
            f"use https://{INGESTION_HOSTS[hostname]} instead."
        )
    try:
        url_port = parts.port
    except ValueError as exc:
        raise PostHogConfigError(f"PostHog host {raw!r} has an invalid port.") from exc
    url_port = url_port or port
    netloc = hostname if ":" not in hostname else f"[{hostname}]"
    if url_port and (url_scheme, url_port) not in (("https", 443), ("http", 80)):
        netloc = f"{netloc}:{url_port}"
    prefix = parts.path.strip("/")
    if not prefix and path:
        prefix = path.strip("/")
    segments = [s for s in prefix.split("/") if s]
    if segments and segments[-1].lower() == "api":
        segments = segments[:-1]
    suffix = "/" + "/".join(segments) if segments else ""
    return f"{url_scheme}://{netloc}{suffix}"


def check_api_key(key: str | None) -> str:
    """Reject a missing key or a project key (``phc_``) early; the message never contains the key."""
    value = (key or "").strip()
    if not value:
        raise PostHogConfigError(
            "The PostHog connection has no API key: put a personal API key (phx_...) with scope "
            "batch_export:read (and batch_export:write to change things) in the connection's password."
        )
    if value.startswith("phc_"):
        raise PostHogConfigError(
            "The PostHog connection holds a project API key (phc_...), which only works for event ingestion. "
            "Create a personal API key (phx_...) under Settings > Personal API keys with scope "
            "batch_export:read (and batch_export:write) and put it in the connection's password."
        )
    if any(ch.isspace() for ch in value):
        raise PostHogConfigError("The PostHog API key in the connection's password contains whitespace.")
    return value


def parse_project_id(value: Any, *, source: str = "connection extra 'project_id'") -> int:
    """The numeric PostHog project (environment) id; anything else is a configuration error."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise PostHogConfigError(
            "No PostHog project id: set the connection's 'project_id' field "
            '(extra {"project_id": 12345}) to the numeric id shown in PostHog\'s project settings, '
            "or pass project_id= to the hook."
        )
    if isinstance(value, bool):
        raise PostHogConfigError(f"The PostHog project id ({source}) must be a number, got a boolean.")
    text = str(value).strip()
    if isinstance(value, float) and value.is_integer():
        text = str(int(value))
    if not text.isdigit() or int(text) <= 0:
        raise PostHogConfigError(
            f"The PostHog project id ({source}) must be a positive number such as 12345 "
            f"(see PostHog's project settings), got {text[:40]!r}."
        )
    return int(text)


def _parse_seconds(value: Any, name: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise PostHogConfigError(
            f"Connection extra {name!r} must be a number of seconds, got {str(value)[:40]!r}."
        ) from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise PostHogConfigError(f"Connection extra {name!r} must be a positive number of seconds.")
    return seconds


def parse_timeouts(extra: Mapping[str, Any]) -> tuple[float, float]:
    """``(connect, read)`` timeouts from extra ``timeout`` (read) and optional ``connect_timeout``."""
    read = _parse_seconds(extra_value(extra, "timeout"), "timeout") or DEFAULT_READ_TIMEOUT
    connect = _parse_seconds(extra_value(extra, "connect_timeout"), "connect_timeout")
    if connect is None:
        connect = min(DEFAULT_CONNECT_TIMEOUT, read)
    return connect, read


def parse_max_response_bytes(value: Any) -> int:
    """Extra ``max_response_bytes``: a positive whole number of bytes (default 10 MiB)."""
    if value is None or value == "":
        return DEFAULT_MAX_RESPONSE_BYTES
    text = str(value).strip()
    if isinstance(value, float) and value.is_integer():
        text = str(int(value))  # a JSON number typed as 1048576.0
    if isinstance(value, bool) or not text.isdigit() or int(text) <= 0:
        raise PostHogConfigError(
            f"Connection extra 'max_response_bytes' must be a positive whole number of bytes, such as "
            f"{DEFAULT_MAX_RESPONSE_BYTES} (10 MiB, the default when it is not set); got {text[:40]!r}."
        )
    return int(text)


def _parse_verify(value: Any) -> bool | str:
    if value is None or value == "":
        return True
    if isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    # A CA bundle path for self-hosted PostHog behind a private CA. Checked here, when the hook first needs
    # its settings (never at DAG parse time), so a typo is a clear error rather than an OSError mid-request.
    if not (os.path.isfile(text) or os.path.isdir(text)):
        raise PostHogConfigError(
            f"Connection extra 'verify' is {text[:200]!r}, which is not an existing file or directory "
            "on this machine. 'verify' accepts true, false, or the path to an existing CA bundle file (PEM) "
            "or directory of CA certificates, readable by the Airflow worker and triggerer."
        )
    if os.path.isfile(text):
        _check_ca_bundle(text)
    return text


def _check_ca_bundle(path: str) -> None:
    """A CA bundle file must hold a certificate: otherwise every request fails alike in the TLS library,
    so it is a configuration error before the first request (OpenSSL's own text is not shown)."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except PermissionError:
        raise PostHogConfigError(
            f"Connection extra 'verify' is {path[:200]!r}, which this machine's Airflow user may not read: "
            "make the CA bundle readable by the Airflow worker and triggerer."
        ) from None
    except (ssl.SSLError, OSError, ValueError):
        raise PostHogConfigError(
            f"Connection extra 'verify' is {path[:200]!r}, which holds no CA certificate: set 'verify' to a "
            "CA bundle file in PEM form (-----BEGIN CERTIFICATE-----) that signed PostHog's certificate, "
            "or to true for the system's CAs."
        ) from None


def settings_from_connection(
    *,
    host: str | None,
    password: str | None,
    port: int | None = None,
    schema: str | None = None,
    extra: Mapping[str, Any] | None = None,
    project_id: int | str | None = None,
) -> ConnectionSettings:
    """Validate an Airflow connection's fields. ``project_id`` (a hook argument) overrides the extra."""
    extra = extra or {}
    base_url = normalise_base_url(host, scheme=extra_value(extra, "scheme"), port=port, path=schema)
    key = check_api_key(password)
    if project_id is not None:
        pid = parse_project_id(project_id, source="project_id argument")
    else:
        pid = parse_project_id(extra_value(extra, "project_id"))
    connect, read = parse_timeouts(extra)
    return ConnectionSettings(
        base_url=base_url,
        api_key=key,
        project_id=pid,
        connect_timeout=connect,
        read_timeout=read,
        verify=_parse_verify(extra_value(extra, "verify")),
        max_response_bytes=parse_max_response_bytes(extra_value(extra, "max_response_bytes")),
    )

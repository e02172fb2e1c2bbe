"""The triggerer's shared polls: one table of reads per event loop, so that the waits of one triggerer that
poll the same PostHog object share one read (what is shared, and when: ``api/sharing.py``).

A read runs as an asyncio task of its own, under the hook's retry policy and no wait's deadline, so a wait
that is cancelled or runs out of time never cancels it for the others: each wait waits for it, without ever
cancelling it, until its own deadline. A read that fails is forgotten at once: every wait that was waiting
on it gets the error, and the next ask reads afresh. Nothing is shared across hosts, projects or API keys.
"""

from __future__ import annotations

import asyncio
import hashlib
import weakref
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_posthog.api.retry import NO_DEADLINE
from airflow_provider_posthog.api.sharing import SharedReads

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from airflow_provider_posthog.api.connection import ConnectionSettings
    from airflow_provider_posthog.api.http import Operation, Shared
    from airflow_provider_posthog.api.retry import Deadline
    from airflow_provider_posthog.api.sharing import Entry

# One table per event loop (a triggerer runs one; tests run many, each with its own).
_TABLES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SharedReads[asyncio.Future[Any]]] = (
    weakref.WeakKeyDictionary()
)


# Reads still running: the event loop keeps only weak references to tasks, and a read whose waits all gave
# up must still finish (its answer serves the next polls).
_IN_FLIGHT: set[asyncio.Future[Any]] = set()


def loop_table() -> SharedReads[asyncio.Future[Any]]:
    """The shared reads of the running event loop (created on first use)."""
    loop = asyncio.get_running_loop()
    table = _TABLES.get(loop)
    if table is None:
        table = _TABLES[loop] = SharedReads()
    return table


def scope_of(settings: ConnectionSettings) -> tuple[str, int, str, str]:
    """What two waits must have in common to share a read: the host, the project, the TLS verification and
    the API key, as a fingerprint (sha256; the key itself is never kept, shown or logged here)."""
    fingerprint = hashlib.sha256(settings.api_key.encode()).hexdigest()
    return (settings.base_url, int(settings.project_id), fingerprint, str(settings.verify))


class Driver(Protocol):
    """What a read needs of the async hook that starts it (a protocol, so this module does not import it)."""

    def _drive(
        self, op: Operation[Any], settings: ConnectionSettings, until: Deadline, fresh_within: float
    ) -> Awaitable[Any]: ...

    def _cut_short(self, spec: Any, settings: ConnectionSettings, seconds: float) -> Exception: ...


async def read_shared(
    hook: Driver,
    shared: Shared[Any],
    settings: ConnectionSettings,
    until: Deadline,
    fresh_within: float,
) -> Any:
    """``shared``'s answer for this wait: a fresh one, the one of a read in flight, or a new read's (started
    with ``hook``); the read's error if it fails; ``PostHogDeadlineError`` if ``until`` comes first."""
    table = loop_table()
    entry, reuse = table.ask(scope_of(settings), shared.key, shared.span, fresh_within)
    if reuse == "fresh":
        return shared.narrow(entry.value)
    if reuse == "new":
        read = hook._drive(shared.fetch(entry.span), settings, NO_DEADLINE, 0.0)
        entry.handle = asyncio.ensure_future(_settled(table, entry, read))
        _IN_FLIGHT.add(entry.handle)
        entry.handle.add_done_callback(_retrieved)
    task = entry.handle
    assert task is not None
    left = until.remaining()
    # asyncio.wait never cancels what it waits for (as shield would not), and unlike wait_for on Python
    # 3.11 it never loses this wait's own cancellation when the read completes at the same moment.
    done, _ = await asyncio.wait({task}, timeout=left)
    if not done:
        raise hook._cut_short(shared.key, settings, left or 0.0)
    return shared.narrow(task.result())


def announce_read(shared: Shared[Any], settings: ConnectionSettings, fresh_within: float) -> None:
    """Note in the event loop's table that a wait will ask ``shared``: the reads of other waits cover its
    range from now on (``SharedReads.note``)."""
    loop_table().note(scope_of(settings), shared.key, shared.span, fresh_within)


async def _settled(
    table: SharedReads[asyncio.Future[Any]], entry: Entry[asyncio.Future[Any]], read: Awaitable[Any]
) -> Any:
    """Run ``read`` and record its outcome in ``table`` before any waiter sees it: an answer is served
    within its window, a failure is forgotten (never served to a later ask)."""
    try:
        value = await read
    except BaseException:
        table.drop(entry)
        raise
    table.settle(entry, value)
    return value


def _retrieved(task: asyncio.Future[Any]) -> None:
    """Let go of a finished read and mark its error as seen: the waits that were waiting re-raise it
    themselves, and a read whose waits all gave up must not log "exception was never retrieved"."""
    _IN_FLIGHT.discard(task)
    if not task.cancelled():
        task.exception()

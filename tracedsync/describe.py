"""Holders and times in the forms every output shares.

A wait's holder (``records.Holder``) becomes span attributes
(``sync.holder.*``) and one human phrase (``, held by worker-1, taken at
app.py:12, itself waiting on event ready #1 at app.py:30``); findings,
spans and the console all use these, so they read the same everywhere.
Imports nothing heavy: the watchdog uses it inside traced programs.
"""

from __future__ import annotations

import time
from typing import Any

from tracedsync import _sites
from tracedsync.records import Holder

#: (whole second, its "%Y-%m-%dT%H:%M:%S" text) of the last timestamp formatted.
_last_second: tuple[int, str] = (-1, "")


def iso_timestamp(epoch_ns: int) -> str:
    """``epoch_ns`` as ``2024-05-01T12:00:01.234567Z`` (UTC, to the nearest
    microsecond), with the date part formatted once per second."""
    global _last_second
    second, micro = divmod((epoch_ns + 500) // 1000, 1_000_000)
    cached = _last_second
    if cached[0] != second:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        cached = _last_second = (second, text)
    return f"{cached[1]}.{micro:06d}Z"


def primitive_fields(meta: Any) -> dict[str, Any]:
    """The attributes naming a primitive (its ``registry.Identity``), as
    spans, findings and events carry them."""
    return {
        "sync.kind": meta.kind,
        "sync.name": meta.name,
        "sync.id": meta.id,
        "sync.instance": meta.instance,
    }


def holder_attributes(holder: Holder | None, offset: int) -> dict[str, Any]:
    """The ``sync.holder.*`` attributes of a wait (``offset``: epoch ns minus
    monotonic ns, for the holder's own wait's start)."""
    if holder is None:
        return {}
    out: dict[str, Any] = {
        "sync.holder.thread.name": holder.name,
        "sync.holder.thread.id": holder.ident,
    }
    if holder.acquired_at is not None:
        out["sync.holder.acquired_at"] = holder.acquired_at
    if holder.site is not None:
        out["sync.holder.site"] = _sites.format_site(holder.site)
    if holder.ended:
        out["sync.holder.ended"] = True
    if holder.permits > 1:
        out["sync.holder.permits"] = holder.permits
    on = holder.waiting_on
    if on is not None:
        out["sync.holder.waiting_on.name"] = on.meta.name
        out["sync.holder.waiting_on.kind"] = on.meta.kind
        out["sync.holder.waiting_on.instance"] = on.meta.instance
        out["sync.holder.waiting_on.since"] = iso_timestamp(on.since + offset)
        if on.site is not None:
            out["sync.holder.waiting_on.site"] = _sites.format_site(on.site)
    return out


def holder_text(holder: Holder | None) -> str:
    """``, held by worker-1, taken at app.py:12, itself waiting on event ready
    #1 at app.py:30`` -- joined hop after hop, the same phrase tells a chain."""
    if holder is None:
        return ""
    ended = " (ended)" if holder.ended else ""
    text = f", held by {holder.name}{ended}"
    if holder.permits > 1:
        text += f" x{holder.permits}"
    if holder.acquired_at:
        text += f", taken at {holder.acquired_at}"
    if holder.waiting_on is not None:
        on = holder.waiting_on
        where = f" at {_sites.format_site(on.site)}" if on.site is not None else ""
        text += f", itself waiting on {on.meta.kind} {on.meta.name} #{on.meta.instance}{where}"
    elif holder.site is not None and not holder.ended:
        text += f", now at {_sites.format_site(holder.site)}"
    return text

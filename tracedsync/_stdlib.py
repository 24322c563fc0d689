"""The original ``threading`` primitives, captured before anything patches them.

``tracedsync.patching`` replaces the attributes of ``threading``; everything in
tracedsync that needs the real thing (internal locks, untraced creations,
``uninstall()``) takes it from here.
"""

from __future__ import annotations

import _thread
import threading
from typing import Any

_SAVED = "__tracedsync_originals__"


def _capture() -> dict[str, Any]:
    saved: dict[str, Any] | None = getattr(threading, _SAVED, None)
    if saved is not None:
        return saved
    return {
        "Lock": threading.Lock,
        "RLock": threading.RLock,
        "Condition": threading.Condition,
        "Semaphore": threading.Semaphore,
        "BoundedSemaphore": threading.BoundedSemaphore,
        "Event": threading.Event,
        "Barrier": threading.Barrier,
    }


ORIGINALS: dict[str, Any] = _capture()
setattr(threading, _SAVED, ORIGINALS)

Lock = ORIGINALS["Lock"]
RLock = ORIGINALS["RLock"]
Condition = ORIGINALS["Condition"]
Semaphore = ORIGINALS["Semaphore"]
BoundedSemaphore = ORIGINALS["BoundedSemaphore"]
Event = ORIGINALS["Event"]
Barrier = ORIGINALS["Barrier"]
allocate_lock = _thread.allocate_lock

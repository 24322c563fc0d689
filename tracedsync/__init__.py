"""tracedsync: make lock contention in threaded Python programs visible.

Drop-in replacements for ``threading``'s primitives that measure how long
threads wait for them and hold them; the waits and holds that matter become
OpenTelemetry spans, metrics and structlog events::

    import tracedsync

    tracedsync.configure(exporters=["console"])
    pool_lock = tracedsync.Lock()      # named "pool_lock (app/db.py:41)"

``import tracedsync as threading`` works for the primitives.

``tracedsync.IMPLEMENTATION`` is ``"compiled"`` when the C extension provides
the ``Lock``/``RLock`` hot path, ``"pure"`` when the pure-Python reference does
(extension not built, or ``TRACEDSYNC_PURE_PYTHON=1``).
"""

from __future__ import annotations

from tracedsync._version import __version__
from tracedsync.config import Config
from tracedsync.counters import HISTOGRAM_BOUNDS, PrimitiveStats
from tracedsync.detection import (
    PrimitiveState,
    ThreadState,
    declare_lock_order,
    snapshot,
)
from tracedsync.lifecycle import active as get_config
from tracedsync.lifecycle import configure, flush, shutdown
from tracedsync.patching import install, installed, uninstall
from tracedsync.primitives import (
    IMPLEMENTATION,
    Barrier,
    BoundedSemaphore,
    BrokenBarrierError,
    Condition,
    Event,
    Lock,
    RLock,
    Semaphore,
)
from tracedsync.registry import stats

__all__ = [
    "HISTOGRAM_BOUNDS",
    "IMPLEMENTATION",
    "Barrier",
    "BoundedSemaphore",
    "BrokenBarrierError",
    "Condition",
    "Config",
    "Event",
    "Lock",
    "PrimitiveState",
    "PrimitiveStats",
    "RLock",
    "Semaphore",
    "ThreadState",
    "__version__",
    "configure",
    "declare_lock_order",
    "flush",
    "get_config",
    "install",
    "installed",
    "shutdown",
    "snapshot",
    "stats",
    "uninstall",
]

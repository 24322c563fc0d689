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

import importlib
from typing import TYPE_CHECKING, Any

from tracedsync._version import __version__

if TYPE_CHECKING:
    from tracedsync.config import Config
    from tracedsync.counters import HISTOGRAM_BOUNDS, PrimitiveStats
    from tracedsync.detection import PrimitiveState, ThreadState, declare_lock_order, snapshot
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

#: public name -> (module, attribute): imported when first used, so that
#: ``import tracedsync`` (and ``tracedsync run``'s own process, and the CLI)
#: loads nothing it does not need.
_EXPORTS = {
    "Config": ("tracedsync.config", "Config"),
    "HISTOGRAM_BOUNDS": ("tracedsync.counters", "HISTOGRAM_BOUNDS"),
    "PrimitiveStats": ("tracedsync.counters", "PrimitiveStats"),
    "PrimitiveState": ("tracedsync.detection", "PrimitiveState"),
    "ThreadState": ("tracedsync.detection", "ThreadState"),
    "declare_lock_order": ("tracedsync.detection", "declare_lock_order"),
    "snapshot": ("tracedsync.detection", "snapshot"),
    "get_config": ("tracedsync.lifecycle", "active"),
    "configure": ("tracedsync.lifecycle", "configure"),
    "flush": ("tracedsync.lifecycle", "flush"),
    "shutdown": ("tracedsync.lifecycle", "shutdown"),
    "install": ("tracedsync.patching", "install"),
    "installed": ("tracedsync.patching", "installed"),
    "uninstall": ("tracedsync.patching", "uninstall"),
    "IMPLEMENTATION": ("tracedsync.primitives", "IMPLEMENTATION"),
    "Barrier": ("tracedsync.primitives", "Barrier"),
    "BoundedSemaphore": ("tracedsync.primitives", "BoundedSemaphore"),
    "BrokenBarrierError": ("tracedsync.primitives", "BrokenBarrierError"),
    "Condition": ("tracedsync.primitives", "Condition"),
    "Event": ("tracedsync.primitives", "Event"),
    "Lock": ("tracedsync.primitives", "Lock"),
    "RLock": ("tracedsync.primitives", "RLock"),
    "Semaphore": ("tracedsync.primitives", "Semaphore"),
    "stats": ("tracedsync.registry", "stats"),
}

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
if sorted(__all__) != sorted([*_EXPORTS, "__version__"]):
    raise AssertionError("tracedsync.__all__ and _EXPORTS must name the same things")


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'tracedsync' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # the next access is a plain global
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})

"""``install()`` / ``uninstall()``: patch ``threading`` for a whole program.

``install()`` replaces ``threading.Lock``, ``RLock``, ``Condition``,
``Semaphore``, ``BoundedSemaphore``, ``Event`` and ``Barrier`` with
tracedsync's classes, so primitives created afterwards by any module
(``queue.Queue``, ``concurrent.futures``, your code) are traced — except
those created by the excluded modules (``threading`` itself, OpenTelemetry,
gRPC, ``logging``, ...), which get the stdlib's objects. Names other modules
bound with ``from threading import Lock`` before the install are patched
too, where that module is not excluded. ``uninstall()`` puts back the exact
original objects. This is the only module that writes to ``threading``.

``_thread.allocate_lock`` (and ``threading._allocate_lock``) stay untouched:
they are the raw locks under ``Condition.wait`` and the interpreter's own
bookkeeping, where tracing would only add noise and risk.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from tracedsync import _stdlib, config, lifecycle, primitives, registry

PATCHED_NAMES = ("Lock", "RLock", "Condition", "Semaphore", "BoundedSemaphore", "Event", "Barrier")

_REPLACEMENTS: dict[str, Any] = {name: getattr(primitives, name) for name in PATCHED_NAMES}
_installed = False
#: (module, attribute, original) of every other module binding we changed.
_rebound: list[tuple[Any, str, Any]] = []
_lock = _stdlib.allocate_lock()


def installed() -> bool:
    """True between ``install()`` and ``uninstall()``."""
    return _installed


def install(**options: Any) -> config.Config:
    """Configure tracedsync (``options`` as for ``configure()``) and patch
    ``threading``. Idempotent: a second call only reconfigures when given
    options. Returns the active configuration."""
    global _installed
    with _lock:
        active = lifecycle.active()
        cfg = lifecycle.configure(**options) if options or active is None else active
        if _installed:
            return cfg
        for name in PATCHED_NAMES:
            setattr(threading, name, _REPLACEMENTS[name])
        _rebind_imported_names()
        _installed = True
        return cfg


def uninstall() -> None:
    """Put the original ``threading`` objects back (``is``-identical).

    The pipeline keeps running (``tracedsync.shutdown()`` stops it); traced
    primitives created meanwhile keep working and stay traced.
    """
    global _installed
    with _lock:
        if not _installed:
            return
        for name in PATCHED_NAMES:
            setattr(threading, name, _stdlib.ORIGINALS[name])
        while _rebound:
            module, attribute, original = _rebound.pop()
            try:
                if getattr(module, attribute, None) is _REPLACEMENTS.get(attribute):
                    setattr(module, attribute, original)
            except Exception:
                pass
        _installed = False


def _rebind_imported_names() -> None:
    """Patch ``from threading import Lock``-style bindings in loaded modules."""
    originals = {id(obj): name for name, obj in _stdlib.ORIGINALS.items()}
    for module_name, module in list(sys.modules.items()):
        if module is None or module is threading or module_name.startswith("tracedsync"):
            continue
        if registry.module_excluded(module_name):
            continue
        try:
            namespace = vars(module)
        except TypeError:
            continue
        for attribute, value in list(namespace.items()):
            name = originals.get(id(value))
            if name is None or attribute != name or _stdlib.ORIGINALS[name] is not value:
                continue
            try:
                setattr(module, attribute, _REPLACEMENTS[name])
            except Exception:
                continue
            _rebound.append((module, attribute, value))

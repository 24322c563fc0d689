"""CPython's own ``Lib/test/lock_tests.py`` run against tracedsync's classes.

The suites are the ones ``Lib/test/test_threading.py`` runs against
``threading``; here the primitive under test is tracedsync's. Interpreters
without the ``test`` package (Debian's system Python) skip this module.
"""

from __future__ import annotations

import threading
import types

import pytest

import tracedsync

_StdCondition = threading.Condition

lock_tests = pytest.importorskip(
    "test.lock_tests",
    reason="this interpreter has no test.lock_tests (Debian's python3 lacks the test package)",
)


class TestLock(lock_tests.LockTests):
    locktype = staticmethod(tracedsync.Lock)


class TestRLock(lock_tests.RLockTests):
    locktype = staticmethod(tracedsync.RLock)


class TestEvent(lock_tests.EventTests):
    eventtype = staticmethod(tracedsync.Event)


class TestConditionAsRLock(lock_tests.RLockTests):
    # Condition uses an RLock by default and exports its API.
    locktype = staticmethod(tracedsync.Condition)

    def test_recursion_count(self) -> None:
        self.skipTest("Condition does not expose _recursion_count()")


class TestCondition(lock_tests.ConditionTests):
    condtype = staticmethod(tracedsync.Condition)


class _TracedLocksInside:
    """Run a suite with ``threading.Lock``/``RLock`` inside lock_tests being
    tracedsync's, so the locks the tests hand to ``Condition(lock)`` are traced."""

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()  # type: ignore[misc]
        shim = types.ModuleType("threading")
        shim.__dict__.update(threading.__dict__)
        shim.Lock = tracedsync.Lock  # type: ignore[attr-defined]
        shim.RLock = tracedsync.RLock  # type: ignore[attr-defined]
        cls._saved_threading = lock_tests.threading
        lock_tests.threading = shim

    @classmethod
    def tearDownClass(cls) -> None:
        lock_tests.threading = cls._saved_threading
        super().tearDownClass()  # type: ignore[misc]


class TestConditionOverTracedLocks(_TracedLocksInside, lock_tests.ConditionTests):
    """tracedsync's Condition given traced Lock and RLock objects."""

    condtype = staticmethod(tracedsync.Condition)


class TestStdlibConditionOverTracedLocks(_TracedLocksInside, lock_tests.ConditionTests):
    """The stdlib's Condition must work with tracedsync's locks underneath."""

    condtype = staticmethod(
        lambda lock=None: _StdCondition(lock if lock is not None else tracedsync.RLock())
    )


class TestSemaphore(lock_tests.SemaphoreTests):
    semtype = staticmethod(tracedsync.Semaphore)


class TestBoundedSemaphore(lock_tests.BoundedSemaphoreTests):
    semtype = staticmethod(tracedsync.BoundedSemaphore)


class TestBarrier(lock_tests.BarrierTests):
    barriertype = staticmethod(tracedsync.Barrier)

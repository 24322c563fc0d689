"""Hangs and contention a production engineer meets, diagnosed end to end.

Each scenario is a small realistic program in ``programs/`` (or one of the
``examples/``), run as its own process under ``tracedsync run`` and read
back through ``tracedsync report --format json`` and, where the report
does not carry a detail, the run's log events and spans. Every finding must
answer: who waits for what, who holds it, where the holder took it, and
what the holder is doing now.

The programs all run at once (see ``harness``); the implementation is the
test process's, so CI's two passes (compiled, then
``TRACEDSYNC_PURE_PYTHON=1``) run every scenario with both -- they all use
Lock or RLock, directly or inside Condition, Event, Barrier, Queue and
Future.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import tracedsync
from tests.scenarios.harness import KILLED, PROGRAMS, Outcome, Runs, Scenario, environment

THRESHOLDS_0 = ("--wait-threshold-ms", "0", "--hold-threshold-ms", "0")
SCENARIOS: dict[str, Scenario] = {
    "lost_notify": Scenario("lost_notify.py", env={"TRACEDSYNC_IDLE_STUCK_AFTER_MS": "300"}),
    "event_never_set": Scenario(
        "event_never_set.py",
        env={"TRACEDSYNC_IDLE_STUCK_AFTER_MS": "300"},
        kill_after="stuck_wait",
        kill_count=2,
    ),
    "broken_barrier": Scenario("broken_barrier.py"),
    "leaked_permits": Scenario("leaked_permits.py", env={"TRACEDSYNC_STUCK_AFTER_MS": "300"}),
    "philosophers": Scenario("philosophers.py", kill_after="deadlock_detected"),
    "lock_queue": Scenario("lock_queue.py", env={"TRACEDSYNC_STUCK_AFTER_MS": "300"}),
    "lock_event": Scenario("lock_event.py", env={"TRACEDSYNC_STUCK_AFTER_MS": "300"}),
    "lock_future": Scenario("lock_future.py", env={"TRACEDSYNC_STUCK_AFTER_MS": "300"}),
    "transfers": Scenario("transfers.py", options=("--lock-order",)),
    "ordered_transfers": Scenario("transfers.py", args=("ordered",), options=("--lock-order",)),
    "rlock_recursion": Scenario("rlock_recursion.py"),
    "rlock_abandoned": Scenario("rlock_abandoned.py"),
    "self_deadlock": Scenario("self_deadlock.py", kill_after="self_deadlock_suspected"),
    "notify_under_lock": Scenario("notify_under_lock.py", kill_after="deadlock_detected"),
    "pool_starvation": Scenario(
        "pool_starvation.py",
        env={"TRACEDSYNC_IDLE_STUCK_AFTER_MS": "300"},
        kill_after="stuck_wait",
        kill_count=2,
    ),
    "hot_lock": Scenario("hot_lock.py"),
    "idle_pool_reload": Scenario("idle_pool_reload.py"),
    "health_timeouts": Scenario("health_timeouts.py"),
    "healthy": Scenario("healthy_service.py"),
    "main_returns_first": Scenario("main_returns_first.py"),
    "healthy_lock_order": Scenario("healthy_service.py", options=("--lock-order",)),
    "counter_thresholds_0": Scenario("counter.py", options=THRESHOLDS_0),
    "hot_lock_thresholds_0": Scenario("hot_lock.py", options=THRESHOLDS_0),
}


def uses(*names: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The scenarios a test reads (only those selected are started)."""

    def mark(test: Callable[..., None]) -> Callable[..., None]:
        test.scenarios = names  # type: ignore[attr-defined]
        return test

    return mark


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Runs]:
    wanted = [  # in the order the tests ask for them
        name
        for item in request.session.items
        if getattr(item, "module", None) is request.module
        for name in getattr(getattr(item, "function", None), "scenarios", ())
    ]
    started = Runs(SCENARIOS, wanted, tmp_path_factory.mktemp("scenarios"))
    try:
        yield started
    finally:
        started.close()


def at(program: str, code: str, nth: int | None = None) -> str:
    """``program.py:N``: the line of ``program`` that starts with ``code``
    (the only one, or the ``nth`` of several)."""
    source = (PROGRAMS / program).read_text().splitlines()
    lines = [n for n, line in enumerate(source, 1) if line.strip().startswith(code)]
    if nth is None:
        assert len(lines) == 1, (program, code, lines)
        nth = 0
    return f"{program}:{lines[nth]}"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def only_findings(outcome: Outcome, **counts: int) -> None:
    """The report's findings are exactly these, by event."""
    assert outcome.report["findings_by_event"] == counts, [
        f["message"] for f in outcome.report["findings"]
    ]


def still_blocked(outcome: Outcome, section: str) -> list[dict[str, Any]]:
    return [s for s in outcome.report["still_blocked"] if s["section"] == section]


# -- idle waits that never end ----------------------------------------------------


@uses("lost_notify")
def test_lost_notify(runs: Runs) -> None:
    """A Condition notified before its consumer waits: the consumer waits for
    ever. Listed in IDLE WAITS as still waiting at exit, reported live once
    past idle_stuck_after_ms (300 ms here), and a finding at exit."""
    outcome = runs.outcome("lost_notify")
    assert outcome.returncode == 1, outcome.describe()
    name = "jobs_ready (lost_notify.py:13)"
    waited_at = at("lost_notify.py", "jobs_ready.wait()")
    row = outcome.primitive(name, "idle_waits")
    assert row["kind"] == "condition"
    assert row["still_blocked"]["count"] == 1
    assert row["still_blocked"]["longest"] >= 1.0
    (waiting,) = still_blocked(outcome, "idle_waits")
    assert (waiting["thread"], waiting["site"], waiting["name"]) == ("job-worker", waited_at, name)
    assert outcome.report["still_blocked_total"] == {"primitives": 0, "idle_waits": 1}
    # Only the condition's lock is in PRIMITIVES: its waits are idle waits.
    assert {(p["kind"], p["name"]) for p in outcome.report["primitives"]} == {("rlock", name)}
    only_findings(outcome, stuck_wait=1, unfinished_wait=1)
    (live,) = outcome.named("stuck_wait")
    assert live["idle"] is True
    assert (live["thread.name"], live["site"], live["sync.name"]) == ("job-worker", waited_at, name)
    assert live["waited_ms"] >= 300
    (at_exit,) = outcome.findings("unfinished_wait")
    assert at_exit["fields"]["idle"] is True
    assert at_exit["fields"]["waited_ms"] >= at_exit["fields"]["idle_stuck_after_ms"] == 300
    gate = outcome.report_again("--fail-on", "findings>0")
    assert gate.returncode == 1, gate.stderr


@uses("event_never_set")
def test_event_never_set(runs: Runs) -> None:
    """Handlers waiting for an Event whose setter crashed: the program hangs
    in shutdown until killed. Each wait is reported while it lasts, and at
    SIGTERM becomes an unfinished span and a finding."""
    outcome = runs.outcome("event_never_set")
    assert outcome.returncode == KILLED, outcome.describe()
    assert "ValueError" in outcome.stderr  # the warmer's crash, as Python printed it
    name = "cache_warm (event_never_set.py:12)"
    waited_at = at("event_never_set.py", "cache_warm.wait()")
    live = outcome.named("stuck_wait")
    assert {(e["thread.name"], e["site"], e["sync.name"], e["idle"]) for e in live} == {
        ("handler-1", waited_at, name, True),
        ("handler-2", waited_at, name, True),
    }
    row = outcome.primitive(name, "idle_waits")
    assert row["still_blocked"]["count"] == 2
    assert {s["thread"] for s in still_blocked(outcome, "idle_waits")} == {"handler-1", "handler-2"}
    only_findings(outcome, stuck_wait=2, unfinished_wait=2)
    spans = outcome.spans_named("event.wait")
    assert {(s["attrs"]["thread.name"], s["attrs"]["sync.outcome"]) for s in spans} == {
        ("handler-1", "unfinished"),
        ("handler-2", "unfinished"),
    }
    assert all(s["attrs"]["sync.site"] == waited_at for s in spans)


@uses("broken_barrier")
def test_broken_barrier(runs: Runs) -> None:
    """A Barrier whose third party never comes breaks by its timeout: a
    finding naming who arrived, where, and that one never came."""
    outcome = runs.outcome("broken_barrier")
    assert outcome.returncode == 1, outcome.describe()
    only_findings(outcome, barrier_broken=1)
    (broken,) = outcome.named("barrier_broken")
    assert broken["sync.name"] == "loaded (broken_barrier.py:12)"
    assert (broken["parties"], broken["arrived"], broken["cause"]) == (3, 2, "a wait timed out")
    waited_at = at("broken_barrier.py", "loaded.wait()")
    assert sorted((t["thread.name"], t["site"]) for t in broken["threads"]) == [
        ("loader-0", waited_at),
        ("loader-1", waited_at),
    ]
    assert broken["message"].endswith("; 1 never came")
    row = outcome.primitive("loaded (broken_barrier.py:12)", "idle_waits")
    assert (row["waits"], row["blocked"], row["timeouts"]) == (2, 2, 1)
    outcomes = {s["attrs"]["sync.outcome"] for s in outcome.spans_named("barrier.wait")}
    assert outcomes == {"timeout", "broken"}


# -- holders that ended ----------------------------------------------------------


@uses("leaked_permits")
def test_leaked_permits(runs: Runs) -> None:
    """A worker that died holding all three permits of a BoundedSemaphore:
    every waiter names it as ended, with its three permits and where it took
    them (in its span and, past stuck_after_ms, its stuck_wait); one
    abandoned_hold says the same."""
    outcome = runs.outcome("leaked_permits")
    assert outcome.returncode == 1, outcome.describe()
    assert "4 requests gave up" in outcome.stdout
    name = "pool (leaked_permits.py:12)"
    taken_at = at("leaked_permits.py", "pool.acquire()")
    row = outcome.primitive(name)
    assert (row["kind"], row["contentions"], row["timeouts"]) == ("bounded_semaphore", 4, 4)
    (site,) = row["sites"]
    assert site["site"] == at("leaked_permits.py", "if pool.acquire(timeout=1.5)")
    (holder,) = site["holders"]
    assert (holder["threads"], holder["acquired_at"]) == (["worker-1"], [taken_at])
    waits = outcome.spans_named("bounded_semaphore.wait")
    assert len(waits) == 4
    for span in waits:
        attrs = span["attrs"]
        assert attrs["sync.outcome"] == "timeout"
        assert attrs["sync.holder.thread.name"] == "worker-1"
        assert attrs["sync.holder.ended"] is True
        assert attrs["sync.holder.permits"] == 3
        assert attrs["sync.holder.acquired_at"] == taken_at
    only_findings(outcome, abandoned_hold=1, stuck_wait=4)
    stuck = outcome.named("stuck_wait")
    assert sorted(e["thread.name"] for e in stuck) == [f"request-{i}" for i in range(4)]
    for event in stuck:
        assert event["message"].endswith(f"held by worker-1 (ended) x3, taken at {taken_at}"), (
            event["message"]
        )
        assert "holder_stacks" not in event or "worker-1" not in event["holder_stacks"]
    (abandoned,) = outcome.named("abandoned_hold")
    assert (abandoned["thread.name"], abandoned["count"]) == ("worker-1", 3)
    assert abandoned["acquired_at"] == taken_at
    assert abandoned["message"] == (
        f"worker-1 ended holding bounded_semaphore {name} #1 x3, taken at {taken_at}"
    )


@uses("rlock_abandoned")
def test_rlock_abandoned(runs: Runs) -> None:
    """An RLock left held by a request thread that returned early: reported
    at once (within a watchdog pass) by the thread's name; the next acquire
    names the ended holder. Where it was taken is unknown: the lock had
    never been contended (sites are recorded from the first contention on)
    and the holder's stack is gone."""
    outcome = runs.outcome("rlock_abandoned")
    assert outcome.returncode == 1, outcome.describe()
    only_findings(outcome, abandoned_hold=1)
    (abandoned,) = outcome.named("abandoned_hold")
    assert (abandoned["thread.name"], abandoned["sync.kind"], abandoned["count"]) == (
        "request-17",
        "rlock",
        1,
    )
    assert abandoned["acquired_at"] is None
    assert "only its owner can release an RLock" in abandoned["message"]
    (wait,) = outcome.spans_named("rlock.wait")
    assert wait["attrs"]["sync.outcome"] == "timeout"
    assert wait["attrs"]["sync.holder.thread.name"] == "request-17"
    assert wait["attrs"]["sync.holder.ended"] is True
    reported_ns = utc(abandoned["timestamp"]).timestamp() * 1e9
    assert reported_ns < int(wait["endTimeUnixNano"]), "reported while the wait was blocked"


# -- deadlocks -----------------------------------------------------------------------


@uses("philosophers")
def test_five_philosophers(runs: Runs) -> None:
    """Five forks made in one list comprehension, a five-way deadlock: each
    fork is told apart by its instance number, and each philosopher's hold
    is placed at the ``with left:`` where it took it."""
    outcome = runs.outcome("philosophers")
    assert outcome.returncode == KILLED, outcome.describe()
    forks = "philosophers.py:12"
    took_left = at("philosophers.py", "with left:")
    wants_right = at("philosophers.py", "with right:")
    only_findings(outcome, deadlock_detected=1, unfinished_wait=5)
    (deadlock,) = outcome.named("deadlock_detected")
    threads = {t["thread.name"]: t for t in deadlock["threads"]}
    assert sorted(threads) == [f"philosopher-{seat}" for seat in range(5)]
    for seat in range(5):
        t = threads[f"philosopher-{seat}"]
        right = (seat + 1) % 5
        assert forks in t["waits_for"]
        assert t["waits_for_instance"] == right + 1
        assert t["site"] == wants_right
        assert t["held_by"] == [f"philosopher-{right}"]
        assert t["held_by_acquired_at"] == [took_left]
        assert [(h["sync.instance"], h["acquired_at"]) for h in t["holds"]] == [
            (seat + 1, took_left)
        ]
        assert forks in t["holds"][0]["sync.name"]
        assert t["stack"][0] == f"{wants_right} in dine"
    assert f"#{1}" in deadlock["message"] and "philosopher-4" in deadlock["message"]
    # At SIGTERM every wait becomes an unfinished span, naming its holder.
    row = outcome.primitive(next(p["name"] for p in outcome.report["primitives"]))
    assert (row["contentions"], row["still_blocked"]["count"]) == (5, 5)
    spans = outcome.spans_named("lock.wait")
    assert len(spans) == 5
    for span in spans:
        attrs = span["attrs"]
        seat = int(attrs["thread.name"].rsplit("-", 1)[1])
        right = (seat + 1) % 5
        assert attrs["sync.outcome"] == "unfinished"
        assert attrs["sync.instance"] == right + 1
        assert attrs["sync.holder.thread.name"] == f"philosopher-{right}"
        assert attrs["sync.holder.acquired_at"] == took_left
        assert attrs["sync.holder.waiting_on.instance"] == (right + 1) % 5 + 1
        assert attrs["sync.holder.waiting_on.site"] == wants_right
    assert len(outcome.spans_named("tracedsync.deadlock")) == 1


@uses("self_deadlock")
def test_self_deadlock(runs: Runs) -> None:
    """A method holding a Lock calls another that takes it again: reported
    at once with both sites; at SIGTERM the wait names the thread itself as
    the holder, taken at the outer ``with``."""
    outcome = runs.outcome("self_deadlock")
    assert outcome.returncode == KILLED, outcome.describe()
    inner = at("self_deadlock.py", "with self._lock:", nth=0)  # in count()
    outer = at("self_deadlock.py", "with self._lock:", nth=1)  # in restock()
    calls_count = at("self_deadlock.py", 'print("restocked"')
    only_findings(outcome, self_deadlock_suspected=1, unfinished_wait=1)
    (event,) = outcome.named("self_deadlock_suspected")
    assert (event["thread.name"], event["site"], event["held_site"]) == ("MainThread", inner, outer)
    assert event["sync.name"] == "_lock (self_deadlock.py:13)"
    assert event["stack"][:2] == [f"{inner} in count", f"{calls_count} in restock"]
    (wait,) = outcome.spans_named("lock.wait")
    assert wait["attrs"]["sync.outcome"] == "unfinished"
    assert wait["attrs"]["sync.holder.thread.name"] == "MainThread"
    assert wait["attrs"]["sync.holder.acquired_at"] == outer


@uses("notify_under_lock")
def test_notified_but_blocked_by_the_notifier(runs: Runs) -> None:
    """The scheduler notifies the uploader and, still holding the condition's
    lock, wants the uploader's session_lock; the notified uploader needs the
    condition's lock back to return from ``wait()``. A two-thread deadlock
    through a Condition's lock: reported with where each lock was taken."""
    outcome = runs.outcome("notify_under_lock")
    assert outcome.returncode == KILLED, outcome.describe()
    only_findings(outcome, deadlock_detected=1, unfinished_wait=2)
    (deadlock,) = outcome.named("deadlock_detected")
    threads = {t["thread.name"]: t for t in deadlock["threads"]}
    assert set(threads) == {"uploader", "scheduler"}
    uploader, scheduler = threads["uploader"], threads["scheduler"]
    assert uploader["waits_for"] == "slots_free (notify_under_lock.py:15)"
    assert uploader["waits_for_kind"] == "rlock"  # the condition's own lock
    assert uploader["site"] == at("notify_under_lock.py", "slots_free.wait()")
    assert uploader["held_by"] == ["scheduler"]
    assert uploader["held_by_acquired_at"] == [at("notify_under_lock.py", "with slots_free:", 1)]
    assert scheduler["waits_for"] == "session_lock (notify_under_lock.py:14)"
    assert scheduler["site"] == at("notify_under_lock.py", "with session_lock:", 1)
    assert scheduler["held_by"] == ["uploader"]
    assert scheduler["held_by_acquired_at"] == [at("notify_under_lock.py", "with session_lock:", 0)]
    # Both waits are lock waits still blocked at the end, each naming the other.
    blocked = {s["thread"]: s for s in still_blocked(outcome, "primitives")}
    assert {t: s["holder"] for t, s in blocked.items()} == {
        "uploader": "scheduler",
        "scheduler": "uploader",
    }


@uses("pool_starvation")
def test_serial_executor_waiting_on_itself(runs: Runs) -> None:
    """A task of a one-worker executor waits for a task it queued behind
    itself, and the caller waits for the first. No lock is held: both waits
    are idle waits on the futures' conditions, reported once past
    idle_stuck_after_ms (300 ms here), at the ``result()`` calls."""
    outcome = runs.outcome("pool_starvation")
    assert outcome.returncode == KILLED, outcome.describe()
    only_findings(outcome, stuck_wait=2, unfinished_wait=2)
    stuck = {e["thread.name"]: e for e in outcome.named("stuck_wait")}
    assert set(stuck) == {"MainThread", "db-writer_0"}
    assert stuck["db-writer_0"]["site"] == at("pool_starvation.py", "audit.result()")
    assert stuck["MainThread"]["site"] == at("pool_starvation.py", "writer.submit(save_order")
    for event in stuck.values():
        assert event["idle"] is True and event["sync.kind"] == "condition"
        assert event["sync.name"].startswith("_condition (concurrent/futures/_base.py:")
    # Two futures, two instances made at the same site.
    assert stuck["db-writer_0"]["sync.instance"] != stuck["MainThread"]["sync.instance"]
    assert outcome.report["still_blocked_total"] == {"primitives": 0, "idle_waits": 2}


@uses("hot_lock")
def test_hot_lock(runs: Runs) -> None:
    """A cache lock held across a slow backend call: no finding, but the
    report ranks it first, names the waiting site and the holders' site (the
    backend call) and where they took it; a ``--fail-on wait-p99`` gate
    catches it, and the barely held metrics lock ranks after it."""
    outcome = runs.outcome("hot_lock")
    assert outcome.returncode == 0, outcome.describe()
    only_findings(outcome)
    first, *others = outcome.report["primitives"]
    assert first["name"] == "cache_lock (hot_lock.py:13)"
    assert first["contentions"] >= 8
    assert first["wait"]["p99"] >= 0.02
    assert first["hold"]["max"] >= 0.01
    (site,) = first["sites"]
    assert site["site"] == at("hot_lock.py", "with cache_lock:")
    assert site["function"] == "get"
    holders = {h["site"]: h for h in site["holders"]}
    assert at("hot_lock.py", "time.sleep(0.01)") in holders
    assert holders[at("hot_lock.py", "time.sleep(0.01)")]["acquired_at"] == [
        at("hot_lock.py", "with cache_lock:")
    ]
    metrics = outcome.primitive("metrics_lock (hot_lock.py:14)")
    assert metrics in others and metrics["wait"]["total"] < first["wait"]["total"]
    gate = outcome.report_again("--fail-on", "wait-p99>5ms")
    assert gate.returncode == 1
    assert "cache_lock (hot_lock.py:13)" in gate.stderr


@uses("idle_pool_reload")
def test_contention_ranks_above_idle_waits(runs: Runs) -> None:
    """Eight workers idle on a queue most of the time, blocked together once
    by a reload holding settings_lock: the lock is PRIMITIVES' first row
    although the pool spent longer idle; the queue's waits are in IDLE WAITS
    only; the workers' THREADS row (one, for the eight) ranks them by their
    contention, their idle time apart; wait gates count the contention only,
    idle-wait gates the idle waits."""
    outcome = runs.outcome("idle_pool_reload")
    assert outcome.returncode == 0, outcome.describe()
    only_findings(outcome)
    name = "settings_lock (idle_pool_reload.py:18)"
    first = outcome.report["primitives"][0]
    assert first["name"] == name
    assert first["contentions"] >= 4 and first["wait"]["max"] >= 0.2
    assert all(p["kind"] in {"lock", "rlock"} for p in outcome.report["primitives"])
    (site,) = first["sites"]
    assert (site["site"], site["function"]) == (
        at("idle_pool_reload.py", "with settings_lock:", 0),
        "work",
    )
    reloader = next(h for h in site["holders"] if h["threads"] == ["reloader"])
    assert reloader["site"] == at("idle_pool_reload.py", "time.sleep(0.3)  # parsing")
    assert reloader["acquired_at"] == [at("idle_pool_reload.py", "with settings_lock:", 1)]
    idle = next(
        p for p in outcome.report["idle_waits"] if p["name"].startswith("not_empty (queue.py:")
    )
    assert idle["wait"]["total"] > first["wait"]["total"]
    assert [s["site"] for s in idle["sites"]] == [
        at("idle_pool_reload.py", "request = requests.get()")
    ]
    workers, *rest = outcome.report["threads"]
    assert (workers["name"], workers["threads"]) == ("worker-*", 8)
    assert workers["most_waited_on"]["name"] == name
    assert workers["wait_total"] >= first["spans"]["wait_total"] > 0
    assert workers["idle_total"] > workers["wait_total"]
    assert [t["name"] for t in rest] == ["reloader"] and rest[0]["wait_total"] == 0
    between = (first["wait"]["total"] + idle["wait"]["total"]) / 2
    assert outcome.report_again("--fail-on", f"wait-total>{between:.3f}s").returncode == 0
    gate = outcome.report_again("--fail-on", f"idle-wait-total>{between:.3f}s")
    assert gate.returncode == 1 and "not_empty (queue.py:" in gate.stderr, gate.stderr
    gate = outcome.report_again("--fail-on", "wait-p99>50ms")
    assert gate.returncode == 1 and name in gate.stderr and "not_empty" not in gate.stderr


@uses("health_timeouts")
def test_timeouts(runs: Runs) -> None:
    """A health check gives up three times on a lock a migration holds, while
    a heartbeat polls an Event and a poller a Queue, with timeouts. The
    acquires that timed out are contention (three, with their holder, where
    it took the lock and what it does now); the polls that timed out are
    idle waits, counted in IDLE WAITS' TIMEOUTS, not contention, and no
    finding."""
    outcome = runs.outcome("health_timeouts")
    assert outcome.returncode == 0, outcome.describe()
    assert "health check failures: 3" in outcome.stdout
    only_findings(outcome)
    name = "db_lock (health_timeouts.py:16)"
    first = outcome.report["primitives"][0]
    assert (first["name"], first["contentions"], first["timeouts"]) == (name, 3, 3)
    assert first["wait"]["total"] >= 0.55
    assert [p["name"] for p in outcome.report["primitives"] if p["contentions"]] == [name]
    assert all(p["kind"] in {"lock", "rlock"} for p in outcome.report["primitives"])
    (site,) = first["sites"]
    assert (site["site"], site["timeouts"]) == (
        at("health_timeouts.py", "if db_lock.acquire(timeout=0.2)"),
        3,
    )
    (holder,) = site["holders"]
    assert holder["threads"] == ["migrator"]
    assert holder["site"] == at("health_timeouts.py", "time.sleep(1.0)")
    assert holder["acquired_at"] == [at("health_timeouts.py", "with db_lock:")]
    waits = outcome.spans_named("lock.wait")
    assert len(waits) == 3
    for span in waits:
        attrs = span["attrs"]
        assert (attrs["thread.name"], attrs["sync.outcome"]) == ("health-check", "timeout")
        assert attrs["sync.holder.thread.name"] == "migrator"
        assert attrs["sync.holder.acquired_at"] == at("health_timeouts.py", "with db_lock:")
        assert attrs["sync.holder.site"] == at("health_timeouts.py", "time.sleep(1.0)")
    idle = {p["name"]: p for p in outcome.report["idle_waits"]}
    stop = idle["stop (health_timeouts.py:18)"]
    inbox = next(p for n, p in idle.items() if n.startswith("not_empty (queue.py:"))
    for row in (stop, inbox):
        assert row["timeouts"] >= 5 and row["timeouts"] >= row["waits"] - 1
        assert row["still_blocked"]["count"] == 0
    assert [s["site"] for s in stop["sites"]] == [
        at("health_timeouts.py", "while not stop.wait(0.05)")
    ]
    assert [s["site"] for s in inbox["sites"]] == [
        at("health_timeouts.py", "inbox.get(timeout=0.05)")
    ]
    threads = {t["name"]: t for t in outcome.report["threads"]}
    assert outcome.report["threads"][0]["name"] == "health-check"
    for poller in ("heartbeat", "poller"):
        assert threads[poller]["wait_total"] == 0 and threads[poller]["idle_total"] > 0.5
    assert outcome.report_again("--fail-on", "timeouts>2").returncode == 1
    assert outcome.report_again("--fail-on", "contentions>3").returncode == 0


# -- a lock held across a wait for something else ---------------------------------------


def assert_holder_waits_on(
    event: dict[str, Any], holder: str, taken_at: str, on_kind: str, on_name: str, on_site: str
) -> None:
    """A stuck wait's holder, where it took the lock, and what it waits on now."""
    assert event["sync.holder.thread.name"] == holder
    assert event["sync.holder.acquired_at"] == taken_at
    assert event["sync.holder.site"] == on_site
    assert event["sync.holder.waiting_on.kind"] == on_kind
    assert event["sync.holder.waiting_on.name"].startswith(on_name)
    assert event["sync.holder.waiting_on.site"] == on_site
    since = utc(event["sync.holder.waiting_on.since"])
    assert since < utc(event["timestamp"])
    (link,) = event["chain"]
    assert link["sync.holder.thread.name"] == holder
    assert event["holder_stacks"][holder]


@uses("lock_queue")
def test_lock_held_across_queue_get(runs: Runs) -> None:
    """The flusher holds state_lock while blocked in ``Queue.get``; the
    collector, which would fill the queue, waits for state_lock. The stuck
    wait names the flusher, where it took the lock, and that it waits on the
    queue's not_empty condition -- where, and since when."""
    outcome = runs.outcome("lock_queue")
    assert outcome.returncode == 1, outcome.describe()
    (stuck,) = outcome.named("stuck_wait")
    assert (stuck["thread.name"], stuck["idle"]) == ("collector", False)
    assert stuck["sync.name"] == "state_lock (lock_queue.py:14)"
    assert stuck["site"] == at("lock_queue.py", "with state_lock:", nth=1)
    assert_holder_waits_on(
        stuck,
        "flusher",
        at("lock_queue.py", "with state_lock:", nth=0),
        "condition",
        "not_empty (queue.py:",
        at("lock_queue.py", "batch = batches.get()"),
    )
    assert "itself waiting on condition not_empty" in stuck["message"]
    # At exit: the collector's wait is still blocked (a finding), the
    # flusher's queue wait is an idle wait still waiting (listed, below the
    # default idle_stuck_after_ms, so not a finding).
    only_findings(outcome, stuck_wait=1, unfinished_wait=1)
    (lock_wait,) = still_blocked(outcome, "primitives")
    assert (lock_wait["thread"], lock_wait["holder"]) == ("collector", "flusher")
    (idle_wait,) = still_blocked(outcome, "idle_waits")
    assert idle_wait["thread"] == "flusher" and idle_wait["name"].startswith("not_empty")
    # The exit summary: a lock wait that never ended is contention.
    assert "still blocked at exit: 1 lock wait(s), 1 idle wait(s)" in outcome.stderr
    assert "no contention" not in outcome.stderr, outcome.stderr


@uses("lock_event")
def test_lock_held_across_event_wait(runs: Runs) -> None:
    """The loader holds registry_lock while waiting for the plugin's ready
    Event; the plugin first needs registry_lock. The stuck wait names the
    main thread, the ``with`` where it took the lock, and the event it waits on."""
    outcome = runs.outcome("lock_event")
    assert outcome.returncode == 1, outcome.describe()
    assert "plugin ready in time: False" in outcome.stdout
    only_findings(outcome, stuck_wait=1)
    (stuck,) = outcome.named("stuck_wait")
    assert (stuck["thread.name"], stuck["sync.name"]) == (
        "plugin-audit",
        "registry_lock (lock_event.py:12)",
    )
    assert stuck["site"] == at("lock_event.py", "with registry_lock:", nth=0)
    assert_holder_waits_on(
        stuck,
        "MainThread",
        at("lock_event.py", "with registry_lock:", nth=1),
        "event",
        "ready (lock_event.py:14)",
        at("lock_event.py", "return ready.wait(timeout=2.0)"),
    )
    assert stuck["sync.holder.waiting_on.instance"] == 1
    # The span names the holder as it was when the wait began: maybe still
    # starting the plugin's thread, maybe waiting on ``ready`` already.
    (wait,) = outcome.spans_named("lock.wait")
    assert wait["attrs"]["sync.outcome"] == "acquired"
    assert wait["attrs"]["sync.holder.thread.name"] == "MainThread"
    assert wait["attrs"]["sync.holder.acquired_at"] == stuck["sync.holder.acquired_at"]
    assert wait["attrs"].get("sync.holder.waiting_on.name", "ready (").startswith("ready (")


@uses("lock_future")
def test_lock_held_across_future_result(runs: Runs) -> None:
    """``future.result()`` under cache_lock, while the future's task needs
    cache_lock: the pool worker's stuck wait names the main thread, where it
    took the lock, and that it waits on the future's condition at the
    ``result()`` call."""
    outcome = runs.outcome("lock_future")
    assert outcome.returncode == 1, outcome.describe()
    assert "report timed out" in outcome.stdout
    only_findings(outcome, stuck_wait=1)
    (stuck,) = outcome.named("stuck_wait")
    assert stuck["thread.name"].startswith("reports_")
    assert stuck["sync.name"] == "cache_lock (lock_future.py:13)"
    assert stuck["site"] == at("lock_future.py", "with cache_lock:", nth=0)
    assert_holder_waits_on(
        stuck,
        "MainThread",
        at("lock_future.py", "with cache_lock:", nth=1),
        "condition",
        "_condition (concurrent/futures/_base.py:",
        at("lock_future.py", "cache[name] = future.result(timeout=2.0)"),
    )
    row = outcome.primitive("cache_lock (lock_future.py:13)")
    assert (row["contentions"], row["timeouts"]) == (1, 0)
    assert row["wait"]["max"] >= 1.5


# -- lock order ----------------------------------------------------------------------------


@uses("transfers")
def test_transfer_inversion_between_two_accounts(runs: Runs) -> None:
    """transfer(alice, bob) then transfer(bob, alice), each locking its source
    then its target: two instances of Account.lock taken in both orders. No
    deadlock happened; --lock-order reports the inversion, naming both
    instances and the sites of both nestings."""
    outcome = runs.outcome("transfers")
    assert outcome.returncode == 0, outcome.describe()
    only_findings(outcome, lock_order_inversion=1)
    (inversion,) = outcome.named("lock_order_inversion")
    assert inversion["same_class"] is True
    outer = at("transfers.py", "with source.lock:")
    inner = at("transfers.py", "with target.lock:")
    edges = {(e["outer_instance"], e["inner_instance"]): e for e in inversion["edges"]}
    assert set(edges) == {(1, 2), (2, 1)}  # alice (#1) and bob (#2), both ways
    for edge in edges.values():
        assert edge["outer"] == edge["inner"] == "lock (transfers.py:19)"
        assert (edge["outer_site"], edge["inner_site"]) == (outer, inner)
        assert edge["thread.name"].endswith("(transfer)")
    assert "lock (transfers.py:19) #1" in inversion["message"]
    assert "lock (transfers.py:19) #2" in inversion["message"]


@uses("ordered_transfers")
def test_ordered_transfers_are_not_an_inversion(runs: Runs) -> None:
    """The same transfers, each locking the lower account number first: no finding."""
    outcome = runs.outcome("ordered_transfers")
    assert outcome.returncode == 0, outcome.describe()
    assert "balances: 111 85 104" in outcome.stdout
    only_findings(outcome)


# -- contention that is not a bug ------------------------------------------------------------


@uses("rlock_recursion")
def test_rlock_recursion(runs: Runs) -> None:
    """An RLock re-entered six deep and held across a slow call: one
    outermost acquisition per thread, one contention (the reader), one hold
    span of depth 6 that the reader's wait names -- and no finding."""
    outcome = runs.outcome("rlock_recursion")
    assert outcome.returncode == 0, outcome.describe()
    only_findings(outcome)
    row = outcome.primitive("tree_lock (rlock_recursion.py:14)")
    assert (row["kind"], row["acquisitions"], row["contentions"], row["timeouts"]) == (
        "rlock",
        2,
        1,
        0,
    )
    assert row["wait"]["max"] >= 0.15  # the rest of the walk's 0.2 s fetch
    assert row["hold"]["max"] >= 0.2
    (hold,) = outcome.spans_named("rlock.hold")
    assert hold["attrs"]["thread.name"] == "walker"
    assert hold["attrs"]["sync.rlock.depth"] == 6
    (wait,) = outcome.spans_named("rlock.wait")
    assert wait["attrs"]["thread.name"] == "reader"
    assert wait["attrs"]["sync.holder.thread.name"] == "walker"
    assert wait["attrs"]["sync.holder.acquired_at"] == at(
        "rlock_recursion.py", "with tree_lock:", 0
    )
    assert wait["attrs"]["sync.holder.site"] == at("rlock_recursion.py", "time.sleep(0.2)")
    assert [link["spanId"] for link in wait["links"]] == [hold["spanId"]]


@uses("healthy", "healthy_lock_order")
def test_healthy_busy_service(runs: Runs) -> None:
    """A thread pool, a queue, locks, an RLock taken recursively, a semaphore
    and futures, all busy: no finding, with or without --lock-order. Waits
    for work are in IDLE WAITS only; the daemon still waiting in
    ``Queue.get`` at exit is listed there, not a finding."""
    for name in ("healthy", "healthy_lock_order"):
        outcome = runs.outcome(name)
        assert outcome.returncode == 0, outcome.describe()
        assert "orders 400 units 1200" in outcome.stdout
        only_findings(outcome)
        kinds = {p["kind"] for p in outcome.report["primitives"]}
        assert kinds <= {"lock", "rlock", "semaphore", "bounded_semaphore"}
        assert {"lock", "rlock", "bounded_semaphore"} <= kinds
        idle = {p["name"].split(" (")[0] for p in outcome.report["idle_waits"]}
        assert {"not_full", "not_empty", "_condition"} <= idle
        assert outcome.primitive("stats_lock (healthy_service.py:30)")["contentions"] > 0
        assert still_blocked(outcome, "primitives") == []
        (writer,) = still_blocked(outcome, "idle_waits")
        assert writer["thread"] == "audit-writer"
        assert writer["site"] == at("healthy_service.py", "audit_log.get()")
        assert outcome.report_again("--fail-on", "findings>0").returncode == 0
        gate = outcome.report_again("--fail-on", "idle-unfinished>0")
        assert gate.returncode == 1, gate.stderr


@uses("main_returns_first")
def test_waits_blocked_when_the_main_thread_returns_that_end_later(runs: Runs) -> None:
    """The flush when the main thread returns reports the reader's and the
    reporter's waits still blocked; they end afterwards, so the exit summary
    and the report show nothing blocked at exit and no finding."""
    outcome = runs.outcome("main_returns_first")
    assert "reader saw 1000" in outcome.stdout and "reporter saw 1000" in outcome.stdout
    assert "still blocked" not in outcome.stderr and "still waiting" not in outcome.stderr
    reported = {(e["thread.id"], e["since"]) for e in outcome.named("unfinished_wait")}
    ended = {(e["thread.id"], e["since"]) for e in outcome.named("unfinished_wait_ended")}
    assert reported and reported == ended
    only_findings(outcome)
    assert outcome.report["still_blocked"] == []
    assert outcome.primitive("cache_lock (main_returns_first.py:14)")["contentions"] == 1
    assert outcome.report_again("--fail-on", "findings>0").returncode == 0


# -- what every lock wait span carries ------------------------------------------------------------


@uses("counter_thresholds_0", "hot_lock_thresholds_0")
def test_every_lock_wait_names_its_holder_and_handoff(runs: Runs) -> None:
    """examples/counter.py and hot_lock.py with thresholds 0: every lock.wait
    span names its holder (``sync.holder.*``, where it took the lock
    included) or says it had released before the waiter looked -- holder
    information is never silently missing -- and every acquired wait carries
    ``sync.wait.handoff``, no longer than the wait. (How often counter.py's
    threads contend is up to the scheduler; hot_lock.py's always do.)"""
    waits = []
    for name, sites in (
        ("counter_thresholds_0", "counter.py:"),
        ("hot_lock_thresholds_0", "hot_lock.py:"),
    ):
        outcome = runs.outcome(name)
        assert outcome.returncode == 0, outcome.describe()
        for span in outcome.spans_named("lock.wait"):
            attrs = span["attrs"]
            if "sync.holder.thread.name" in attrs:
                assert attrs["sync.holder.thread.name"] != attrs["thread.name"]
                assert attrs["sync.holder.acquired_at"].startswith(sites)
            else:
                assert attrs["sync.holder.released_before_wait"] is True, attrs
            assert attrs["sync.outcome"] == "acquired"
            duration = (int(span["endTimeUnixNano"]) - int(span["startTimeUnixNano"])) / 1e9
            assert 0 <= attrs["sync.wait.handoff"] <= duration + 1e-6
            waits.append(span)
    named = [w for w in waits if "sync.holder.thread.name" in w["attrs"]]
    assert len(named) >= 8, "hot_lock.py's clients wait for each other's fetches"


def test_programs_run_with_the_implementation_under_test(tmp_path: Path) -> None:
    """The programs get the test process's implementation (CI runs the suite
    once compiled, once with TRACEDSYNC_PURE_PYTHON=1)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tracedsync",
            "run",
            "--output-dir",
            str(tmp_path / "out"),
            "--",
            sys.executable,
            "-c",
            "import tracedsync; print(tracedsync.IMPLEMENTATION)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment({}),
    )
    assert result.stdout.strip() == tracedsync.IMPLEMENTATION, result.stderr

"""``tracedsync bench --flood``: both implementations, with and without an exporter."""

from __future__ import annotations

import threading

from tracedsync import _settings, _stdlib, primitives
from tracedsync.bench import flood
from tracedsync.bench.timing import Settings


def test_flood_once_accounts_for_every_record_and_unpatches() -> None:
    """A small flood in this process: every record exported or dropped, threading
    restored and tracedsync shut down afterwards."""
    one = flood.flood_once(True, threads=20, ops=20, locks=4)
    acc = one["accounting"]
    assert one["flushed"] and one["app_seconds"] > 0
    assert acc["produced"] >= 20 * 20  # a hold record per `with` (thresholds 0)
    assert acc["produced"] == acc["exported"] + acc["dropped"] + acc["failed"]
    assert one["implementation"] == primitives.IMPLEMENTATION
    assert threading.Lock is _stdlib.Lock and not _settings.current.recording


def test_measure_runs_each_implementation_in_fresh_processes() -> None:
    """Every implementation, jsonfile and no exporter, each in its own process."""
    data = flood.measure(["flood"], Settings(repeat=1), lambda _: None, threads=10, ops=10)
    impls = ["compiled", "pure"] if primitives.CompiledLock is not None else ["pure"]
    assert sorted(data["cases"]["flood"]) == sorted(impls)
    for c in data["cases"]["flood"].values():
        assert (
            c["jsonfile_seconds"] > 0
            and c["no_exporter_seconds"] > 0
            and c["worst_ratio"] >= c["median_ratio"] > 0
        )
        assert c["accounting"]["produced"] >= 100
    assert {f.id for f in flood.figures(data)} == {f"flood [{i}]" for i in impls}
    assert "Flood: 10 threads x 10" in "\n".join(flood.format_lines(data))

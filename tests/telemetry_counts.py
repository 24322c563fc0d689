"""Record counts before and after a piece of a test, per exporter.

The shared buffer counts ``produced`` and ``dropped``; every exporter's lane
counts ``offered``, ``exported``, ``lane_dropped`` and ``failed`` (records, see
``tracedsync.exporters.lanes``). Once everything is flushed, for every
exporter that takes records: offered == produced - dropped (each record taken
from the buffer is offered to every lane) and offered == exported +
lane_dropped + failed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tracedsync import lifecycle, records
from tracedsync.exporters import lanes

RECORD_FIELDS = ("offered", "exported", "lane_dropped", "failed")


def snapshot() -> dict[str, Any]:
    acc = records.accounting
    pipe = lifecycle.pipeline()
    return {
        "produced": acc.produced,
        "dropped": acc.dropped,
        "exporters": lanes.record_totals(),
        "active": [lane.name for lane in pipe.lanes if lane.takes_records] if pipe else [],
    }


class Counts:
    """What changed between two snapshots."""

    def __init__(self, before: dict[str, Any], after: dict[str, Any]) -> None:
        self.produced = after["produced"] - before["produced"]
        self.dropped = after["dropped"] - before["dropped"]
        #: The exporters taking records when the block began.
        self.active: list[str] = before["active"]
        self.exporters: dict[str, dict[str, int]] = {}
        for name, now in after["exporters"].items():
            then = before["exporters"].get(name, dict.fromkeys(RECORD_FIELDS, 0))
            self.exporters[name] = {k: now[k] - then[k] for k in RECORD_FIELDS}

    def of(self, exporter: str) -> dict[str, int]:
        return self.exporters[exporter]

    def assert_exact(self, *names: str) -> None:
        """offered == produced - dropped == exported + lane_dropped + failed, for each
        of ``names`` (default: the exporters taking records when the block began)."""
        taken = self.produced - self.dropped
        for name in names or self.active:
            c = self.exporters[name]
            assert c["offered"] == taken, (name, c, taken)
            assert c["offered"] == c["exported"] + c["lane_dropped"] + c["failed"], (name, c)

    def __repr__(self) -> str:
        return f"Counts(produced={self.produced}, dropped={self.dropped}, {self.exporters})"


@contextmanager
def counted() -> Iterator[list[Counts]]:
    """``with counted() as out:`` ... then ``out[0]`` is the :class:`Counts` of the block."""
    out: list[Counts] = []
    before = snapshot()
    yield out
    out.append(Counts(before, snapshot()))

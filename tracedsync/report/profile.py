"""Wait time by stack: the aggregate behind ``--format pprof``, ``--format
folded`` and the HTML page's flame graph (model layer).

A sample is a stack and a primitive, with how many waits it holds and how
long they waited in all. Stacks are frames ``"path:line in function"``,
innermost first, as spans carry them in ``sync.stack``; a span without one
(a single frame) gives ``sync.site`` in ``code.function.name``.

Two sides, as Go's profiles have:

- ``waiter`` (Go's block profile): each wait is charged to the waiting
  thread's stack;
- ``holder`` (Go's mutex profile, which charges the delay to the unlocker):
  each lock-like wait is charged to the stack of the thread that released
  the primitive to it, the ``sync.stack`` of the hold span the wait links
  to. A wait whose hold is not in the files (or that has no link: the holder
  released before the waiter looked, or none was known) is charged to a
  one-frame stack saying so.

Which waits: ``contention`` (lock, rlock, semaphores: the PRIMITIVES
section), ``idle`` (event, condition, barrier: IDLE WAITS) or ``all``. Only
wait spans count, so only waits at or above ``wait_threshold_ms`` and kept
by the span budget; a wait still blocked at exit counts with the time it had
waited. Memory is bounded: at most ``MAX_SAMPLES`` distinct stacks and
primitives (later new ones are counted under an ``(other stacks)`` frame of
their primitive), and the hold stacks the holder side remembers.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any

from tracedsync.kinds import IDLE_KINDS, LOCK_KINDS
from tracedsync.report.read import SpanRecord, stack_frames

SIDES = ("waiter", "holder")
WAITS = ("contention", "idle", "all")
#: Distinct (stack, primitive) samples kept.
MAX_SAMPLES = 100_000
OTHER_STACKS = "(other stacks: more than 100,000 distinct)"
_OTHER = (OTHER_STACKS,)
#: Hold stacks remembered while a wait may still link to their hold (the
#: runtime writes a hold before the waits that link to it).
RECENT_HOLDS = 50_000
#: Of those, what a worker process hands back for the next chunk's waits.
TAIL_HOLDS = 10_000
RELEASED_BEFORE = "(released before the waiter looked)"
HOLDER_UNKNOWN = "(holder unknown)"
#: "path:line in function"
_FRAME = re.compile(r"^(.*):(\d+) in (.*)$", re.S)

#: (frames innermost first, kind, name)
SampleKey = tuple[tuple[str, ...], str, str]


def parse_frame(frame: str) -> tuple[str, int, str]:
    """``"app/db.py:57 in get"`` as ``(path, line, function)``; a frame in
    another form is all function (path ``""``, line 0)."""
    match = _FRAME.match(frame)
    if match is None:
        return "", 0, frame
    return match.group(1), int(match.group(2)), match.group(3)


def kinds_of(waits: str) -> frozenset[str]:
    if waits == "contention":
        return LOCK_KINDS
    if waits == "idle":
        return IDLE_KINDS
    return LOCK_KINDS | IDLE_KINDS


class Profile:
    """Waits folded by (stack, primitive): count and total wait (ns)."""

    def __init__(self, side: str = "waiter", waits: str = "contention") -> None:
        if side not in SIDES:
            raise ValueError(f"side {side!r}")
        if waits not in WAITS:
            raise ValueError(f"waits {waits!r}")
        self.side = side
        self.waits = waits
        self.kinds = kinds_of(waits)
        self.samples: dict[SampleKey, list[int]] = {}
        #: Waits folded in, and those counted under OTHER_STACKS.
        self.count = 0
        self.overflow = 0
        #: Holder side: waits charged to a one-frame "unknown" stack.
        self.unresolved = 0
        #: raw sync.stack JSON (bytes) -> frames; frames -> the one shared tuple
        self._raw: dict[bytes, tuple[str, ...] | None] = {}
        self._tuples: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._sites: dict[tuple[str, str], tuple[str, ...]] = {}
        #: Holder side: hold span id -> its (releasing thread's) frames.
        self._recent: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        #: Holder side: hold span id -> waits that link to it, not yet seen.
        self._wanted: dict[str, list[tuple[str, str, int, int]]] = {}

    # -- frames ---------------------------------------------------------------------

    def frames(self, rec: SpanRecord) -> tuple[str, ...]:
        """The span's stack, innermost first (its site when it has none)."""
        a = rec.a
        raw = a.stack
        if raw is not None:
            if raw.__class__ is tuple or raw.__class__ is dict:
                found = stack_frames(raw)
                if found is not None:
                    shared = self._tuples.get(found)
                    if shared is None:
                        if len(self._tuples) >= MAX_SAMPLES:
                            self._tuples.clear()
                        shared = self._tuples[found] = found
                    return shared
            else:
                key = bytes(raw)
                try:
                    found = self._raw[key]
                except KeyError:
                    found = stack_frames(key)
                    if len(self._raw) >= MAX_SAMPLES:
                        self._raw.clear()
                    self._raw[key] = found
                if found is not None:
                    return found
        site = (a.site, a.function)
        one = self._sites.get(site)
        if one is None:
            fn = a.function or "?"
            one = self._sites[site] = (f"{a.site} in {fn}",)
        return one

    # -- folding --------------------------------------------------------------------

    def add(self, rec: SpanRecord) -> None:
        """Fold one span in (the model calls this for every span it keeps)."""
        a = rec.a
        kind = a.kind
        if not rec.is_wait:
            if self.side == "holder" and kind in LOCK_KINDS:
                self._hold(rec.span_id, self.frames(rec))
            return
        if kind not in self.kinds:
            return
        dur = rec.end_ns - rec.start_ns
        self.count += 1
        if self.side == "waiter" or kind not in LOCK_KINDS:
            # Events, conditions and barriers have no holder: their waits
            # stay with the waiter's stack on either side.
            self._sample(self.frames(rec), kind, a.name, 1, dur)
            return
        for link in rec.links[:1]:
            frames = self._recent.get(link)
            if frames is not None:
                self._sample(frames, kind, a.name, 1, dur)
            else:
                self._wanted.setdefault(link, []).append((kind, a.name, 1, dur))
            return
        self._unknown(rec.h.released_before, kind, a.name, 1, dur)

    def _unknown(self, released_before: bool, kind: str, name: str, n: int, dur: int) -> None:
        self.unresolved += n
        frames = (RELEASED_BEFORE,) if released_before else (HOLDER_UNKNOWN,)
        self._sample(frames, kind, name, n, dur)

    def _hold(self, span_id: str, frames: tuple[str, ...]) -> None:
        waiting = self._wanted.pop(span_id, None)
        if waiting is not None:
            for kind, name, n, dur in waiting:
                self._sample(frames, kind, name, n, dur)
        recent = self._recent
        recent[span_id] = frames
        if len(recent) > RECENT_HOLDS:
            recent.popitem(last=False)

    def _sample(self, frames: tuple[str, ...], kind: str, name: str, n: int, dur: int) -> None:
        key = (frames, kind, name)
        entry = self.samples.get(key)
        if entry is None:
            if len(self.samples) >= MAX_SAMPLES:
                key = (_OTHER, kind, name)
                if frames is not _OTHER:
                    self.overflow += n
                entry = self.samples.get(key)
            if entry is None:
                entry = self.samples[key] = [0, 0]
        entry[0] += n
        entry[1] += dur

    # -- worker processes -------------------------------------------------------------

    def part(self) -> Profile:
        """What a worker hands back: its samples, the waits still looking for
        their hold, and its last holds (for the next chunk's waits)."""
        out = Profile(self.side, self.waits)
        out.samples = self.samples
        out.count, out.overflow, out.unresolved = self.count, self.overflow, self.unresolved
        out._wanted = self._wanted
        tail = list(self._recent.items())[-TAIL_HOLDS:]
        out._recent = OrderedDict(tail)
        return out

    def merge(self, part: Profile) -> None:
        """Add a worker's part (parts are merged in file order)."""
        for (frames, kind, name), (n, dur) in part.samples.items():
            if frames == _OTHER:
                frames = _OTHER
            elif len(self._tuples) < MAX_SAMPLES:
                frames = self._tuples.setdefault(frames, frames)
            self._sample(frames, kind, name, n, dur)
        self.count += part.count
        self.overflow += part.overflow
        self.unresolved += part.unresolved
        for link, waiting in part._wanted.items():
            frames_ = self._recent.get(link)
            if frames_ is not None:
                for kind, name, n, dur in waiting:
                    self._sample(frames_, kind, name, n, dur)
            else:
                self._wanted.setdefault(link, []).extend(waiting)
        for span_id, frames in part._recent.items():
            self._hold(span_id, self._tuples.setdefault(frames, frames))

    def finish(self) -> None:
        """Charge the waits whose hold never came to the "unknown" frame."""
        for waiting in self._wanted.values():
            for kind, name, n, dur in waiting:
                self._unknown(False, kind, name, n, dur)
        self._wanted = {}
        self._recent = OrderedDict()

    # -- output -------------------------------------------------------------------------

    def leaf(self, kind: str, name: str) -> str:
        """The frame below the innermost one: the primitive and what was done
        to it (Go's profiles end in ``sync.(*Mutex).Lock`` or ``Unlock``)."""
        verb = "release" if self.side == "holder" and kind in LOCK_KINDS else "wait"
        return f"{kind}.{verb} {name}"

    def sorted_samples(self) -> list[tuple[tuple[str, ...], str, str, int, int]]:
        """``(frames, kind, name, count, total ns)``, the longest total first."""
        out = [(f, k, n, v[0], v[1]) for (f, k, n), v in self.samples.items()]
        out.sort(key=lambda s: (-s[4], -s[3], s[1], s[2], s[0]))
        return out

    def describe(self) -> dict[str, Any]:
        """What the profile holds, for a comment, a heading or a warning."""
        return {
            "side": self.side,
            "waits": self.waits,
            "samples": len(self.samples),
            "count": self.count,
            "total_ns": sum(v[1] for v in self.samples.values()),
            "overflow": self.overflow,
            "unresolved": self.unresolved,
        }

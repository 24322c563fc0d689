"""Did a signal that reached ``tracedsync run`` reach the whole process group?

The program runs in `tracedsync run`'s process group (the terminal's job
control, ``Ctrl-Z``, ``fg`` and reads from the terminal work as without
tracedsync). A signal sent to that group -- the terminal's Ctrl-C, ``timeout``,
``kill -INT -PGID``, ``os.killpg`` -- reaches the program directly, so the
parent must not forward it again; a signal sent to the parent's pid alone
must be forwarded. ``siginfo`` cannot tell the two apart (both are
``SI_USER``; only the terminal's are ``SI_KERNEL``), so a sentinel does: a
forked process in the same group, with the forwarded signals blocked, that
reports each one it receives. The kernel queues a group signal to every
member within the sender's ``kill()`` call, so when the parent dequeues its
copy, the sentinel's is already pending (read from ``/proc``) or reported
through a pipe.
"""

from __future__ import annotations

import os
import signal
import struct
import threading
import time
from collections.abc import Iterable

#: Longer than the kernel takes to queue a group signal to every member
#: (it does so within the sender's kill()); only how long a signal sent to
#: the parent alone waits before it is forwarded.
_SETTLE_S = 0.05
#: A report older than this is not matched with a signal the parent gets later.
_MATCH_S = 1.0
_REPORT = struct.Struct("<Bq")  # signal number, CLOCK_MONOTONIC ns


class GroupWatch:
    """The sentinel of the current process group (see the module docstring).

    Made while ``signals`` are blocked in the calling thread; without a
    sentinel (``fork`` impossible, or threads running: forking then is
    unsafe) :meth:`reached_group` answers False and every signal is forwarded.
    """

    def __init__(self, signals: Iterable[signal.Signals]) -> None:
        self._signals = set(signals)
        self._pid = 0
        self._reports: list[tuple[int, int]] = []  # (signal, monotonic ns), unmatched
        self._owed: dict[int, int] = {}  # seen pending: their reports are to be ignored
        self._read_fd = -1
        if threading.active_count() > 1 or not hasattr(os, "fork"):
            return
        read_fd, write_fd = os.pipe()
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError:
            os.close(read_fd)
            os.close(write_fd)
            return
        if pid == 0:  # the sentinel: the signals stay blocked, as in the parent
            try:
                # Hold none of the parent's files (a reader of its stdout waits
                # for every writer to close it).
                devnull = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(devnull, fd)
                os.closerange(3, write_fd)
                os.closerange(write_fd + 1, os.sysconf("SC_OPEN_MAX"))
                while os.getppid() == parent:
                    info = signal.sigtimedwait(self._signals, 1.0)
                    if info is not None:
                        os.write(write_fd, _REPORT.pack(info.si_signo, time.monotonic_ns()))
            finally:
                os._exit(0)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        self._pid, self._read_fd = pid, read_fd

    def reached_group(self, signo: int, program: int) -> bool:
        """True if ``signo``, just received by this process, was sent to its
        process group and ``program`` (a process in that group) got it too."""
        if not self._pid:
            return False
        try:
            if os.getpgid(program) != os.getpgrp():
                return False  # the program left the group: only we can reach it
        except OSError:
            return False
        deadline = time.monotonic() + _SETTLE_S
        while True:
            self._drain()
            now = time.monotonic_ns()
            for i, (reported, at) in enumerate(self._reports):
                if reported == signo and now - at < _MATCH_S * 1e9:
                    del self._reports[i]
                    return True
            if signo in self._pending():
                self._owed[signo] = self._owed.get(signo, 0) + 1
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.002)

    def close(self) -> None:
        if self._pid:
            try:
                os.kill(self._pid, signal.SIGKILL)
                os.waitpid(self._pid, 0)
            except OSError:
                pass
            os.close(self._read_fd)
            self._pid = 0

    def _drain(self) -> None:
        while True:  # each report is one write smaller than PIPE_BUF: read whole
            try:
                data = os.read(self._read_fd, _REPORT.size * 64)
            except BlockingIOError:
                return
            if not data:
                return
            for offset in range(0, len(data), _REPORT.size):
                signo, at = _REPORT.unpack_from(data, offset)
                if self._owed.get(signo):
                    self._owed[signo] -= 1
                else:
                    self._reports.append((signo, at))

    def _pending(self) -> set[int]:
        """The signals pending in the sentinel (``/proc``: SigPnd and ShdPnd)."""
        pending = 0
        try:
            with open(f"/proc/{self._pid}/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith(("SigPnd:", "ShdPnd:")):
                        pending |= int(line.split()[1], 16)
        except OSError:
            return set()
        return {n for n in self._signals if pending >> (int(n) - 1) & 1}

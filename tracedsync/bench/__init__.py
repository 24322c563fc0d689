"""``tracedsync bench``: what tracing costs, measured on this machine.

Imported only by that command: ``tracedsync.cli`` imports this package when
``bench`` is the subcommand given, and :func:`command` imports the measuring
modules. Nothing here is loaded by a traced program.

Sections, each comparing plain ``threading`` with tracedsync side by side
(interleaved, medians):

- ``micro``: every primitive's operations, both implementations, ddtrace's
  lock profiler when importable;
- ``realworld``: creating ``Lock`` and ``Queue``, and a thread pool's tasks,
  under ``install()``;
- ``telemetry``: the pipeline's throughput and drops, the app-thread cost of
  a record, lock-order checking;
- ``startup``: what ``tracedsync run``, a traced child process and ``import
  tracedsync`` add to a process;
- ``flood``: 1,000 threads on 8 locks with every threshold at 0;
- ``workload`` (``--workload`` only): a realistic program in fresh processes.

``tracedsync.bench.targets`` holds every target and the ones ``--check``
enforces. Timing is never asserted by the unit tests.
"""

from __future__ import annotations

import argparse

from tracedsync.bench.targets import CHECK_MARGIN


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="fewer operations (for CI)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"exit 1 if a checked target (tracedsync.bench.targets.CHECKED) is missed by "
        f"over {CHECK_MARGIN:g}x",
    )
    parser.add_argument("--repeat", type=int, default=None, help="repetitions per case")
    parser.add_argument(
        "--ops", type=int, default=None, help="operations per repetition of the in-process cases"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=None,
        metavar="TEXT",
        help="only the cases whose name contains TEXT (repeatable)",
    )
    parser.add_argument(
        "--no-telemetry",
        action="store_true",
        help="skip the pipeline throughput, drop, threshold-crossing and lock-order cases",
    )
    parser.add_argument("--no-ddtrace", action="store_true", help="leave ddtrace out")
    parser.add_argument(
        "--startup",
        action="store_true",
        help="only: what tracedsync run, a traced child and import tracedsync add to a process",
    )
    parser.add_argument(
        "--flood",
        action="store_true",
        help="only: 1,000 threads x 200 `with lock` on 8 locks, thresholds 0, jsonfile "
        "against no exporter",
    )
    parser.add_argument(
        "--workload",
        action="store_true",
        help="only: the real-workload cases, and a realistic threaded program plain against "
        "under `tracedsync run` and with tracedsync's primitives: wall time, CPU and peak memory",
    )
    parser.add_argument(
        "--items", type=int, default=100_000, help="items the --workload program processes"
    )
    parser.add_argument("--workers", type=int, default=8, help="its worker threads")


def command(args: argparse.Namespace) -> int:
    from tracedsync.bench import suite

    return suite.command(args)

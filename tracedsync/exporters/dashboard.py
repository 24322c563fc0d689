"""``tracedsync dashboard``: print the Grafana dashboard for the prometheus exporter.

The dashboard (``dashboards/tracedsync.json`` in the repository, shipped as
package data) charts what ``tracedsync_*`` series the ``prometheus``
exporter serves: contention rate, time waiting, p99 wait and hold by
primitive, the top primitives by total wait, and telemetry drops. Import it
in Grafana (Dashboards > New > Import) and pick a Prometheus data source.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources

from tracedsync.cli import CliError

#: The dashboard file, inside this package.
RESOURCE = "data/grafana-dashboard.json"


def dashboard_json() -> str:
    """The dashboard's JSON text."""
    return (resources.files("tracedsync.exporters") / RESOURCE).read_text(encoding="utf-8")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write the dashboard to FILE instead of standard output",
    )


def command(args: argparse.Namespace) -> int:
    text = dashboard_json()
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as exc:
            raise CliError(f"cannot write {args.output}: {exc.strerror}") from None
    else:
        sys.stdout.write(text)
    return 0

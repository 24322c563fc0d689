"""The ``tracedsync`` command line: ``run``, ``report``, ``bench``.

Each subcommand lives in its own module, which provides
``add_arguments(parser)`` and ``command(args) -> int``:

- ``run``: ``tracedsync.runner`` (start a program with threading patched);
- ``report``: ``tracedsync.report`` (turn output files into answers);
- ``bench``: ``tracedsync.bench`` (what tracing costs, measured here).

Expected errors are one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence

from tracedsync._version import __version__

#: subcommand -> (module, one-line help)
SUBCOMMANDS = {
    "run": ("tracedsync.runner", "run a program with threading traced"),
    "report": ("tracedsync.report", "analyse tracedsync output files"),
    "bench": ("tracedsync.bench", "measure what tracing costs on this machine"),
    "dashboard": ("tracedsync.exporters.dashboard", "print the Grafana dashboard (prometheus)"),
}


class CliError(Exception):
    """An expected error: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse prints usage plus the message; keep it to one line.
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tracedsync", description="Make lock contention visible.")
    parser.add_argument("--version", action="version", version=f"tracedsync {__version__}")
    subs = parser.add_subparsers(dest="subcommand", metavar="COMMAND", parser_class=_Parser)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        if importlib.util.find_spec(module_name) is None:
            continue  # not part of this build
        sub = subs.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.add_arguments(sub)
        sub.set_defaults(_command=module.command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not args_list:
        parser.print_usage(sys.stderr)
        sys.stderr.write("tracedsync: error: a command is required (run, report, bench)\n")
        return 2
    args = parser.parse_args(args_list)
    try:
        return int(args._command(args))
    except CliError as exc:
        sys.stderr.write(f"tracedsync {args.subcommand}: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""The ``tracedsync`` command line: ``run``, ``report``, ``bench``, ``dashboard``.

Each subcommand lives in its own module, which provides
``add_arguments(parser)`` and ``command(args) -> int``; :data:`SUBCOMMANDS`
maps the subcommand to that module and its one-line help.

A module is imported only when its subcommand is the one given: the parser
lists every subcommand from the table alone (so ``tracedsync --help`` needs
none of them), and only the chosen subcommand's parser gets its arguments.
``tracedsync run`` therefore never loads the report or the bench, and
``tracedsync run --help`` only the runner. This module itself stays cheap
(``argparse`` is imported when a parser is built): every traced process
imports it through the runner's bootstrap.

Expected errors are one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

#: subcommand -> (module with add_arguments and command, one-line help)
SUBCOMMANDS = {
    "run": ("tracedsync.runner", "run a program with threading traced"),
    "report": ("tracedsync.report", "analyse tracedsync output files"),
    "bench": ("tracedsync.bench", "measure what tracing costs on this machine"),
    "dashboard": ("tracedsync.exporters.dashboard", "print the Grafana dashboard (prometheus)"),
}


class CliError(Exception):
    """An expected error: printed as one line, exit code 2."""


def chosen_subcommand(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` gives: its first argument that is not an option
    (the top-level options take no value), when it names one."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in SUBCOMMANDS else None
    return None


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser for ``argv``: every subcommand listed, and the arguments of
    the one ``argv`` chooses (whose module is imported for them)."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> None:  # type: ignore[override]
            # argparse prints usage plus the message; keep it to one line.
            sys.stderr.write(f"{self.prog}: error: {message}\n")
            raise SystemExit(2)

    from tracedsync._version import __version__

    chosen = chosen_subcommand(argv)
    parser = Parser(prog="tracedsync", description="Make lock contention visible.")
    parser.add_argument("--version", action="version", version=f"tracedsync {__version__}")
    subs = parser.add_subparsers(dest="subcommand", metavar="COMMAND", parser_class=Parser)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        # Whether a module is part of this build matters only for the list
        # of subcommands (--help, no or an unknown subcommand): with one
        # chosen, only its own is looked for (finding the dashboard's would
        # import tracedsync.exporters).
        if (chosen is None or name == chosen) and importlib.util.find_spec(module_name) is None:
            continue  # not part of this build
        sub = subs.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(sub)
            sub.set_defaults(_command=module.command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list)
    args = parser.parse_args(args_list)
    if getattr(args, "_command", None) is None:
        parser.print_usage(sys.stderr)
        sys.stderr.write(f"tracedsync: error: a command is required ({', '.join(SUBCOMMANDS)})\n")
        return 2
    try:
        return int(args._command(args))
    except CliError as exc:
        sys.stderr.write(f"tracedsync {args.subcommand}: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""``tracedsync bench``'s micro cases of this checkout against an earlier
commit's, run in turns in one session, printed side by side.

    python benchmarks/compare.py --base 04f269e
    python benchmarks/compare.py --base HEAD~5 --rounds 5 --only Lock --only Semaphore

The earlier commit is checked out in a temporary git worktree and installed
(its C extension built) into a temporary virtual environment; this checkout
runs from the interpreter running this script (its own install). Each round
runs ``tracedsync bench --json --quick --no-ddtrace --no-telemetry`` once for
each side, alternating which goes first, so that the machine's changes of
speed fall on both. The figures compared are each case's ratios to plain
Python (``plain`` is measured in the same process as the traced column, so
a ratio is steadier than a time); per side the median over the rounds is
printed, then this checkout's over the base's (below 1: cheaper now).

Only cases both sides have are compared (the rest are listed). Not run by CI:
it installs a second copy of the package.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def install_base(rev: str, where: str) -> str:
    """Check out ``rev`` and install it into a fresh venv; its python."""
    tree = os.path.join(where, "tree")
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "-q", "--detach", tree, rev], check=True)
    venv = os.path.join(where, "venv")
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    python = os.path.join(venv, "bin", "python")
    subprocess.run([python, "-m", "pip", "install", "-q", tree], check=True)
    return python


def ratios(doc: dict[str, Any]) -> dict[tuple[str, str], float]:
    """(case, column) -> ratio to plain, from either bench JSON layout: the
    sections of today's, or the flat ``results`` list of earlier ones."""
    if "sections" in doc:
        cases = list(doc["sections"].get("micro", {}).get("cases", {}).values())
    else:
        cases = doc.get("results", [])
    out = {}
    for case in cases:
        for column, ratio in (case.get("ratio") or {}).items():
            if ratio is not None:
                out[(case["case"], column)] = float(ratio)
    return out


def bench(python: str, only: list[str]) -> dict[tuple[str, str], float]:
    cmd = [python, "-m", "tracedsync", "bench", "--json", "--quick", "--no-ddtrace"]
    cmd.append("--no-telemetry")
    for text in only:
        cmd += ["--only", text]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEDSYNC_")}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if done.returncode != 0:
        raise SystemExit(f"compare: {' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return ratios(json.loads(done.stdout))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the earlier commit (any git revision)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each side (default 3)")
    parser.add_argument("--only", action="append", default=[], help="as tracedsync bench --only")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: must be 1 or more")
    with tempfile.TemporaryDirectory(prefix="tracedsync-compare-") as where:
        base_python = install_base(args.base, where)
        try:
            runs: dict[str, list[dict[tuple[str, str], float]]] = {"base": [], "head": []}
            for r in range(args.rounds):
                order = [("base", base_python), ("head", sys.executable)]
                for side, python in order if r % 2 == 0 else order[::-1]:
                    sys.stderr.write(f"round {r + 1}/{args.rounds}: {side} ...\n")
                    runs[side].append(bench(python, args.only))
        finally:
            subprocess.run(
                ["git", "-C", ROOT, "worktree", "remove", "--force", os.path.join(where, "tree")],
                check=False,
            )
    keys = [k for k in runs["head"][0] if k in runs["base"][0]]
    print(f"ratio to plain, median of {args.rounds} rounds each; base = {args.base}")
    print(f"{'case':<36} {'column':<9} {'base':>8} {'head':>8} {'head/base':>10}")
    for case, column in keys:
        b = statistics.median(run[(case, column)] for run in runs["base"] if (case, column) in run)
        h = statistics.median(run[(case, column)] for run in runs["head"] if (case, column) in run)
        print(f"{case:<36} {column:<9} {b:>7.2f}x {h:>7.2f}x {h / b:>10.2f}")
    only_one = sorted(
        {c for c, _ in runs["base"][0]} ^ {c for c, _ in runs["head"][0]},
    )
    if only_one:
        print("cases on one side only: " + ", ".join(only_one))
    return 0


if __name__ == "__main__":
    sys.exit(main())

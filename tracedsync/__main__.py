"""``python -m tracedsync``: the same as the ``tracedsync`` command."""

import sys

from tracedsync.cli import main

sys.exit(main())

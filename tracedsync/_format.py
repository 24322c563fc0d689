"""Human-readable formatting shared by the console exporter and the report."""

from __future__ import annotations

_CONTROL = {i: f"\\x{i:02x}" for i in [*range(0x20), 0x7F]}
_CONTROL.update({0x9B: "\\x9b"})


def clean(text: object) -> str:
    """``text`` with control characters (newlines, ANSI escapes) made visible."""
    return str(text).translate(_CONTROL)


def duration(seconds: float) -> str:
    """``35.2 ms``, ``3.00 s``, ``850 ns``: three significant digits or so."""
    if seconds != seconds:  # NaN
        return "-"
    ns = seconds * 1e9
    if ns < 1_000:
        return f"{ns:.0f} ns"
    if ns < 1_000_000:
        return f"{ns / 1e3:.1f} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.1f} ms"
    if seconds < 600:
        return f"{seconds:.2f} s"
    return f"{seconds / 60:.1f} min"

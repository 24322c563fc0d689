"""Human-readable formatting shared by the console exporter and the report."""

from __future__ import annotations

#: C0 and C1 control characters, and the Unicode bidirectional controls
#: (U+202A-U+202E embeddings and overrides, U+2066-U+2069 isolates), which
#: would reorder what a terminal or a page shows.
_CONTROL = {i: f"\\x{i:02x}" for i in [*range(0x20), 0x7F, *range(0x80, 0xA0)]}
_CONTROL.update({i: f"\\u{i:04x}" for i in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]})

#: Longest name, site or message shown; longer ones are cut and marked.
MAX_TEXT = 1024


def clean(text: object) -> str:
    """``text`` with control characters (newlines, ANSI escapes, bidi
    overrides) made visible as escapes."""
    return str(text).translate(_CONTROL)


#: The end of the mark of a cut text.
_CUT = " more characters cut]"


def cap(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` cut to ``limit`` characters, the cut marked with how much went.

    A text cut already (a name is cut where it is made, then again by the
    report) is returned as it is, so the mark keeps the count of the first cut.
    """
    if len(text) <= limit:
        return text
    mark = text[limit:]
    if (
        len(mark) <= 40
        and mark.startswith("…[")
        and mark.endswith(_CUT)
        and mark[2 : -len(_CUT)].replace(",", "").isdigit()
    ):
        return text
    return f"{text[:limit]}…[{len(text) - limit:,}{_CUT}"


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

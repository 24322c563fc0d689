"""``--format json``: the document as JSON that is also safe inside HTML."""

from __future__ import annotations

import json
import re
from typing import Any

#: Escaped in every JSON the report writes: what would end a <script> element
#: or a JavaScript string, and the Unicode bidirectional controls (which
#: would reorder what a viewer shows). The escapes are JSON: the values are
#: unchanged.
_HTML_SAFE = str.maketrans(
    {
        "<": "\\u003c",
        ">": "\\u003e",
        "&": "\\u0026",
        "\u2028": "\\u2028",
        "\u2029": "\\u2029",
        **{chr(c): f"\\u{c:04x}" for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]},
    }
)


_UNSAFE = re.compile("[<>&\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=str)


def dumps(value: Any, *, indent: int | None = None) -> str:
    """JSON that is also safe inside HTML ``<script>`` (``<``, ``>``, ``&`` and
    bidi controls escaped)."""
    if indent is None:
        text = _ENCODER.encode(value)
    else:
        text = json.dumps(value, indent=indent, ensure_ascii=False, allow_nan=False, default=str)
    return text.translate(_HTML_SAFE) if _UNSAFE.search(text) else text


def render_json(doc: dict[str, Any]) -> str:
    return dumps(doc, indent=2) + "\n"

"""JSON from outside, parsed without letting its nesting exhaust the stack.

`json.loads` recurses once per nesting level: a body of 100,000 opening brackets raises
RecursionError (a 500, and a dropped connection). The depth is measured first, in one pass that
skips strings, and a body nested deeper than any real webhook is refused as bad input.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 64


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)  # unrolled: linear time
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def nesting_depth(data: bytes, stop_above: int | None = None) -> int:
    """How deep the brackets outside strings nest (counting stops once past `stop_above`).
    Strings go first, in C (a webhook's bulk is base64 inside strings), then the brackets."""
    brackets = _STRING.sub(b'""', data).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for byte in brackets:
        depth += 1 if byte in (0x5B, 0x7B) else -1
        if depth > deepest:
            deepest = depth
            if stop_above is not None and deepest > stop_above:
                break
    return deepest


def loads_bounded(data: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON; ValueError (naming the limit) when it nests deeper than `max_depth`."""
    depth = nesting_depth(data, stop_above=max_depth)
    if depth > max_depth:
        raise ValueError(f"the JSON nests more than {max_depth} levels deep, which no webhook does")
    return json.loads(data)

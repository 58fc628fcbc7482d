"""Stripe's form encoding: ``metadata[user_id]=u_1`` and ``expand[]=x`` as nested values.

The SDK encodes v1 parameters the way Rails does (``a[b]=c``, ``a[]=c``,
``a[0]=c``); Stripe decodes them into objects and arrays, and so does this.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl

__all__ = ["FormValue", "decode", "parse"]

FormValue = str | list["FormValue"] | dict[str, "FormValue"]

_PART = re.compile(r"\[([^\]]*)\]")


def _path(key: str) -> list[str]:
    head, bracket, _ = key.partition("[")
    if not bracket:
        return [key]
    return [head, *_PART.findall(key[len(head) :])]


def decode(pairs: Iterable[tuple[str, str]]) -> dict[str, FormValue]:
    """Nest ``(key, value)`` pairs: ``metadata[a]`` goes into ``{"metadata": {"a": ...}}``,
    ``expand[]`` and ``items[0]`` into lists."""
    result: dict[str, FormValue] = {}
    for key, value in pairs:
        parts = _path(key)
        node: dict[str, FormValue] | list[FormValue] = result
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            nxt = parts[i + 1] if not last else None
            empty: dict[str, FormValue] | list[FormValue] = (
                [] if nxt is not None and (nxt == "" or nxt.isdigit()) else {}
            )
            index = 0
            if isinstance(node, list):
                if last:
                    node.append(value)
                    break
                index = int(part) if part.isdigit() else len(node)
                while len(node) <= index:
                    node.append(empty)
                child = node[index]
            else:
                if last:
                    node[part] = value
                    break
                child = node.setdefault(part, empty)
            if isinstance(child, str):  # "a=1&a[b]=2": the later, nested one wins
                child = empty
                if isinstance(node, list):
                    node[index] = child
                else:
                    node[part] = child
            node = child
    return result


def parse(text: str) -> dict[str, FormValue]:
    """Decode a query string or a form-encoded body."""
    return decode(parse_qsl(text, keep_blank_values=True))

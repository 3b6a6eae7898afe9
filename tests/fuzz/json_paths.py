"""Places in a parsed JSON document that the FHIR mutators pick from and change in place."""

from __future__ import annotations

import random
from typing import Any


def walk(node: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (container, key) pair in a JSON document, depth first, each before what it holds."""
    stack = [(node, iter(_items(node)))]  # a stack, not recursion: any depth is walked
    while stack:
        container, pairs = stack[-1]
        pair = next(pairs, None)
        if pair is None:
            stack.pop()
            continue
        out.append((container, pair[0]))
        if isinstance(pair[1], (dict, list)):
            stack.append((pair[1], iter(_items(pair[1]))))
    return out


def _items(node: Any) -> list[tuple[Any, Any]]:
    return list(node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ())


def slots(doc: Any, key: str | None = None) -> list[tuple[Any, Any]]:
    """(container, key) pairs, only those under dict key `key` when given."""
    return [(c, k) for c, k in walk(doc, []) if key is None or (isinstance(c, dict) and k == key)]


def set_random(doc: Any, rng: random.Random, key: str | None, values: tuple[Any, ...]) -> None:
    """Set one slot (under `key` when the document has one, else any) to one of `values`."""
    found = slots(doc, key) or slots(doc)
    if found:
        container, k = rng.choice(found)
        container[k] = rng.choice(values)

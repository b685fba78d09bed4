"""OpenAI's attribute filter grammar: comparison {type, key, value} and compound {type: and|or, filters}."""

from __future__ import annotations

from typing import Any

COMPARISONS = {"eq", "ne", "gt", "gte", "lt", "lte", "in", "nin"}
COMPOUNDS = {"and", "or"}


def validate(node: Any, path: str = "filters") -> None:
    """Raise ValueError naming the offending part of a filter."""
    if not isinstance(node, dict) or "type" not in node:
        raise ValueError(f"{path} must be an object with a 'type'")
    kind = node["type"]
    if kind in COMPOUNDS:
        children = node.get("filters")
        if not isinstance(children, list) or not children:
            raise ValueError(f"{path}.filters must be a non-empty list")
        for i, child in enumerate(children):
            validate(child, f"{path}.filters[{i}]")
    elif kind in COMPARISONS:
        if not isinstance(node.get("key"), str):
            raise ValueError(f"{path}.key must be a string")
        if "value" not in node:
            raise ValueError(f"{path}.value is required")
        value = node["value"]
        if kind in ("in", "nin"):
            if not isinstance(value, list):
                raise ValueError(f"{path}.value must be a list for '{kind}'")
        elif not isinstance(value, str | int | float | bool):
            raise ValueError(f"{path}.value must be a string, number or boolean")
    else:
        raise ValueError(f"{path}.type {kind!r} is not one of {sorted(COMPARISONS | COMPOUNDS)}")


def matches(node: dict[str, Any], attributes: dict[str, Any]) -> bool:
    kind = node["type"]
    if kind == "and":
        return all(matches(child, attributes) for child in node["filters"])
    if kind == "or":
        return any(matches(child, attributes) for child in node["filters"])
    if node["key"] not in attributes:
        return kind in ("ne", "nin")
    actual, value = attributes[node["key"]], node["value"]
    if kind == "eq":
        return actual == value
    if kind == "ne":
        return actual != value
    if kind == "in":
        return actual in value
    if kind == "nin":
        return actual not in value
    try:
        return {"gt": actual > value, "gte": actual >= value, "lt": actual < value, "lte": actual <= value}[
            kind
        ]
    except TypeError:  # comparing a string with a number: no match rather than an error
        return False

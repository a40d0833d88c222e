"""Search filters: a plain dict of payload field -> value (or list of values), parsed once.

Keys:
- ``"doc_id"``: the document id (str).
- ``"page_number"``: 1-based page number (int).
- any other key: a key of the document ``metadata`` given at add time.

Values: a str, int or bool (equality), or a non-empty list of str or of int (any of them).
Every key must match (AND). Float values are refused (equality on floats is a trap).

>>> parse_filter({"doc_id": "report-2024", "year": [2023, 2024]})
(FieldMatch(path='doc_id', values=('report-2024',)), FieldMatch(path='metadata.year', values=(2023, 2024)))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInputError

__all__ = ["METADATA_FIELD", "RESERVED_KEYS", "FieldMatch", "parse_filter", "validate_metadata"]

METADATA_FIELD = "metadata"
RESERVED_KEYS = ("doc_id", "page_number")


@dataclass(frozen=True)
class FieldMatch:
    """One condition: the payload value at ``path`` equals one of ``values``."""

    path: str
    values: tuple[str | int | bool, ...]


def _check_key(key: Any, what: str) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidInputError(f"{what} keys must be non-empty strings, got {key!r}")
    if any(ch in key for ch in '.[]"'):
        raise InvalidInputError(f"{what} key {key!r} may not contain '.', '[', ']' or '\"' (they are path syntax)")
    return key


def _values(key: str, value: Any) -> tuple[str | int | bool, ...]:
    if isinstance(value, (str, bool, int)):
        return (value,)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
        if not items:
            raise InvalidInputError(f"filter[{key!r}] is an empty list, which matches nothing; drop the key instead")
        if all(isinstance(v, str) for v in items) or all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            return tuple(items)
        raise InvalidInputError(f"filter[{key!r}] must list only strings or only integers (any-of), got {items!r}")
    raise InvalidInputError(
        f"filter[{key!r}] must be a str, int, bool or a list of str/int (any-of), got {type(value).__name__} "
        f"{value!r}"
        + ("; floats cannot be matched exactly, store them as strings or ints" if isinstance(value, float) else "")
    )


def parse_filter(filter: Mapping[str, Any] | None) -> tuple[FieldMatch, ...]:
    """Turn a user filter dict into conditions on payload paths (see the module docstring)."""
    if filter is None:
        return ()
    if not isinstance(filter, Mapping):
        raise InvalidInputError(
            f"filter must be a dict like {{'doc_id': 'report-2024'}} or {{'source': ['a.pdf', 'b.pdf']}}, "
            f"got {type(filter).__name__}"
        )
    out = []
    for key, value in filter.items():
        _check_key(key, "filter")
        path = key if key in RESERVED_KEYS else f"{METADATA_FIELD}.{key}"
        out.append(FieldMatch(path, _values(key, value)))
    return tuple(out)


def validate_metadata(metadata: Any) -> dict[str, Any]:
    """Check document metadata: a dict with string keys usable in filters and JSON values."""
    import json

    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidInputError(f"metadata must be a dict, got {type(metadata).__name__}")
    for key in metadata:
        _check_key(key, "metadata")
    try:
        return json.loads(json.dumps(dict(metadata), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"metadata values must be JSON data (str, numbers, lists, dicts): {exc}") from exc

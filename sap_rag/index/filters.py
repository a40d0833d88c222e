"""Search filters: a plain dict, parsed once into typed conditions that each backend translates.

``SAPIndex.search(query, filter=...)`` (and ``search_batch``) takes a dict whose keys are
``"doc_id"`` (the document id), ``"page_number"`` (1-based) or a key of the document ``metadata``
given at add time, and ``"$and"`` / ``"$or"`` / ``"$not"`` for nesting:

=======================================  ================================================
Filter (on a key ``k``)                  Matches a page whose value at ``k``...
=======================================  ================================================
``{"k": v}``, ``{"k": {"$eq": v}}``      equals ``v`` (a str, int or bool)
``{"k": {"$in": [a, b]}}``               equals one of them (all str or all int)
``{"k": [a, b]}``                        the same as ``$in``
``{"k": {"$ne": v}}``                    exists and does not equal ``v``
``{"k": {"$nin": [a, b]}}``              exists and equals none of them
``{"k": {"$gt": x}}``, ``$gte``,         is a number ``>``, ``>=``, ``<``, ``<=`` ``x``
``$lt``, ``$lte``                        (an int or float)
``{"k": {"$exists": False}}``            is missing, null or ``[]`` (IS_EMPTY)
``{"k": {"$exists": True}}``             has a value
``{"k": {"$text": "words"}}``            is text holding every word (TEXT_MATCH)
``{"$and": [f, ...]}``                   every filter ``f`` holds
``{"$or": [f, ...]}``                    at least one filter ``f`` holds
``{"$not": f}``                          ``f`` does not hold
=======================================  ================================================

Examples: ``{"doc_id": "report-2024"}``, ``{"year": [2023, 2024]}``, ``{"status": {"$ne": "draft"}}``,
``{"year": {"$gte": 2020, "$lt": 2025}}``, ``{"reviewed_by": {"$exists": False}}``,
``{"title": {"$text": "annual report"}}``,
``{"$or": [{"year": 2024}, {"$and": [{"draft": True}, {"$not": {"lang": "de"}}]}]}``.

Several keys in one dict, or several operators on one key (``{"$gte": 1, "$lt": 5}``), must all
hold; ``{}`` or ``None`` is no filter.

Semantics (Qdrant's, the same on both backends):

- A **list** in the metadata matches ``$eq``/``$in``/ranges/``$text`` when one of its elements
  does, and ``$ne``/``$nin`` when none does (so ``$ne`` stays the negation of ``$eq`` on pages that
  have the key; llama-index's Qdrant store uses ``MatchExcept``, which on a list holds as soon as
  one element differs).
- A **missing key** (or ``null``, or ``[]``) matches only ``$exists: False`` and ``$not``:
  ``{"k": {"$ne": v}}`` leaves out pages without ``k`` (as llama-index's ``NE`` on Qdrant does);
  ``{"$not": {"k": v}}`` keeps them.
- Types are strict: ``1`` does not equal ``"1"``, ``True`` does not equal ``1``, and ranges only
  see numbers (not bools or strings). Equality on floats is refused (use ``$gte`` and ``$lte``).
- ``$text`` splits the stored text and the query into words (letters and digits, case-insensitive)
  and needs every query word among the text's words: ``"annual report"`` matches
  ``"Report: annual figures"`` but ``"port"`` does not.

Limits, checked here with a clear error instead of an engine message: integers are 64-bit
(``-2**63 .. 2**63-1``; store bigger numbers as strings); range bounds compare as 64-bit floats,
so integer bounds must lie within ``+-2**53``; strings must be valid Unicode (no lone surrogates);
``$and``/``$or``/``$not`` nest at most 32 deep.

Keys: a metadata key (at any depth of nested dicts) is a non-empty string that does not start
with ``$`` (operators do) and holds none of ``. [ ] " \\`` (path syntax); anything else works,
spaces and punctuation included (``"my key"`` is quoted in the Qdrant path). Other keys are
refused when the metadata is added (``add_images``, ``add_pages``, ``add_documents``), so every
stored key can be filtered on. Filters name top-level metadata keys; a nested dict is stored and
returned whole. Metadata keys named ``doc_id`` or ``page_number`` are kept but cannot be filtered
on: those filter keys mean the page's own fields.

LlamaIndex filters map directly: ``FilterOperator`` EQ, NE, GT, GTE, LT, LTE, IN, NIN, TEXT_MATCH
(and TEXT_MATCH_INSENSITIVE) are ``$eq``, ``$ne``, ``$gt``, ``$gte``, ``$lt``, ``$lte``, ``$in``,
``$nin``, ``$text``; IS_EMPTY is ``{"$exists": False}``; on list values CONTAINS is ``$eq``, ANY is
``$in`` and ALL is ``$and`` of ``$eq``; ``FilterCondition`` AND and OR are ``$and`` and ``$or``, and
NOT (none of the group holds) is ``{"$not": {"$or": [...]}}``.

Payload indexes: none is needed. Qdrant Edge and qdrant-client's local mode evaluate every
operator, ``$text`` included, on unindexed payload (``$text`` then tokenizes like a default
full-text index: same results with or without one). On a large server collection, create payload
indexes on the keys you filter on often, for speed: ``client.create_payload_index(collection,
"metadata.year", "integer")`` (a text index must keep the default word tokenizer and lowercasing
for ``$text`` to keep these semantics). ``doc_id`` is indexed by sap-rag.

>>> parse_filter({"doc_id": "report-2024", "year": [2023, 2024]})
(FieldMatch(path='doc_id', values=('report-2024',)), FieldMatch(path='metadata.year', values=(2023, 2024)))
>>> parse_filter({"my key": {"$gte": 1, "$lt": 5}})
(FieldRange(path='metadata."my key"', gt=None, gte=1, lt=5, lte=None),)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInputError
from .checks import (
    INT64_MAX,
    INT64_MIN,
    MAX_METADATA_DEPTH,
    check_int64,
    check_key,
    check_text,
    plain_scalar,
    short_repr,
    validate_metadata,
)

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_FILTER_DEPTH",
    "MAX_METADATA_DEPTH",
    "METADATA_FIELD",
    "RESERVED_KEYS",
    "AllOf",
    "AnyOf",
    "Condition",
    "FieldEmpty",
    "FieldExcept",
    "FieldMatch",
    "FieldRange",
    "FieldText",
    "NotOf",
    "check_key",
    "check_text",
    "parse_filter",
    "payload_path",
    "validate_metadata",
]

METADATA_FIELD = "metadata"
RESERVED_KEYS = ("doc_id", "page_number")
"""Filter keys that name a page's own payload fields rather than a metadata key."""

EXACT_FLOAT_INT = 2**53
"""Range bounds are compared as 64-bit floats, exact for integers up to this magnitude."""

MAX_FILTER_DEPTH = 32
"""Levels of ``$and``/``$or``/``$not`` nesting."""

_RAW_KEY = re.compile(r"[A-Za-z0-9_-]+")  # what Qdrant's JSON path takes unquoted (others are quoted)
_RANGE_OPS = {"$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte"}
_FIELD_OPS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$text")
_LOGICAL_OPS = ("$and", "$or", "$not")

Scalar = str | int | bool


@dataclass(frozen=True)
class FieldMatch:
    """The value at ``path`` (or one element of a list there) equals one of ``values``."""

    path: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class FieldExcept:
    """``path`` has a value, and neither it nor any element of a list there is in ``values``."""

    path: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class FieldRange:
    """The number at ``path`` (or one element of a list there) lies within the given bounds."""

    path: str
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None


@dataclass(frozen=True)
class FieldEmpty:
    """``path`` is missing, ``null`` or ``[]``."""

    path: str


@dataclass(frozen=True)
class FieldText:
    """The text at ``path`` holds every word of ``text`` (whole words, case-insensitive)."""

    path: str
    text: str


@dataclass(frozen=True)
class AllOf:
    """Every condition holds."""

    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    """At least one condition holds."""

    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class NotOf:
    """The condition does not hold."""

    condition: Condition


Condition = FieldMatch | FieldExcept | FieldRange | FieldEmpty | FieldText | AllOf | AnyOf | NotOf
"""One parsed condition; ``parse_filter`` returns a tuple of them, all of which must hold."""


# --- keys and strings ---------------------------------------------------------------------------


def payload_path(key: str) -> str:
    """The Qdrant payload path of a filter key: ``doc_id``, ``metadata.year``, ``metadata."my key"``."""
    if key in RESERVED_KEYS:
        return key
    return f"{METADATA_FIELD}.{key}" if _RAW_KEY.fullmatch(key) else f'{METADATA_FIELD}."{key}"'


# --- values -------------------------------------------------------------------------------------


def _eq_value(value: Any, where: str) -> Scalar:
    value = plain_scalar(value)
    if isinstance(value, str):
        return check_text(value, f"{where}: the string")
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return check_int64(value, where)
    raise InvalidInputError(
        f"{where} must be a str, int or bool, got {type(value).__name__} {short_repr(value)}"
        + (
            "; floats cannot be matched exactly: use {'$gte': x, '$lte': x}, or store them as strings or ints"
            if isinstance(value, float)
            else ""
        )
    )


def _any_values(value: Any, where: str) -> tuple[Scalar, ...]:
    items = [plain_scalar(v) for v in value]
    nested = next((v for v in items if isinstance(v, (Mapping, list, tuple, set, frozenset))), None)
    if nested is not None:
        raise InvalidInputError(
            f"{where} must list plain values (strings or integers), but it holds a {type(nested).__name__} "
            f"{short_repr(nested)}; filters match scalars, they cannot compare nested lists or dicts"
        )
    if not items:
        raise InvalidInputError(f"{where} is an empty list, which matches nothing; drop the key instead")
    if all(isinstance(v, str) for v in items):
        return tuple(check_text(v, f"{where}: the string") for v in items)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        return tuple(check_int64(v, where) for v in items)
    raise InvalidInputError(f"{where} must list only strings or only integers (any-of), got {short_repr(items)}")


def _old_form(value: Any, where: str) -> tuple[Scalar, ...]:
    """``{"k": v}`` and ``{"k": [a, b]}``: the forms filters had before operators."""
    if isinstance(value, (list, tuple, set, frozenset)):
        return _any_values(value, where)
    plain = plain_scalar(value)
    if isinstance(plain, (str, bool, int)):
        return (_eq_value(plain, where),)
    raise InvalidInputError(
        f"{where} must be a str, int, bool, a list of str/int (any-of) or a dict of operators such as "
        f"{{'$gte': 2020}}, got {type(value).__name__} {short_repr(value)}"
        + (
            "; floats cannot be matched exactly: use {'$gte': x, '$lte': x}, or store them as strings or ints"
            if isinstance(plain, float)
            else ""
        )
    )


def _bound(value: Any, where: str) -> int | float:
    value = plain_scalar(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(
            f"{where} must be a number (ranges compare numbers only), got {type(value).__name__} {short_repr(value)}"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInputError(f"{where} must be a finite number, got {value}; leave the bound out instead")
    if isinstance(value, int) and abs(value) > EXACT_FLOAT_INT:
        raise InvalidInputError(
            f"{where}: {value} is beyond +-2**53, where range bounds (compared as 64-bit floats) stop being exact; "
            "give a float to accept the rounding, or store such numbers as strings"
        )
    return value


# --- parsing ------------------------------------------------------------------------------------


def _group(conditions: tuple[Condition, ...]) -> Condition:
    return conditions[0] if len(conditions) == 1 else AllOf(conditions)


def _sub_filter(value: Any, where: str, depth: int) -> tuple[Condition, ...]:
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"{where} must be a filter dict such as {{'year': 2024}}, got {type(value).__name__}")
    if not value:
        raise InvalidInputError(f"{where} is an empty filter, which matches every page; drop it")
    return _parse(value, where, depth)


def _logical(op: str, value: Any, where: str, depth: int) -> tuple[Condition, ...]:
    if depth >= MAX_FILTER_DEPTH:
        raise InvalidInputError(f"{where}: filters may nest $and/$or/$not at most {MAX_FILTER_DEPTH} deep")
    if op == "$not":
        return (NotOf(_group(_sub_filter(value, where, depth + 1))),)
    if not isinstance(value, (list, tuple)) or not value:
        raise InvalidInputError(f"{where} must be a non-empty list of filter dicts, e.g. [{{'year': 2024}}, ...]")
    parts = [_sub_filter(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    if op == "$and":
        return tuple(c for part in parts for c in part)
    return (AnyOf(tuple(_group(part) for part in parts)),)


def _operators(path: str, ops: Mapping[Any, Any], where: str) -> tuple[Condition, ...]:
    if not ops:
        raise InvalidInputError(f"{where} is an empty dict; give a value or operators such as {{'$gte': 2020}}")
    out: list[Condition] = []
    bounds: dict[str, int | float] = {}
    for op, value in ops.items():
        at = f"{where}[{short_repr(op)}]"
        if op == "$eq":
            out.append(FieldMatch(path, (_eq_value(value, at),)))
        elif op == "$ne":
            out.append(FieldExcept(path, (_eq_value(value, at),)))
        elif op in ("$in", "$nin"):
            if not isinstance(value, (list, tuple, set, frozenset)):
                raise InvalidInputError(f"{at} must be a list of strings or of integers, got {type(value).__name__}")
            values = _any_values(value, at)
            out.append(FieldMatch(path, values) if op == "$in" else FieldExcept(path, values))
        elif op in _RANGE_OPS:
            bounds[_RANGE_OPS[op]] = _bound(value, at)
        elif op == "$exists":
            if not isinstance(plain_scalar(value), bool):
                raise InvalidInputError(f"{at} must be True or False, got {short_repr(value)}")
            out.append(NotOf(FieldEmpty(path)) if value else FieldEmpty(path))
        elif op == "$text":
            if not isinstance(value, str) or not value.strip():
                raise InvalidInputError(f"{at} must be a non-empty string of words, got {short_repr(value)}")
            out.append(FieldText(path, check_text(value, f"{at}: the string")))
        else:
            raise InvalidInputError(
                f"{where}: unknown operator {short_repr(op)}; field operators are {', '.join(_FIELD_OPS)}"
                if isinstance(op, str) and op.startswith("$")
                else f"{where}: {short_repr(op)} is not an operator (filters cannot look inside a nested dict: keep "
                f"the field at the top level of the metadata); operators are {', '.join(_FIELD_OPS)}"
            )
    if bounds:
        out.append(FieldRange(path, **bounds))
    return tuple(out)


def _parse(flt: Mapping[Any, Any], where: str, depth: int) -> tuple[Condition, ...]:
    out: list[Condition] = []
    for key, value in flt.items():
        if isinstance(key, str) and key.startswith("$"):
            if key not in _LOGICAL_OPS:
                raise InvalidInputError(
                    f"{where}: unknown operator {short_repr(key)}; at this level use $and, $or or $not, and put field "
                    "operators under a key, e.g. {'year': {'$gt': 2020}}"
                )
            out.extend(_logical(key, value, f"{where}[{key!r}]", depth))
            continue
        check_key(key, "filter")
        at = f"{where}[{key!r}]"
        if isinstance(value, Mapping):
            out.extend(_operators(payload_path(key), value, at))
        else:
            out.append(FieldMatch(payload_path(key), _old_form(value, at)))
    return tuple(out)


def parse_filter(filter: Mapping[str, Any] | None) -> tuple[Condition, ...]:
    """Turn a user filter dict into conditions that must all hold (see the module docstring).

    Raises:
        InvalidInputError: a malformed filter, unknown operator, or out-of-range value.
    """
    if filter is None:
        return ()
    if not isinstance(filter, Mapping):
        raise InvalidInputError(
            f"filter must be a dict like {{'doc_id': 'report-2024'}} or {{'year': {{'$gte': 2020}}}}, "
            f"got {type(filter).__name__}"
        )
    return _parse(filter, "filter", 0)

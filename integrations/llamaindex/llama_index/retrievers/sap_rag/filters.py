"""LlamaIndex ``MetadataFilters`` -> a ``SAPIndex`` filter dict.

A ``SAPIndex`` filter is a dict of payload key -> value or list of values (any of them), every key
required (AND). The translation covers what that shape can say exactly:

- ``FilterOperator.EQ`` (``key == value``) and ``FilterOperator.IN`` (``key in [values]``);
- ``FilterCondition.AND`` (the default), nested ``MetadataFilters`` included; two conditions on
  the same key keep the values allowed by both;
- ``FilterCondition.OR`` over conditions on one single key (``key == a OR key == b``).

Anything else (``>``, ``!=``, ``NOT``, an ``OR`` across keys...) raises
:class:`UnsupportedFilterError`, naming what was asked and what is supported.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.vector_stores.types import FilterCondition, FilterOperator, MetadataFilter, MetadataFilters

from sap_rag.errors import InvalidInputError

__all__ = ["NO_MATCH", "SUPPORTED_OPERATORS", "UnsupportedFilterError", "to_index_filter"]

SUPPORTED_OPERATORS = (FilterOperator.EQ, FilterOperator.IN)


class UnsupportedFilterError(InvalidInputError):
    """A LlamaIndex metadata filter that a ``SAPIndex`` filter cannot express."""


class _NoMatch:
    """The filters contradict each other (``a == 1 AND a == 2``): no page can match."""

    def __repr__(self) -> str:
        return "NO_MATCH"


NO_MATCH = _NoMatch()

# key -> allowed values, in first-seen order
_Constraints = dict[str, list[Any]]


def _supported() -> str:
    return ", ".join(f"{op.name} ({op.value!r})" for op in SUPPORTED_OPERATORS)


def _values(item: MetadataFilter) -> list[Any]:
    operator = FilterOperator(item.operator)
    if operator == FilterOperator.EQ:
        if isinstance(item.value, list):
            raise UnsupportedFilterError(
                f"metadata filter on {item.key!r}: operator EQ takes one value, got the list {item.value!r}; "
                "use FilterOperator.IN for any-of"
            )
        return [item.value]
    if operator == FilterOperator.IN:
        values = item.value if isinstance(item.value, list) else [item.value]
        return list(values)
    raise UnsupportedFilterError(
        f"metadata filter on {item.key!r}: operator {operator.name} ({operator.value!r}) is not supported by "
        f"SAPIndex filters; supported: {_supported()}, combined with AND (or OR on a single key)"
    )


def _merge_and(into: _Constraints, key: str, values: list[Any]) -> None:
    if key not in into:
        into[key] = list(dict.fromkeys(values))
    else:
        into[key] = [v for v in into[key] if v in values]


def _constraints(filters: MetadataFilters) -> _Constraints:
    condition = FilterCondition(filters.condition or FilterCondition.AND)
    parts: list[_Constraints] = []
    for item in filters.filters:
        if isinstance(item, MetadataFilters):
            parts.append(_constraints(item))
        else:
            parts.append({item.key: list(dict.fromkeys(_values(item)))})
    if condition == FilterCondition.AND:
        merged: _Constraints = {}
        for part in parts:
            for key, values in part.items():
                _merge_and(merged, key, values)
        return merged
    if condition == FilterCondition.OR:
        keys = {key for part in parts for key in part}
        if len(keys) > 1 or any(len(part) != 1 for part in parts):
            raise UnsupportedFilterError(
                f"metadata filters: OR across different keys ({sorted(keys)}) is not supported by SAPIndex "
                "filters; OR is supported between conditions on one key only"
            )
        union: list[Any] = []
        for part in parts:
            for values in part.values():
                union.extend(v for v in values if v not in union)
        return {next(iter(keys)): union} if keys else {}
    raise UnsupportedFilterError(
        f"metadata filters: condition {condition.name} is not supported by SAPIndex filters; use AND (or OR on one key)"
    )


def to_index_filter(filters: MetadataFilters | None) -> dict[str, Any] | _NoMatch | None:
    """Translate LlamaIndex filters into a ``SAPIndex.search(filter=...)`` dict.

    Returns None for no filter, :data:`NO_MATCH` when the conditions exclude every page, else the
    dict (a single value stays a scalar, several become an any-of list).

    >>> from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters
    >>> to_index_filter(MetadataFilters(filters=[MetadataFilter(key="doc_id", value="a")]))
    {'doc_id': 'a'}
    """
    if filters is None:
        return None
    if not isinstance(filters, MetadataFilters):
        raise InvalidInputError(
            f"filters must be llama_index MetadataFilters, got {type(filters).__name__}; "
            "e.g. MetadataFilters(filters=[MetadataFilter(key='doc_id', value='report-2024')])"
        )
    constraints = _constraints(filters)
    if any(not values for values in constraints.values()):
        return NO_MATCH
    if not constraints:
        return None
    return {key: values[0] if len(values) == 1 else values for key, values in constraints.items()}

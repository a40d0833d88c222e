"""LlamaIndex ``MetadataFilters`` -> a ``SAPIndex`` filter dict (the core's operator grammar).

The core (``sap_rag.index.filters``) evaluates the filter, on Qdrant's native filter for both
backends; this module only renames:

==================================  ==========================================
LlamaIndex                          ``SAPIndex.search(filter=...)``
==================================  ==========================================
``EQ`` / ``NE``                     ``{"k": {"$eq": v}}`` / ``{"k": {"$ne": v}}``
``GT`` ``GTE`` ``LT`` ``LTE``       ``{"k": {"$gt": v}}`` ...
``IN`` / ``NIN``                    ``{"k": {"$in": [...]}}`` / ``{"k": {"$nin": [...]}}``
``IS_EMPTY``                        ``{"k": {"$exists": False}}``
``TEXT_MATCH``                      ``{"k": {"$text": "words"}}`` (every word, any case)
``TEXT_MATCH_INSENSITIVE``          the same
``CONTAINS`` (a list holds ``v``)   ``{"k": {"$eq": v}}``
``ANY`` / ``ALL`` (list values)     ``{"k": {"$in": [...]}}`` / ``{"$and": [{"k": {"$eq": v}}, ...]}``
``AND`` / ``OR`` / ``NOT``          ``{"$and": [...]}`` / ``{"$or": [...]}`` / ``{"$not": {"$or": [...]}}``
==================================  ==========================================

``NOT`` follows LlamaIndex's vector stores (Qdrant's ``must_not``): no listed condition holds.
Keys are ``doc_id``, ``page_number`` or document metadata keys; values and keys are checked by the
core (``sap_rag.InvalidInputError``). On a list in the metadata, ``$eq``/``$in`` match when one
element does (Qdrant's semantics).

Floats: ``EQ 0.5`` is the range ``{"k": {"$gte": 0.5, "$lte": 0.5}}`` (as llama-index's Qdrant
store does; the core refuses float equality), and ``IN``/``NE``/``NIN``/``CONTAINS``/``ANY``/``ALL``
with floats are built from such ranges.

Where the semantics differ from llama-index-core's in-memory ``SimpleVectorStore`` (they follow
Qdrant's, as llama-index's Qdrant store does):

- ``NE`` / ``NIN`` leave out pages **without** the key (llama-index-core keeps them); to keep
  them, use ``NOT`` around ``EQ``/``IN`` (``FilterCondition.NOT``).
- ``TEXT_MATCH`` / ``TEXT_MATCH_INSENSITIVE`` need every **word** of the value among the stored
  text's words, in any case (llama-index-core: a case-sensitive / insensitive substring): ``"port"``
  does not match ``"annual report"``.
- ``IS_EMPTY`` matches a missing key, ``null`` or ``[]`` (llama-index-core also matches ``""``).
- Types are strict: ``1`` does not equal ``"1"`` or ``True``; ``1.0`` matches ``1`` (a range).
"""

from __future__ import annotations

from typing import Any

from llama_index.core.vector_stores.types import FilterCondition, FilterOperator, MetadataFilter, MetadataFilters

from sap_rag.errors import InvalidInputError

__all__ = ["OPERATORS", "UnsupportedFilterError", "to_index_filter"]

OPERATORS: dict[FilterOperator, str] = {
    FilterOperator.EQ: "$eq",
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in",
    FilterOperator.NIN: "$nin",
    FilterOperator.TEXT_MATCH: "$text",
    FilterOperator.TEXT_MATCH_INSENSITIVE: "$text",  # the core's $text ignores case
    FilterOperator.CONTAINS: "$eq",  # on a list, $eq matches when one element does
    FilterOperator.ANY: "$in",
}
"""LlamaIndex operator -> core operator (``IS_EMPTY`` and ``ALL`` are built in :func:`_condition`;
floats are compared through ranges, see :func:`_equal`)."""


class UnsupportedFilterError(InvalidInputError):
    """A LlamaIndex metadata filter that a ``SAPIndex`` filter cannot express."""


def _supported() -> str:
    return ", ".join(op.name for op in [*OPERATORS, FilterOperator.IS_EMPTY, FilterOperator.ALL])


def _equal(key: str, value: Any) -> dict[str, Any]:
    """``key`` equals ``value``; a float through the range ``[v, v]`` (the core refuses float
    equality, as Qdrant matches only ints, strings and bools; llama-index's Qdrant store does the same)."""
    if isinstance(value, float):
        return {key: {"$gte": value, "$lte": value}}
    return {key: {"$eq": value}}


def _any_of(key: str, values: list[Any]) -> dict[str, Any]:
    """``key`` equals one of ``values``."""
    floats = [v for v in values if isinstance(v, float)]
    if not floats:
        return {key: {"$in": values}}
    others = [v for v in values if not isinstance(v, float)]
    parts = [_equal(key, v) for v in floats] + ([{key: {"$in": others}}] if others else [])
    return parts[0] if len(parts) == 1 else {"$or": parts}


def _none_of(key: str, values: list[Any]) -> dict[str, Any]:
    """``key`` has a value equal to none of ``values`` (the core's ``$nin``: a missing key does not match)."""
    if not any(isinstance(v, float) for v in values):
        return {key: {"$ne": values[0]}} if len(values) == 1 else {key: {"$nin": values}}
    return {"$and": [{key: {"$exists": True}}, {"$not": _any_of(key, values)}]}


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _condition(item: MetadataFilter) -> dict[str, Any]:
    operator = FilterOperator(item.operator)
    key, value = item.key, item.value
    if operator == FilterOperator.IS_EMPTY:
        return {key: {"$exists": False}}
    if operator == FilterOperator.ALL:
        values = _listed(value)
        if not values:
            raise UnsupportedFilterError(f"metadata filter on {key!r}: ALL needs at least one value")
        return {"$and": [_equal(key, v) for v in values]}
    if operator not in OPERATORS:
        raise UnsupportedFilterError(
            f"metadata filter on {key!r}: operator {operator.name} ({operator.value!r}) is not supported by "
            f"SAPIndex filters; supported: {_supported()}, combined with AND, OR and NOT"
        )
    if operator in (FilterOperator.EQ, FilterOperator.CONTAINS):
        return _equal(key, value)
    if operator in (FilterOperator.IN, FilterOperator.ANY):
        return _any_of(key, _listed(value))
    if operator == FilterOperator.NE:
        return _none_of(key, [value])
    if operator == FilterOperator.NIN:
        values = _listed(value)
        return _none_of(key, values) if values else {key: {"$nin": values}}
    return {key: {OPERATORS[operator]: value}}


def _translate(filters: MetadataFilters) -> dict[str, Any]:
    parts = [_translate(f) if isinstance(f, MetadataFilters) else _condition(f) for f in filters.filters]
    if not parts:
        raise UnsupportedFilterError("metadata filters: a nested MetadataFilters has no filters; drop it or fill it")
    condition = FilterCondition(filters.condition or FilterCondition.AND)
    if condition == FilterCondition.NOT:
        return {"$not": parts[0] if len(parts) == 1 else {"$or": parts}}
    if len(parts) == 1:
        return parts[0]
    return {"$and" if condition == FilterCondition.AND else "$or": parts}


def to_index_filter(filters: MetadataFilters | None) -> dict[str, Any] | None:
    """Translate LlamaIndex filters into a ``SAPIndex.search(filter=...)`` dict (None for no filter).

    >>> from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters
    >>> to_index_filter(MetadataFilters(filters=[MetadataFilter(key="year", value=2023, operator=">=")]))
    {'year': {'$gte': 2023}}
    """
    if filters is None:
        return None
    if not isinstance(filters, MetadataFilters):
        raise InvalidInputError(
            f"filters must be llama_index MetadataFilters, got {type(filters).__name__}; "
            "e.g. MetadataFilters(filters=[MetadataFilter(key='doc_id', value='report-2024')])"
        )
    if not filters.filters:
        return None
    return _translate(filters)

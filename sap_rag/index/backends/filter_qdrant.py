"""Parsed filter conditions (:mod:`sap_rag.index.filters`) -> a ``qdrant_client.models.Filter``.

The same constructs as :mod:`.filter_edge` (see its table), in qdrant-client's models, for a
Qdrant server and for qdrant-client's local mode:

==============================  =======================================================================
Condition                       qdrant-client
==============================  =======================================================================
``FieldMatch`` (one value)      ``FieldCondition(key=, match=MatchValue(value=v))``
``FieldMatch`` (several)        ``FieldCondition(key=, match=MatchAny(any=[...]))``
``FieldExcept``                 ``Filter(must_not=[IsEmptyCondition(is_empty=PayloadField(key=)), match])``
``FieldRange``                  ``FieldCondition(key=, range=Range(gt=, gte=, lt=, lte=))``
``FieldEmpty``                  ``IsEmptyCondition(is_empty=PayloadField(key=))``
``FieldText``                   ``FieldCondition(key=, match=MatchText(text=))``
``AllOf`` / ``AnyOf`` / ``NotOf``  ``Filter(must=[...])`` / ``Filter(should=[...])`` / ``Filter(must_not=[c])``
==============================  =======================================================================
"""

from __future__ import annotations

from typing import Any

from ..filters import AllOf, AnyOf, Condition, FieldEmpty, FieldExcept, FieldMatch, FieldRange, FieldText, NotOf

__all__ = ["to_qdrant_filter"]


def _match(m: Any, path: str, values: tuple[Any, ...]) -> Any:
    if len(values) == 1:
        return m.FieldCondition(key=path, match=m.MatchValue(value=values[0]))
    return m.FieldCondition(key=path, match=m.MatchAny(any=list(values)))


def _condition(m: Any, cond: Condition) -> Any:
    if isinstance(cond, FieldMatch):
        return _match(m, cond.path, cond.values)
    if isinstance(cond, FieldExcept):
        empty = m.IsEmptyCondition(is_empty=m.PayloadField(key=cond.path))
        return m.Filter(must_not=[empty, _match(m, cond.path, cond.values)])
    if isinstance(cond, FieldRange):
        return m.FieldCondition(key=cond.path, range=m.Range(gt=cond.gt, gte=cond.gte, lt=cond.lt, lte=cond.lte))
    if isinstance(cond, FieldEmpty):
        return m.IsEmptyCondition(is_empty=m.PayloadField(key=cond.path))
    if isinstance(cond, FieldText):
        return m.FieldCondition(key=cond.path, match=m.MatchText(text=cond.text))
    if isinstance(cond, AllOf):
        return m.Filter(must=[_condition(m, c) for c in cond.conditions])
    if isinstance(cond, AnyOf):
        return m.Filter(should=[_condition(m, c) for c in cond.conditions])
    if isinstance(cond, NotOf):
        return m.Filter(must_not=[_condition(m, cond.condition)])
    raise TypeError(f"not a filter condition: {cond!r}")  # a programming error, not user input


def to_qdrant_filter(conditions: tuple[Condition, ...]) -> Any:
    """A ``qdrant_client.models.Filter`` requiring every condition, or None for no conditions."""
    if not conditions:
        return None
    from qdrant_client import models

    return models.Filter(must=[_condition(models, c) for c in conditions])

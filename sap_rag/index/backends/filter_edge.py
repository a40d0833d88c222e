"""Parsed filter conditions (:mod:`sap_rag.index.filters`) -> a Qdrant Edge ``Filter``.

Every condition maps to one native Qdrant construct, so the engine evaluates the whole filter in
every search stage (no post-filtering here):

==============================  =======================================================================
Condition                       Qdrant Edge
==============================  =======================================================================
``FieldMatch`` (one value)      ``FieldCondition(key, match=MatchValue(v))``
``FieldMatch`` (several)        ``FieldCondition(key, match=MatchAny([...]))``
``FieldExcept``                 ``Filter(must_not=[IsEmptyCondition(key), <the match above>])``
``FieldRange``                  ``FieldCondition(key, range=RangeFloat(gt=, gte=, lt=, lte=))``
``FieldEmpty``                  ``IsEmptyCondition(key)``
``FieldText``                   ``FieldCondition(key, match=MatchText(text))``
``AllOf`` / ``AnyOf`` / ``NotOf``  ``Filter(must=[...])`` / ``Filter(should=[...])`` / ``Filter(must_not=[c])``
==============================  =======================================================================

``FieldExcept`` is not ``MatchExcept``: that cannot hold bools, and on a list it holds when one
element differs; "present and no element matches" keeps ``$ne`` the negation of ``$eq`` on pages
that have the key. A bool is passed as ``numpy.bool_``: qdrant-edge-py 0.9.0 reads a Python
``True`` as the integer 1 (``MatchValue(True)`` matches ``1``, not ``true``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..filters import AllOf, AnyOf, Condition, FieldEmpty, FieldExcept, FieldMatch, FieldRange, FieldText, NotOf

__all__ = ["to_edge_filter"]


def _value(v: Any) -> Any:
    return np.bool_(v) if isinstance(v, bool) else v


def _match(qe: Any, path: str, values: tuple[Any, ...]) -> Any:
    if len(values) == 1:
        return qe.FieldCondition(key=path, match=qe.MatchValue(_value(values[0])))
    return qe.FieldCondition(key=path, match=qe.MatchAny(list(values)))


def _condition(qe: Any, cond: Condition) -> Any:
    if isinstance(cond, FieldMatch):
        return _match(qe, cond.path, cond.values)
    if isinstance(cond, FieldExcept):
        return qe.Filter(must_not=[qe.IsEmptyCondition(key=cond.path), _match(qe, cond.path, cond.values)])
    if isinstance(cond, FieldRange):
        bounds = {"gt": cond.gt, "gte": cond.gte, "lt": cond.lt, "lte": cond.lte}
        rng = qe.RangeFloat(**{k: float(v) for k, v in bounds.items() if v is not None})
        return qe.FieldCondition(key=cond.path, range=rng)
    if isinstance(cond, FieldEmpty):
        return qe.IsEmptyCondition(key=cond.path)
    if isinstance(cond, FieldText):
        return qe.FieldCondition(key=cond.path, match=qe.MatchText(cond.text))
    if isinstance(cond, AllOf):
        return qe.Filter(must=[_condition(qe, c) for c in cond.conditions])
    if isinstance(cond, AnyOf):
        return qe.Filter(should=[_condition(qe, c) for c in cond.conditions])
    if isinstance(cond, NotOf):
        return qe.Filter(must_not=[_condition(qe, cond.condition)])
    raise TypeError(f"not a filter condition: {cond!r}")  # a programming error, not user input


def to_edge_filter(conditions: tuple[Condition, ...]) -> Any:
    """A ``qdrant_edge.Filter`` requiring every condition, or None for no conditions."""
    if not conditions:
        return None
    import qdrant_edge as qe

    return qe.Filter(must=[_condition(qe, c) for c in conditions])

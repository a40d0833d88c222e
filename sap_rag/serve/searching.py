"""One micro-batch of searches: every query encoded in one forward pass, one engine call per group of options.

:class:`~sap_rag.serve.service.IndexService` hands :func:`run_search_batch` to its
:class:`~sap_rag.serve.batching.MicroBatcher`. A query that fails (to encode or to search) gets its own
error; the rest of its batch still gets hits.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["SearchRequest", "run_search_batch"]


@dataclass
class SearchRequest:
    """One query waiting in the micro-batcher: a text, an image or ``(n_tokens, dim)`` vectors, and its options."""

    query: Any
    k: int
    filter: Mapping[str, Any] | None
    two_stage: bool | str | None = None
    prefetch: int | None = None
    coarse: int | None = None

    def group(self) -> tuple[Any, ...]:
        """Requests with the same key share one ``search_batch`` call."""
        return (
            self.k,
            json.dumps(self.filter, sort_keys=True, default=str),
            self.two_stage,
            self.prefetch,
            self.coarse,
        )


def run_search_batch(index: Any, encoder: Any, requests: list[SearchRequest]) -> list[Any]:
    """Per request, its hits or its error.

    Text queries go through ``encoder.encode_queries`` together, images through
    ``encoder.encode_pages`` (every visual token a query vector, as ``SAPIndex.search`` treats an
    image), and the ``(n_tokens, dim)`` tensors through ``index.search_batch`` per group of options.
    """
    from PIL import Image

    results: list[Any] = [None] * len(requests)
    vectors: list[Any] = [None] * len(requests)
    texts = [i for i, r in enumerate(requests) if isinstance(r.query, str)]
    images = [i for i, r in enumerate(requests) if isinstance(r.query, Image.Image)]
    for i, r in enumerate(requests):
        if i not in texts and i not in images:
            vectors[i] = r.query  # precomputed vectors
    if texts:
        _encode(texts, requests, vectors, results, encoder.encode_queries)
    if images:
        _encode(
            images,
            requests,
            vectors,
            results,
            lambda qs: [p.embeddings for p in encoder.encode_pages(qs, indegree_layers=None)],
        )
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, r in enumerate(requests):
        if results[i] is None:
            groups.setdefault(r.group(), []).append(i)
    for members in groups.values():
        first = requests[members[0]]
        options = {"filter": first.filter, "two_stage": first.two_stage, "prefetch": first.prefetch}
        options["coarse"] = first.coarse
        try:
            found = index.search_batch([vectors[i] for i in members], first.k, **options)
        except Exception as exc:
            if len(members) == 1:
                results[members[0]] = exc
                continue
            found = []
            for i in members:  # find whose query failed; the others still get their hits
                try:
                    found.append(index.search_batch([vectors[i]], first.k, **options)[0])
                except Exception as one:
                    found.append(one)
        for i, hits in zip(members, found):
            results[i] = hits
    return results


def _encode(
    members: list[int],
    requests: list[SearchRequest],
    vectors: list[Any],
    results: list[Any],
    fn: Callable[[list[Any]], list[Any]],
) -> None:
    try:
        encoded = fn([requests[i].query for i in members])
        for i, tensor in zip(members, encoded):
            vectors[i] = tensor
    except Exception:
        for i in members:  # one bad query must not fail the batch: encode each alone to find it
            try:
                vectors[i] = fn([requests[i].query])[0]
            except Exception as exc:
                results[i] = exc

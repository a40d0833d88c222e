"""Index pages as LlamaIndex nodes: one builder shared by the indexer and the retriever.

A page node is the same object whichever way it is reached (indexed, searched, fetched by id):

- ``id_``: the page id (``sap_rag.page_id(doc_id, page_number)``, e.g. ``"3f2a...:p2"``);
- ``text``: the page text (PDF text layer, the text given at index time, or a label such as
  ``"page 2 of report.pdf"``), so text-only consumers (``RetrieverTool``, synthesizers) get words;
- ``image_path`` and ``metadata["file_path"]``: the page image stored in the index, the file image
  postprocessors (``ColPaliRerank``) and multimodal LLMs open; the document's own file is
  ``metadata["source"]``. An index without local image files (a ``SAPClient`` from
  ``sap_rag.connect``) gives the image bytes instead (``image``, base64, as LlamaIndex keeps them);
- ``metadata``: the document metadata plus ``doc_id``, ``page_number``, ``page_id``;
- relationships: ``SOURCE`` (the LlamaIndex document the page came from, else the index
  document), ``PREVIOUS`` / ``NEXT`` (the neighbouring pages of the same document);
- ``excluded_llm_metadata_keys`` / ``excluded_embed_metadata_keys``: those of the input document
  plus :data:`HIDDEN_KEYS`: local paths (``source``, ``file_path``), the internal ids (``doc_id``,
  ``page_id``) and the scores stay in ``metadata`` for code but never reach a prompt or an embedder.

The indexer stores what a node needs beyond the core's page record in the document metadata,
under the ``llama_index_*`` keys below; they become node fields again and never show as metadata.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from enum import Enum
from typing import Any

from llama_index.core.schema import ImageNode, NodeRelationship, NodeWithScore, ObjectType, RelatedNodeInfo

__all__ = [
    "EXCLUDED_EMBED_KEY",
    "EXCLUDED_LLM_KEY",
    "HIDDEN_KEYS",
    "MAXSIM_KEY",
    "PRIVATE_KEYS",
    "REF_DOC_IDS_KEY",
    "ScoreMode",
    "hit_to_node",
    "image_mimetype",
    "page_node",
]

REF_DOC_IDS_KEY = "llama_index_ref_doc_ids"
"""Stored per index document: the LlamaIndex document id of each page (index ``page_number - 1``)."""
EXCLUDED_LLM_KEY = "llama_index_excluded_llm_metadata_keys"
EXCLUDED_EMBED_KEY = "llama_index_excluded_embed_metadata_keys"
PRIVATE_KEYS = (REF_DOC_IDS_KEY, EXCLUDED_LLM_KEY, EXCLUDED_EMBED_KEY)

MAXSIM_KEY = "maxsim"
"""Node metadata: the raw MaxSim score of a searched page (``NodeWithScore.score`` is the relevance)."""
QUERY_TOKENS_KEY = "num_query_tokens"
RELEVANCE_KEY = "relevance"

HIDDEN_KEYS = ("source", "file_path", "doc_id", "page_id", MAXSIM_KEY, QUERY_TOKENS_KEY, RELEVANCE_KEY)
"""Keys kept out of what LLMs and embedders see: absolute local paths, internal ids, scores.
The LLM sees the page text, ``filename``, ``page_number`` and the user's own metadata."""

_MIMETYPES = ((b"\x89PNG", "image/png"), (b"\xff\xd8", "image/jpeg"), (b"GIF8", "image/gif"))


def image_mimetype(data: bytes) -> str | None:
    """The MIME type of PNG, JPEG, GIF or WebP bytes (None for anything else)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((mime for magic, mime in _MIMETYPES if data.startswith(magic)), None)


class ScoreMode(str, Enum):
    """Which score ``NodeWithScore.score`` carries.

    - ``relevance`` (default): MaxSim normalised to ``[0, 1]`` (``(maxsim / n_query_tokens + 1) / 2``),
      so ``SimilarityPostprocessor(similarity_cutoff=0.6)`` and thresholds mean something;
    - ``maxsim``: the raw MaxSim sum (unbounded, grows with the query length).

    Both are in ``metadata["relevance"]`` / ``metadata["maxsim"]`` whatever the mode; the order is
    the same (one is monotone in the other for a query).
    """

    RELEVANCE = "relevance"
    MAXSIM = "maxsim"


def _str_list(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _source(hit: Any, stored: dict[str, Any]) -> RelatedNodeInfo:
    refs = stored.get(REF_DOC_IDS_KEY)
    if isinstance(refs, list) and 0 < hit.page_number <= len(refs) and isinstance(refs[hit.page_number - 1], str):
        return RelatedNodeInfo(node_id=refs[hit.page_number - 1], node_type=ObjectType.DOCUMENT)
    # Indexed outside LlamaIndex (CLI, add_documents): the index document is the source.
    return RelatedNodeInfo(node_id=hit.doc_id, node_type=ObjectType.DOCUMENT)


def page_node(hit: Any, page_ids: Sequence[str] | None = None, image: bytes | None = None) -> ImageNode:
    """One index page (a ``SearchHit`` from ``search`` or ``get_pages``) as an ``ImageNode``.

    ``page_ids``: the document's page ids in order (``DocumentInfo.page_ids``), for the
    ``PREVIOUS`` / ``NEXT`` relationships; None leaves them out. ``image``: the page image bytes,
    for a hit without ``image_path`` (from a remote index).
    """
    stored = dict(hit.metadata or {})
    image_path = os.fspath(hit.image_path) if hit.image_path is not None else None
    metadata = {key: value for key, value in stored.items() if key not in PRIVATE_KEYS}
    metadata.update(doc_id=hit.doc_id, page_number=hit.page_number, page_id=hit.page_id)
    if image_path is not None:
        metadata["file_path"] = image_path
    else:
        metadata.pop("file_path", None)
    if hit.num_query_tokens:
        metadata.update({MAXSIM_KEY: float(hit.score), RELEVANCE_KEY: float(hit.relevance)})
        metadata[QUERY_TOKENS_KEY] = int(hit.num_query_tokens)
    hidden = [k for k in HIDDEN_KEYS if k in metadata]
    node = ImageNode(
        id_=hit.page_id,
        text=hit.text,
        image_path=image_path,
        image=base64.b64encode(image).decode("ascii") if image is not None and image_path is None else None,
        image_mimetype=image_mimetype(image) if image is not None and image_path is None else None,
        metadata=metadata,
        excluded_llm_metadata_keys=list(dict.fromkeys([*_str_list(stored.get(EXCLUDED_LLM_KEY)), *hidden])),
        excluded_embed_metadata_keys=list(dict.fromkeys([*_str_list(stored.get(EXCLUDED_EMBED_KEY)), *hidden])),
    )
    node.relationships[NodeRelationship.SOURCE] = _source(hit, stored)
    if page_ids is not None and hit.page_id in page_ids:
        at = list(page_ids).index(hit.page_id)
        if at > 0:
            node.relationships[NodeRelationship.PREVIOUS] = RelatedNodeInfo(node_id=page_ids[at - 1])
        if at + 1 < len(page_ids):
            node.relationships[NodeRelationship.NEXT] = RelatedNodeInfo(node_id=page_ids[at + 1])
    return node


def hit_to_node(
    hit: Any,
    page_ids: Sequence[str] | None = None,
    score: ScoreMode | str = ScoreMode.RELEVANCE,
    image: bytes | None = None,
) -> NodeWithScore:
    """A search hit as ``NodeWithScore(ImageNode)``; ``score`` picks the score (see :class:`ScoreMode`)."""
    mode = ScoreMode(score)
    value = hit.relevance if mode is ScoreMode.RELEVANCE else hit.score
    return NodeWithScore(node=page_node(hit, page_ids, image), score=float(value))

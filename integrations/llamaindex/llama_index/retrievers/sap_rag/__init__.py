"""LlamaIndex integration of sap-rag.

- :class:`SAPPageReader`: a reader giving one ``ImageDocument`` per page of a PDF or image file
  (also importable as ``llama_index.readers.sap_rag.SAPPageReader``).
- :class:`VisualDocumentIndexer`: a ``NodeParser`` (alone or in an ``IngestionPipeline``) that
  indexes the pages documents point at into a ``SAPIndex`` and returns one ``ImageNode`` per page.
- :class:`SAPRetriever`: a ``BaseRetriever`` over a ``SAPIndex`` returning ``NodeWithScore(ImageNode)``.
- :class:`SAPPageStore`: the index as a vector store: ``VectorStoreIndex.from_documents(docs,
  storage_context=StorageContext.from_defaults(vector_store=store), embed_model=store.embed_model)``
  encodes the pages; a pipeline with a docstore upserts and deletes by ``ref_doc_id``.

All behaviour lives in ``sap_rag``; this package translates types and call conventions.
"""

from .filters import UnsupportedFilterError, to_index_filter
from .indexer import VisualDocumentIndexer
from .nodes import ScoreMode, hit_to_node, page_node
from .reader import SAPPageReader
from .retriever import SAPRetriever
from .vector_store import SAPPageStore, SAPStoreEmbedding

__all__ = [
    "SAPPageReader",
    "SAPPageStore",
    "SAPRetriever",
    "SAPStoreEmbedding",
    "ScoreMode",
    "UnsupportedFilterError",
    "VisualDocumentIndexer",
    "hit_to_node",
    "page_node",
    "to_index_filter",
]

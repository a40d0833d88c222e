"""LangChain integration of sap-rag.

- :class:`SAPVectorStore`: a ``VectorStore`` over a ``SAPIndex`` (add/upsert/delete/get by page or
  document id, similarity and relevance search by text or image, ``as_retriever``); works with
  LangChain's indexing API and its composite retrievers.
- :class:`SAPRetriever`: a ``BaseRetriever`` over a ``SAPIndex`` with per-call search options.
- :class:`SAPPageLoader`: PDFs and images as one ``Document`` per page (text layer, content hash).
- :func:`create_page_retriever_tool`: a tool for agents whose content is the pages' text and images.
- :func:`page_image_blocks` / :func:`page_images_message` / :func:`page_content_blocks`: retrieved
  pages as multimodal message content for a chat model, e.g. in an LCEL chain.

Every retrieved ``Document`` is one page: ``page_content`` its text, ``id`` the id it was added
with (else its page id), and metadata with ``page_id``, ``doc_id``, ``page_number``, ``score``,
``relevance`` and ``image_path``. Page images sent to models are bounded (``max_side``,
``quality``). All behaviour lives in ``sap_rag``; this package translates types and call conventions.
"""

from .documents import hit_to_document
from .images import DEFAULT_MAX_SIDE, DEFAULT_QUALITY
from .loaders import SAPPageLoader
from .messages import page_content_blocks, page_image_blocks, page_images_message
from .retrievers import SAPRetriever
from .tools import create_page_retriever_tool
from .vectorstores import SAPVectorStore, SAPVectorStoreRetriever

__all__ = [
    "DEFAULT_MAX_SIDE",
    "DEFAULT_QUALITY",
    "SAPPageLoader",
    "SAPRetriever",
    "SAPVectorStore",
    "SAPVectorStoreRetriever",
    "create_page_retriever_tool",
    "hit_to_document",
    "page_content_blocks",
    "page_image_blocks",
    "page_images_message",
]

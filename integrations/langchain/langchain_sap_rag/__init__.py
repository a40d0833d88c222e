"""LangChain integration of sap-rag.

- :class:`SAPRetriever`: a ``BaseRetriever`` over a ``SAPIndex`` (``k``, ``filter``, per-call
  ``k``/``filter``/``include_image``), returning page ``Document``\\ s whose metadata carries the page
  image; it also indexes files (:meth:`SAPRetriever.from_paths`, ``add_paths``, ``add_documents``).
- :func:`page_image_blocks` / :func:`page_images_message`: retrieved pages as multimodal message
  content for a chat model, e.g. in an LCEL chain.

All behaviour lives in ``sap_rag``; this package translates types and call conventions.
"""

from .messages import page_image_blocks, page_images_message
from .retrievers import SAPRetriever, hit_to_document

__all__ = ["SAPRetriever", "hit_to_document", "page_image_blocks", "page_images_message"]

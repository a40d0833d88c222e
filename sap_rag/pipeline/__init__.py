"""The page pipeline: ingest -> encode -> prune -> pages ready to store.

What happens to a document before the index stores it, and to a query before it is searched:
images are loaded (:mod:`sap_rag.ingest`), encoded by a :class:`~sap_rag.PageEncoder`, pruned by a
:class:`~sap_rag.Pruner`, and given their text; queries (strings, images, arrays) become
``(n_tokens, dim)`` matrices. Nothing here knows about storage: :class:`~sap_rag.SAPIndex`
fronts the store and hands documents to a :class:`PagePipeline`.
"""

from .arrays import as_matrix
from .pages import PagePipeline, PreparedPage, load_images, pruned_page
from .texts import page_label, page_texts

__all__ = ["PagePipeline", "PreparedPage", "as_matrix", "load_images", "page_label", "page_texts", "pruned_page"]

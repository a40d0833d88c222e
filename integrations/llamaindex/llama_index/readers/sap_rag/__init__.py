"""sap-rag's page reader where LlamaIndex users look for readers (``llama_index.readers.*``).

The same class as ``llama_index.retrievers.sap_rag.SAPPageReader``, shipped in the same
distribution (``llama-index-retrievers-sap-rag``): the reader, the indexer that regroups its pages
and the retriever share one version of the page conventions, so they install and upgrade together.
"""

from llama_index.retrievers.sap_rag.reader import PAGE_KEYS, SAPPageReader

__all__ = ["PAGE_KEYS", "SAPPageReader"]

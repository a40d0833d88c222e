"""LlamaIndex: index PDFs with SAP in an IngestionPipeline and query them with a multimodal query engine.

    SimpleDirectoryReader(file_extractor=SAPPageReader) -> one ImageDocument per page
    -> IngestionPipeline([VisualDocumentIndexer], docstore, upserts) -> SAPRetriever
    -> RetrieverQueryEngine(multimodal=True) -> the page images reach the LLM

Runs offline in seconds: the repository's toy ColQwen2 (models/sap-rag-toy-colqwen2, trained on
synthetic report pages like the samples: it finds the answering page of questions like the default
one, but it is not a production model) and a mock chat LLM that only echoes its prompt. For real
use, change the two lines marked "REAL MODEL" and "REAL LLM" below, e.g.

    load_encoder("vidore/colqwen2-v1.0")                # needs the weights (hub or local dir)
    llm = OpenAI(model="gpt-4o")                        # pip install llama-index-llms-openai; any multimodal chat LLM

    python examples/llamaindex_query_engine.py [--index-dir DIR] [--data DIR] [--question TEXT] [--verbose]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import Any

from llama_index.core import SimpleDirectoryReader
from llama_index.core.base.llms.types import ImageBlock
from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.llm import LLMChatStartEvent
from llama_index.core.llms.mock import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.storage.docstore import SimpleDocumentStore
from llama_index.readers.sap_rag import SAPPageReader
from llama_index.retrievers.sap_rag import SAPRetriever, VisualDocumentIndexer

from sap_rag import load_encoder
from sap_rag.index import SAPIndex

DATA = Path(__file__).resolve().parent / "data"
TOY_MODEL = Path(__file__).resolve().parents[1] / "models" / "sap-rag-toy-colqwen2"


class ImageCounter(BaseEventHandler):
    """Counts the image blocks in the messages of every chat call (LlamaIndex instrumentation)."""

    images: int = 0

    @classmethod
    def class_name(cls) -> str:
        return "ImageCounter"

    def handle(self, event: Any, **kwargs: Any) -> None:
        if isinstance(event, LLMChatStartEvent):
            self.images += sum(isinstance(b, ImageBlock) for m in event.messages for b in m.blocks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index-dir", type=Path, help="where to keep the index (default: a temporary folder)")
    parser.add_argument("--data", type=Path, default=DATA, help="folder of PDFs to index")
    parser.add_argument("--question", default="What was the revenue of Acme Industries in 2022?")
    parser.add_argument("--verbose", action="store_true", help="log details (sap-rag, llama-index) to stderr")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    if not args.verbose:
        # SimpleDirectoryReader warns that its optional default readers (llama-index-readers-file) are
        # missing; SAPPageReader reads the PDFs here, so that warning is noise.
        logging.getLogger("llama_index.core.readers.file.base").setLevel(logging.ERROR)

    with tempfile.TemporaryDirectory() as scratch:
        index_dir = args.index_dir or Path(scratch) / "index"
        encoder = load_encoder(TOY_MODEL)  # REAL MODEL: load_encoder("vidore/colqwen2-v1.0")
        with SAPIndex.create(index_dir, encoder=encoder, keep_ratio=0.1) as index:
            # One ImageDocument per page (rendered image, PDF text layer, file hash); ids stable per file
            # and page, so the docstore re-indexes an edited file and deletes a removed one.
            reader = SAPPageReader()
            documents = SimpleDirectoryReader(
                str(args.data), required_exts=[".pdf"], file_extractor={".pdf": reader}, filename_as_id=True
            ).load_data()
            indexer = VisualDocumentIndexer(index=index)
            pipeline = IngestionPipeline(
                transformations=[indexer],
                docstore=SimpleDocumentStore(),
                vector_store=indexer.vector_store,
                docstore_strategy=DocstoreStrategy.UPSERTS_AND_DELETE,
            )
            nodes = pipeline.run(documents=documents)
            files = {d.metadata["file_name"] for d in documents}
            print(f"indexed {len(nodes)} pages from {len(files)} files")
            print(f"run again: {len(pipeline.run(documents=documents))} pages re-indexed (nothing changed)")

            llm = MockLLM(is_chat_model=True)  # REAL LLM: llm = OpenAI(model="gpt-4o")

            retriever = SAPRetriever(index, similarity_top_k=2)
            engine = RetrieverQueryEngine.from_args(retriever, llm=llm, multimodal=True)
            counter = ImageCounter()
            get_dispatcher().add_event_handler(counter)
            response = engine.query(args.question)
            for source in response.source_nodes:
                meta = source.node.metadata
                text = (source.node.text.splitlines() or [""])[0][:40]
                where = f"{meta['filename']} page {meta['page_number']}"
                print(f"retrieved: {where} (relevance {source.score:.3f}): {text!r}")
            print(f"the LLM received {counter.images} page images")
            print(f"answer (the mock LLM echoes its prompt): {str(response)[:80]!r}...")


if __name__ == "__main__":
    main()

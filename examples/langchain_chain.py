"""LangChain: index PDFs with SAP and answer a question from the retrieved page images (an LCEL chain).

    retriever (pages as Documents) -> prompt with the page images -> chat model -> answer

Runs offline in seconds: the repository's toy ColQwen2 (models/sap-rag-toy-colqwen2, trained on
synthetic report pages like the samples: it finds the answering page of questions like the default
one, but it is not a production model) and a fake chat model that only shows what it was sent. For
real use, change the two lines marked "REAL MODEL" and "REAL LLM" below, e.g.

    encoder="vidore/colqwen2-v1.0"                      # needs the weights (hub or local dir)
    llm = ChatOpenAI(model="gpt-4o")                    # pip install langchain-openai; any vision chat model

    python examples/langchain_chain.py [--index-dir DIR] [--data DIR] [--question TEXT] [--verbose]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough
from langchain_sap_rag import SAPRetriever, page_images_message

DATA = Path(__file__).resolve().parent / "data"
TOY_MODEL = Path(__file__).resolve().parents[1] / "models" / "sap-rag-toy-colqwen2"


def build_chain(retriever: BaseRetriever, llm: BaseChatModel) -> Runnable:
    """question -> retrieved pages -> one message holding their images -> the chat model's answer."""
    prompt = ChatPromptTemplate.from_messages(
        [
            ("system", "Answer the question using only the document pages shown. Cite the page you used."),
            MessagesPlaceholder("pages"),
            ("human", "{question}"),
        ]
    )

    def pages_message(docs: list[Document]) -> list[BaseMessage]:
        return [page_images_message(docs)]

    return (
        {"pages": retriever | RunnableLambda(pages_message), "question": RunnablePassthrough()}
        | prompt
        | llm
        | StrOutputParser()
    )


class ImageCounter(BaseCallbackHandler):
    """Counts the image blocks in the messages each chat-model call receives.

    Callbacks see LangChain's standard image blocks in OpenAI's ``image_url`` form; the model
    integration itself gets them as built and translates them for its provider.
    """

    def __init__(self) -> None:
        self.images = 0

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[BaseMessage]], **kwargs: Any) -> None:
        for batch in messages:
            for message in batch:
                if isinstance(message.content, list):
                    self.images += sum(
                        1 for b in message.content if isinstance(b, dict) and b.get("type") in ("image", "image_url")
                    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index-dir", type=Path, help="where to keep the index (default: a temporary folder)")
    parser.add_argument("--data", type=Path, default=DATA, help="PDFs or images to index")
    parser.add_argument("--question", default="What was the revenue of Acme Industries in 2022?")
    parser.add_argument("--verbose", action="store_true", help="log details (sap-rag, transformers) to stderr")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)

    with tempfile.TemporaryDirectory() as scratch:
        index_dir = args.index_dir or Path(scratch) / "index"
        # The retriever closes the index (and releases its lock) when the block ends.
        with SAPRetriever.from_paths(
            args.data,
            index_dir,
            encoder=str(TOY_MODEL),  # REAL MODEL: "vidore/colqwen2-v1.0"
            keep_ratio=0.1,
            k=2,
        ) as retriever:
            stats = retriever.index.stats()
            print(
                f"indexed {stats.documents} documents, {stats.pages} pages, {stats.vectors_per_page:.0f} anchors/page"
            )

            # REAL LLM: llm = ChatOpenAI(model="gpt-4o")
            llm = GenericFakeChatModel(messages=iter([AIMessage("(a fake chat model: a real one answers here)")]))

            counter = ImageCounter()
            answer = build_chain(retriever, llm).invoke(args.question, config={"callbacks": [counter]})
            for doc in retriever.invoke(args.question):
                meta = doc.metadata
                text = doc.page_content.replace("\n", " ")[:60]
                print(
                    f"retrieved: {doc.id} ({meta['filename']} page {meta['page_number']}, score {meta['score']:.3f}, "
                    f"relevance {meta['relevance']:.3f}): {text}"
                )
            print(f"the chat model received {counter.images} page images")
            print(f"answer: {answer}")


if __name__ == "__main__":
    main()

"""The LCEL chain of examples/langchain_chain.py: retriever -> prompt with page images -> chat model."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_sap_rag import SAPRetriever
from pydantic import Field

from sap_rag.index import SAPIndex

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "langchain_chain.py"
QUESTION = "What was the revenue in 2023?"


def _example_module():
    spec = importlib.util.spec_from_file_location("langchain_chain_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RecordingChatModel(GenericFakeChatModel):
    """A fake chat model that keeps the messages it was given."""

    received: list[list[Any]] = Field(default_factory=list)

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.received.append(list(messages))
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


@pytest.fixture(scope="module")
def retriever(tmp_path_factory, tiny_encoder, pages):
    idx = SAPIndex.create(tmp_path_factory.mktemp("lc-chain") / "index", encoder=tiny_encoder, keep_ratio=0.1)
    for i, page in enumerate(pages):
        idx.add_images([page], doc_id=f"doc{i}", metadata={"source": f"page{i}.png"})
    yield SAPRetriever(index=idx, k=2)
    idx.close()


@pytest.mark.parametrize("use_async", [False, True], ids=["invoke", "ainvoke"])
def test_chain_sends_the_retrieved_page_images_to_the_chat_model(retriever, use_async):
    llm = RecordingChatModel(messages=iter([AIMessage("It was 42.")]))
    chain = _example_module().build_chain(retriever, llm)
    answer = asyncio.run(chain.ainvoke(QUESTION)) if use_async else chain.invoke(QUESTION)

    assert answer == "It was 42."
    (messages,) = llm.received
    sent = [
        base64.b64decode(block["base64"])
        for message in messages
        if isinstance(message, HumanMessage) and isinstance(message.content, list)
        for block in message.content
        if isinstance(block, dict) and block.get("type") == "image"
    ]
    expected = [Path(d.metadata["image_path"]).read_bytes() for d in retriever.invoke(QUESTION)]
    assert sent == expected and len(sent) == 2
    assert messages[-1].content == QUESTION

"""Session-wide fixtures: tiny random-weight encoders (built once per family) and sample pages."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from sap_rag.encoders import tiny_families

# Families with a tiny builder; tests parametrised over families use this list.
TINY_FAMILIES = tiny_families()


TOY_CHECKPOINT = Path(__file__).resolve().parents[1] / "models" / "sap-rag-toy-colqwen2"


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory) -> Path:
    """The library's user cache (compiled query encoders) is a temporary folder, never ``~/.cache``;
    subprocesses inherit it through the environment."""
    folder = tmp_path_factory.mktemp("sap-rag-cache")
    old = os.environ.get("SAP_RAG_CACHE_DIR")
    os.environ["SAP_RAG_CACHE_DIR"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("SAP_RAG_CACHE_DIR", None)
    else:
        os.environ["SAP_RAG_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def toy_encoder():
    """The committed toy checkpoint, loaded once per session through ``load_encoder``."""
    from sap_rag import load_encoder

    return load_encoder(TOY_CHECKPOINT, device="cpu")


class EncoderCache:
    """Builds each tiny encoder once per session and hands out the same object."""

    def __init__(self) -> None:
        self._cache: dict[str, object] = {}

    def __call__(self, family: str = "colqwen2"):
        from sap_rag import load_encoder

        if family not in self._cache:
            self._cache[family] = load_encoder(f"tiny:{family}", seed=0)
        return self._cache[family]


@pytest.fixture(scope="session")
def tiny_encoders() -> EncoderCache:
    """Callable: ``tiny_encoders("colqwen2")`` -> a cached tiny PageEncoder."""
    return EncoderCache()


@pytest.fixture(scope="session")
def tiny_encoder(tiny_encoders):
    """The default tiny encoder (ColQwen2)."""
    return tiny_encoders("colqwen2")


def make_page(seed: int, size: tuple[int, int] = (180, 240), text: str = "") -> Image.Image:
    """A synthetic document page: white background, a few dark 'text' bars and a coloured 'chart'."""
    rng = np.random.default_rng(seed)
    width, height = size
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    for row in range(int(rng.integers(4, 9))):
        y = 10 + row * (height // 10)
        draw.rectangle([10, y, 10 + int(rng.integers(width // 3, width - 20)), y + 5], fill=(20, 20, 20))
    x0, y0 = int(rng.integers(0, width // 2)), int(rng.integers(height // 2, height - 40))
    draw.rectangle([x0, y0, x0 + 40, y0 + 30], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    if text:
        draw.text((12, height - 20), text, fill=(0, 0, 0))
    return image


@pytest.fixture(scope="session")
def pages() -> list[Image.Image]:
    """Four synthetic pages of different sizes and aspect ratios."""
    return [make_page(0), make_page(1, (240, 180)), make_page(2, (160, 160)), make_page(3, (200, 280))]


def pytest_sessionfinish(session, exitstatus) -> None:
    """Close the qdrant-client clients tests left open while Python can still import: closed by
    their ``__del__`` at interpreter exit instead, each prints an ignored ImportError traceback."""
    import gc
    import sys

    if "qdrant_client" not in sys.modules:
        return
    from qdrant_client import QdrantClient

    for client in [obj for obj in gc.get_objects() if isinstance(obj, QdrantClient)]:
        try:
            client.close()
        except Exception:  # already closed, or its folder is gone with tmp_path
            pass

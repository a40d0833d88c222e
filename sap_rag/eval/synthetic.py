"""A small synthetic retrieval dataset in the ViDoRe layouts: rendered report pages, questions, qrels.

Pages look like pages of company reports: a title, a paragraph, and a table, a bar chart or
both, rendered with matplotlib. Pages come in pairs about the same company. Each query asks about
one page's content; every third query is also (less) relevant to its sibling page, so qrels
are graded (2 = the page that answers, 1 = the related page).

It is for tests and for the offline demo of the harness: with a tiny random-weight model the
numbers mean nothing, but every code path (loading, caching, pruning, metrics, reports) runs.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import InvalidInputError, MissingDependencyError

logger = logging.getLogger(__name__)

__all__ = ["ImageStorage", "PageStyle", "SyntheticPage", "TableFormat", "make_synthetic_dataset", "render_page"]

_COMPANIES = (
    "Acme Industries",
    "Borealis Energy",
    "Cobalt Health",
    "Delta Logistics",
    "Evergreen Foods",
    "Fjord Mining",
    "Granite Bank",
    "Helios Solar",
    "Iris Telecom",
    "Juniper Textiles",
)
_METRICS = (
    ("revenue", "million EUR"),
    ("CO2 emissions", "kt"),
    ("employees", "thousand"),
    ("water use", "million m3"),
    ("R&D spending", "million EUR"),
)
_KINDS = ("table", "chart", "mixed", "text")
_YEARS = (2019, 2020, 2021, 2022, 2023)


class TableFormat(str, Enum):
    """File format of the corpus / queries / qrels tables."""

    JSONL = "jsonl"
    PARQUET = "parquet"


class PageStyle(str, Enum):
    """Which generator draws the pages: the classic matplotlib pages or the toy model's report pages."""

    CLASSIC = "classic"
    REPORT = "report"
    FACTS = "facts"


class ImageStorage(str, Enum):
    """How page images are stored: as files beside the tables, or inline as bytes."""

    FILES = "files"
    BYTES = "bytes"


@dataclass(frozen=True)
class SyntheticPage:
    """The content of one generated page."""

    index: int
    company: str
    metric: str
    unit: str
    kind: str
    values: tuple[float, ...]  # one per year in _YEARS
    paragraph: str

    @property
    def title(self) -> str:
        return f"{self.company}: {self.metric} {_YEARS[0]}-{_YEARS[-1]}"

    def question(self, variant: int) -> tuple[str, str]:
        """A question this page answers, and its answer."""
        best = _YEARS[int(np.argmax(self.values))]
        year = _YEARS[variant % len(_YEARS)]
        value = self.values[variant % len(_YEARS)]
        if self.kind == "chart":
            return f"In which year was the {self.metric} of {self.company} highest?", str(best)
        if self.kind == "text":
            return f"What does {self.company} say about its {self.metric} strategy?", self.paragraph
        return f"What was the {self.metric} of {self.company} in {year}?", f"{value:g} {self.unit}"


def _pages(num_pages: int, rng: np.random.Generator) -> list[SyntheticPage]:
    pages = []
    for i in range(num_pages):
        company = _COMPANIES[(i // 2) % len(_COMPANIES)]
        metric, unit = _METRICS[(i * 3 + i // 2) % len(_METRICS)]
        base = float(rng.uniform(20, 900))
        values = tuple(round(base * float(rng.uniform(0.7, 1.3)), 1) for _ in _YEARS)
        trend = "rose" if values[-1] > values[0] else "fell"
        paragraph = (
            f"In {_YEARS[-1]} {company} reported {metric} of {values[-1]:g} {unit}. Compared with "
            f"{_YEARS[0]}, {metric} {trend} as the group expanded its operations and renewed its targets."
        )
        pages.append(SyntheticPage(i, company, metric, unit, _KINDS[i % len(_KINDS)], values, paragraph))
    return pages


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width=width))


def render_page(page: SyntheticPage, size: tuple[int, int] = (448, 576)) -> Image.Image:
    """Render ``page`` as an RGB image of ``size`` (width, height) pixels with matplotlib."""
    from .reports import require_matplotlib

    FigureCanvasAgg, Figure = require_matplotlib("rendering synthetic pages")
    width, height = size
    dpi = 100
    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="white")
    canvas = FigureCanvasAgg(figure)
    scale = height / 576
    figure.text(0.06, 0.95, page.title, fontsize=11 * scale, weight="bold", va="top")
    figure.text(0.06, 0.90, _wrap(page.paragraph, 62), fontsize=6.5 * scale, va="top", color="#222222")
    labels = [str(y) for y in _YEARS]
    if page.kind in ("table", "mixed"):
        top = 0.72 if page.kind == "table" else 0.40
        ax = figure.add_axes((0.06, top - 0.22, 0.88, 0.22))
        ax.axis("off")
        table = ax.table(
            cellText=[[page.unit, *(f"{v:g}" for v in page.values)]],
            colLabels=[page.metric, *labels],
            colWidths=[0.25] + [0.15] * len(labels),
            loc="center",
            cellLoc="center",
        )
        table.auto_set_font_size(False)
        table.set_fontsize(6.5 * scale)
    if page.kind in ("chart", "mixed"):
        ax = figure.add_axes((0.12, 0.48, 0.8, 0.3) if page.kind == "mixed" else (0.12, 0.3, 0.8, 0.45))
        colors = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3"]
        ax.bar(labels, page.values, color=colors)
        ax.set_ylabel(page.unit, fontsize=6 * scale)
        ax.set_title(page.metric, fontsize=7 * scale)
        ax.tick_params(labelsize=6 * scale)
    if page.kind == "text":
        extra = " ".join(
            f"In {year}, {page.metric} was {value:g} {page.unit}." for year, value in zip(_YEARS, page.values)
        )
        figure.text(0.06, 0.70, _wrap(extra, 62), fontsize=6.5 * scale, va="top")
    figure.text(0.5, 0.03, f"page {page.index + 1}", fontsize=6 * scale, ha="center", color="#666666")
    canvas.draw()
    array = np.asarray(canvas.buffer_rgba())[..., :3]
    return Image.fromarray(array.copy(), mode="RGB")


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _write_table(rows: list[dict[str, Any]], path: Path, fmt: TableFormat) -> Path:
    if fmt is TableFormat.JSONL:
        target = path.with_suffix(".jsonl")
        with target.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
        return target
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingDependencyError(
            "writing parquet needs pyarrow: pip install pyarrow (or use table_format='jsonl')"
        ) from exc
    target = path.with_suffix(".parquet")
    pq.write_table(pa.Table.from_pylist(rows), target)
    return target


def make_synthetic_dataset(
    out_dir: str | os.PathLike,
    *,
    num_pages: int = 6,
    num_queries: int | None = None,
    seed: int = 0,
    image_size: tuple[int, int] = (448, 576),
    layout: str = "v2",
    table_format: TableFormat | str = TableFormat.JSONL,
    images: ImageStorage | str = ImageStorage.FILES,
    style: PageStyle | str = "classic",
) -> Path:
    """Write a synthetic dataset to ``out_dir`` and return the directory.

    Args:
        out_dir: created if needed; existing tables are overwritten.
        num_pages: number of pages (at least 2).
        num_queries: number of queries (default: one per page); query ``i`` is about page
            ``i mod num_pages``.
        seed: seeds the numbers on the pages.
        image_size: (width, height) of each page in pixels.
        layout: ``"v2"`` (corpus / queries / qrels tables) or ``"v1"`` (one table of rows
            query, image, image_filename; only one relevant page per query, as in ViDoRe v1).
        table_format: ``"jsonl"`` (no dependency) or ``"parquet"`` (needs pyarrow).
        images: ``"files"`` (PNG files in ``images/``) or ``"bytes"`` (inline; base64 in jsonl).
        style: ``"classic"`` (the matplotlib pages above: pairs per company, graded qrels) or
            ``"report"`` (the toy model's pages, :mod:`sap_rag.train.pages`: every page a distinct
            (company, metric) pair, several fonts, sizes and layouts, one relevant page per query;
            at most 160 pages; the default ``image_size`` becomes the model's 252 x 364), or
            ``"facts"`` (answers local to one block of a page: each page holds 2-3 facts under a
            title naming only the company; a company's pages share title and layout and differ in
            their facts; a question names a company and one metric and has one relevant page;
            at most 60 pages; :func:`sap_rag.train.pages.make_fact_pages`).
    """
    if num_pages < 2:
        raise InvalidInputError(f"num_pages must be at least 2, got {num_pages}")
    num_queries = num_pages if num_queries is None else int(num_queries)
    if num_queries < 1:
        raise InvalidInputError(f"num_queries must be at least 1, got {num_queries}")
    if layout not in ("v1", "v2"):
        raise InvalidInputError(f"layout must be 'v1' or 'v2', got {layout!r}")
    if layout == "v1" and num_queries > num_pages:
        raise InvalidInputError("the v1 layout has one query per page row: num_queries must be <= num_pages")
    fmt = TableFormat(table_format)
    storage = ImageStorage(images)
    page_style = PageStyle(style)
    if page_style is not PageStyle.CLASSIC:
        return _report_dataset(out_dir, num_pages, num_queries, seed, image_size, layout, fmt, storage, page_style)
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pages = _pages(num_pages, rng)

    image_values: list[Any] = []
    filenames: list[str] = []
    for page in pages:
        data = _png(render_page(page, image_size))
        filename = f"images/page-{page.index:04d}.png"
        filenames.append(filename)
        if storage is ImageStorage.FILES:
            (root / "images").mkdir(exist_ok=True)
            (root / filename).write_bytes(data)
            image_values.append(filename)
        elif fmt is TableFormat.JSONL:
            image_values.append({"bytes": base64.b64encode(data).decode("ascii"), "path": None})
        else:
            image_values.append({"bytes": data, "path": None})

    queries, qrels = [], []
    for q in range(num_queries):
        page = pages[q % num_pages]
        text, answer = page.question(q // num_pages)
        queries.append({"query-id": q, "query": text, "answer": answer, "language": "english"})
        qrels.append({"query-id": q, "corpus-id": page.index, "score": 2})
        sibling = page.index ^ 1
        if q % 3 == 2 and sibling < num_pages:
            qrels.append({"query-id": q, "corpus-id": sibling, "score": 1})

    if layout == "v2":
        corpus = [
            {
                "corpus-id": page.index,
                "image": image_values[page.index],
                "doc-id": page.company,
                "kind": page.kind,
                "markdown": f"# {page.title}\n\n{page.paragraph}",
            }
            for page in pages
        ]
        _write_table(corpus, root / "corpus", fmt)
        _write_table(queries, root / "queries", fmt)
        _write_table(qrels, root / "qrels", fmt)
    else:
        rows = []
        for page in pages:
            query = queries[page.index] if page.index < num_queries else None
            rows.append(
                {
                    "query": query["query"] if query else None,
                    "answer": query["answer"] if query else None,
                    "image": image_values[page.index],
                    "image_filename": filenames[page.index],
                }
            )
        _write_table(rows, root / "test", fmt)
    logger.info("wrote a synthetic %s dataset (%d pages, %d queries) to %s", layout, num_pages, num_queries, root)
    return root


def _image_value(data: bytes, root: Path, filename: str, fmt: TableFormat, storage: ImageStorage) -> Any:
    if storage is ImageStorage.FILES:
        (root / "images").mkdir(exist_ok=True)
        (root / filename).write_bytes(data)
        return filename
    if fmt is TableFormat.JSONL:
        return {"bytes": base64.b64encode(data).decode("ascii"), "path": None}
    return {"bytes": data, "path": None}


def _report_dataset(
    out_dir: str | os.PathLike,
    num_pages: int,
    num_queries: int,
    seed: int,
    image_size: tuple[int, int],
    layout: str,
    fmt: TableFormat,
    storage: ImageStorage,
    style: PageStyle = PageStyle.REPORT,
) -> Path:
    """The ``style="report"`` or ``"facts"`` dataset: one relevant page per query (qrel score 1)."""
    from ..train.pages import make_fact_pages, make_pages, max_pages
    from ..train.render import render_page

    limit = max_pages(style.value)
    if num_pages > limit:
        raise InvalidInputError(
            f"the {style.value} style has {limit} distinct pages at most, got num_pages={num_pages}"
        )
    size = (252, 364) if tuple(image_size) == (448, 576) else tuple(image_size)
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    pages = make_fact_pages(num_pages, seed) if style is PageStyle.FACTS else make_pages(num_pages, seed)
    values = []
    for page in pages:
        filename = f"images/page-{page.index:04d}.png"
        values.append(_image_value(_png(render_page(page, size)), root, filename, fmt, storage))
    queries, qrels = [], []
    for q in range(num_queries):
        page = pages[q % num_pages]
        # Report pages: variant by page, then the next template each round. Facts pages: each round
        # asks about the page's next fact (so 3 rounds cover every fact).
        variant = page.index % 6 + q // num_pages if style is PageStyle.REPORT else q // num_pages
        text, answer = page.question(variant)
        queries.append({"query-id": q, "query": text, "answer": answer, "language": "english"})
        qrels.append({"query-id": q, "corpus-id": page.index, "score": 1})
    if layout == "v2":
        corpus = [
            {
                "corpus-id": page.index,
                "image": values[page.index],
                "doc-id": page.company,
                "kind": page.kind,
                "markdown": f"# {page.title}\n\n{page.paragraph}",
            }
            for page in pages
        ]
        _write_table(corpus, root / "corpus", fmt)
        _write_table(queries, root / "queries", fmt)
        _write_table(qrels, root / "qrels", fmt)
    else:
        rows = [
            {
                "query": queries[page.index]["query"] if page.index < num_queries else None,
                "answer": queries[page.index]["answer"] if page.index < num_queries else None,
                "image": values[page.index],
                "image_filename": f"images/page-{page.index:04d}.png",
            }
            for page in pages
        ]
        _write_table(rows, root / "test", fmt)
    logger.info(
        "wrote a synthetic %s-style %s dataset (%d pages, %d queries) to %s",
        style.value,
        layout,
        num_pages,
        num_queries,
        root,
    )
    return root

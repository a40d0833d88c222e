"""Regenerate the sample PDFs in this folder from the synthetic report-page generator (fixed seed).

    .venv/bin/python examples/data/make_samples.py

Each PDF is one company's report: one page per metric (table, chart, both, or text), drawn by
``sap_rag.train.render`` like the pages the toy model was trained on (but with other seeds), with an
invisible text layer holding the page's words. The demo's questions (scripts/demo.sh) each name a
company and a metric, so exactly one page answers each.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen import canvas

from sap_rag.train.pages import KINDS, METRICS, ReportPage
from sap_rag.train.render import render_report_page

HERE = Path(__file__).parent
SEED = 2024
PAGE_POINTS = (504, 728)  # the 252 x 364 training page at 2x: the model's aspect ratio exactly

REPORTS = {
    "acme_industries_2023.pdf": ("Acme Industries", ["revenue", "emissions", "employees"]),
    "borealis_energy_2023.pdf": ("Borealis Energy", ["energy use", "water use", "profit"]),
    "cobalt_health_2023.pdf": ("Cobalt Health", ["customers", "research spending", "revenue"]),
}


def report_pages(company: str, metrics: list[str], rng: np.random.Generator, start: int) -> list[ReportPage]:
    units = dict(METRICS)
    pages = []
    for i, metric in enumerate(metrics):
        base = float(rng.uniform(20, 900))
        pages.append(
            ReportPage(
                index=start + i,
                company=company,
                metric=metric,
                unit=units[metric],
                kind=KINDS[int(rng.integers(len(KINDS)))],
                values=tuple(round(base * float(rng.uniform(0.6, 1.4)), 1) for _ in range(5)),
                font=int(rng.integers(4)),
                title_size=float(rng.uniform(0.085, 0.11)),
                centered=bool(rng.random() < 0.3),
                band=bool(rng.random() < 0.35),
                palette=int(rng.integers(4)),
            )
        )
    return pages


def write_pdf(path: Path, pages: list[ReportPage]) -> None:
    width, height = PAGE_POINTS
    c = canvas.Canvas(str(path), pagesize=PAGE_POINTS, invariant=1)  # invariant: byte-stable output
    for page in pages:
        buffer = io.BytesIO()
        render_report_page(page, (width, height)).save(buffer, format="PNG")
        c.drawImage(ImageReader(io.BytesIO(buffer.getvalue())), 0, 0, width, height)
        text = c.beginText(20, height - 40)
        text.setTextRenderMode(3)  # invisible: a text layer for search hits, the picture stays as drawn
        text.setFont("Helvetica", 10)
        for line in (page.title, page.paragraph):
            text.textLine(line)
        c.drawText(text)
        c.showPage()
    c.save()


def main() -> None:
    rng = np.random.default_rng(SEED)
    for filename, (company, metrics) in REPORTS.items():
        pages = report_pages(company, metrics, rng, start=0)  # page numbers restart in every report
        write_pdf(HERE / filename, pages)
        print(f"wrote {filename}: {', '.join(p.metric + ' (' + p.kind + ')' for p in pages)}")


if __name__ == "__main__":
    main()

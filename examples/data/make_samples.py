"""Regenerate the sample PDFs in this folder (small reports with text, tables and charts).

python examples/data/make_samples.py
"""

from __future__ import annotations

from pathlib import Path

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

HERE = Path(__file__).parent

REPORTS = {
    "annual_report_2023.pdf": (
        "Northwind Annual Report 2023",
        [
            ("Revenue by region", [("Europe", 120), ("Asia", 150), ("Americas", 90), ("Africa", 40)]),
            ("Operating costs", [("Staff", 80), ("Energy", 35), ("Logistics", 55), ("R&D", 60)]),
        ],
    ),
    "energy_outlook.pdf": (
        "Energy Outlook: consumption by sector",
        [
            ("Electricity use (TWh)", [("Industry", 160), ("Transport", 110), ("Homes", 70), ("Services", 65)]),
            ("Renewable share (%)", [("Wind", 28), ("Solar", 17), ("Hydro", 11), ("Biomass", 6)]),
        ],
    ),
    "hospital_survey.pdf": (
        "Regional Hospital Survey",
        [("Beds per hospital", [("North", 420), ("South", 380), ("East", 250), ("West", 310)])],
    ),
}


def draw_page(c: canvas.Canvas, title: str, heading: str, rows: list[tuple[str, int]], page: int) -> None:
    _, height = A4
    c.setFont("Helvetica-Bold", 18)
    c.drawString(60, height - 70, title)
    c.setFont("Helvetica", 11)
    c.drawString(60, height - 95, f"Section {page}: {heading}")
    text = c.beginText(60, height - 125)
    text.setFont("Helvetica", 10)
    for line in (
        f"This section summarises {heading.lower()} for the reporting period.",
        "Figures are rounded; the table lists the values and the chart compares them.",
        "All numbers are synthetic and exist only to exercise the retrieval pipeline.",
    ):
        text.textLine(line)
    c.drawText(text)
    top = height - 200
    c.setFont("Helvetica-Bold", 10)
    c.drawString(70, top, "Item")
    c.drawString(260, top, "Value")
    c.setFont("Helvetica", 10)
    for r, (label, value) in enumerate(rows, 1):
        y = top - 20 * r
        c.rect(60, y - 5, 300, 20)
        c.drawString(70, y, label)
        c.drawString(260, y, str(value))
    base, scale = 180, 300 / max(v for _, v in rows)
    palette = [colors.HexColor(h) for h in ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")]
    for b, (label, value) in enumerate(rows):
        x = 80 + 110 * b
        c.setFillColor(palette[b % len(palette)])
        c.rect(x, base, 60, value * scale, fill=1, stroke=0)
        c.setFillColor(colors.black)
        c.drawString(x, base - 15, label)
    c.drawString(60, 60, f"page {page}")
    c.showPage()


def main() -> None:
    for filename, (title, sections) in REPORTS.items():
        c = canvas.Canvas(str(HERE / filename), pagesize=A4, invariant=1)  # invariant: byte-stable output
        for page, (heading, rows) in enumerate(sections, 1):
            draw_page(c, title, heading, rows, page)
        c.save()


if __name__ == "__main__":
    main()

"""Draw a :class:`~sap_rag.train.pages.ReportPage` as an RGB image with PIL (fast: a few ms a page).

The fonts are the DejaVu / STIX TrueType files that ship with matplotlib, so rendering needs no
system fonts. Sizes are relative to the page width, so one page renders alike at any resolution.
"""

from __future__ import annotations

import functools
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .pages import YEARS, Fact, FactsPage, ReportPage

__all__ = ["FONTS", "PAGE_SIZE", "render_facts_page", "render_page", "render_report_page"]

PAGE_SIZE = (336, 476)  # 12 x 17 tokens of 28 px: one A4-shaped page of a ColQwen2 with a 204-token budget
# (regular, bold) file names per family
FONTS = (
    ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"),
    ("DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf"),
    ("DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf"),
    ("STIXGeneral.ttf", "STIXGeneralBol.ttf"),
)
# (title colour, title band colour, bar colours...): dark ink on light bands, one polarity for a small model
_PALETTES = (
    ("#1f4e79", "#dbe5f1", "#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3"),
    ("#7a1f1f", "#f2dcdc", "#C44E52", "#8172B3", "#4C72B0", "#DD8452", "#55A868"),
    ("#1f5e3a", "#dcefe2", "#55A868", "#4C72B0", "#C44E52", "#DD8452", "#8172B3"),
    ("#333333", "#e6e6e6", "#8172B3", "#55A868", "#DD8452", "#4C72B0", "#C44E52"),
)


@functools.cache
def _font(family: int, bold: bool, size: int) -> ImageFont.FreeTypeFont:
    import matplotlib

    directory = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return ImageFont.truetype(str(directory / FONTS[family % len(FONTS)][int(bold)]), size=max(size, 6))


def _text_width(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont) -> float:
    return draw.textlength(text, font=font)


def _wrap_to(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont, width: float) -> list[str]:
    chars = max(8, int(len(text) * width / max(_text_width(draw, text, font), 1.0)))
    return textwrap.wrap(text, width=chars)


def _title_and_footer(
    draw: ImageDraw.ImageDraw,
    page: ReportPage | FactsPage,
    size: tuple[int, int],
    *,
    top: float,
    spacing: float,
    band_pad: float,
    footer_up: float,
) -> tuple[float, str, list[str]]:
    """Draw a page's title (on its band, if any) and its "page N" footer; return the y below the
    title, the palette's text colour and its chart colours. Lengths are in units of the 336-pixel
    base page."""
    width, height = size
    u = width / 336
    dark, light, *colors = _PALETTES[page.palette % len(_PALETTES)]
    margin = 18 * u
    y = top * u
    title_font = _font(page.font, True, round(page.title_size * width))
    lines = _wrap_to(draw, page.title, title_font, width - 2 * margin)
    line_height = title_font.size * spacing
    if page.band:
        draw.rectangle((0, 0, width, y + line_height * len(lines) + band_pad * u), fill=light)
    for line in lines:
        x = (width - _text_width(draw, line, title_font)) / 2 if page.centered else margin
        draw.text((x, y), line, font=title_font, fill=dark)
        y += line_height
    footer = _font(page.font, False, round(9 * u))
    label = f"page {page.index + 1}"
    draw.text(
        ((width - _text_width(draw, label, footer)) / 2, height - footer_up * u), label, font=footer, fill="#666666"
    )
    return y, dark, colors


def render_report_page(page: ReportPage, size: tuple[int, int] = PAGE_SIZE) -> Image.Image:
    """Render ``page`` as an RGB image of ``size`` (width, height) pixels."""
    width, height = size
    u = width / 336  # one unit = one pixel of the base page
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    margin = 18 * u
    y, _, colors = _title_and_footer(draw, page, size, top=16, spacing=1.25, band_pad=8, footer_up=20)
    if page.kind == "cover":  # the title alone: the training curriculum's first stage
        return image
    y += 14 * u
    body = _font(page.font, False, round(10.5 * u))
    for line in _wrap_to(draw, page.paragraph, body, width - 2 * margin):
        draw.text((margin, y), line, font=body, fill="#222222")
        y += body.size * 1.3
    y += 10 * u
    if page.kind in ("table", "mixed"):
        y = _table(draw, page, margin, y, width - 2 * margin, u)
    if page.kind in ("chart", "mixed"):
        _chart(draw, page, margin, y + 6 * u, width - 2 * margin, height - 40 * u - y, u, colors)
    if page.kind == "text":
        extra = " ".join(f"In {year} the {page.metric} was {v:g} {page.unit}." for year, v in zip(YEARS, page.values))
        for line in _wrap_to(draw, extra, body, width - 2 * margin):
            draw.text((margin, y), line, font=body, fill="#222222")
            y += body.size * 1.3
    return image


def render_page(page: ReportPage | FactsPage, size: tuple[int, int] = PAGE_SIZE) -> Image.Image:
    """Render a page of either style (:func:`render_report_page` or :func:`render_facts_page`)."""
    if isinstance(page, FactsPage):
        return render_facts_page(page, size)
    return render_report_page(page, size)


def render_facts_page(page: FactsPage, size: tuple[int, int] = PAGE_SIZE) -> Image.Image:
    """Render a ``facts`` page: the company's title, then one block per fact, each headed by its metric."""
    width, height = size
    u = width / 336
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    margin = 18 * u
    y, dark, colors = _title_and_footer(draw, page, size, top=14, spacing=1.2, band_pad=6, footer_up=18)
    if page.kind == "cover":  # the title alone, as for report pages
        return image
    y += 12 * u
    bottom = height - 24 * u
    # The blocks share the space left: 2 or 3 facts on every page of the same height.
    block = (bottom - y) / max(3, len(page.facts))
    for fact in page.facts:
        # The heading's size is the company's; a long metric name is set smaller to fit the width.
        size = round(page.heading_size * width)
        heading = _font(page.font, True, size)
        room = width - 2 * margin
        if _text_width(draw, fact.metric, heading) > room:
            heading = _font(page.font, True, int(size * room / _text_width(draw, fact.metric, heading)))
        draw.text((margin, y), fact.metric, font=heading, fill=dark)
        top = y + heading.size * 1.25
        _fact_body(draw, page.font, fact, margin, top, width - 2 * margin, y + block - 8 * u - top, u, colors)
        y += block
    return image


def _fact_body(
    draw: ImageDraw.ImageDraw, font: int, fact: Fact, x: float, y: float, w: float, h: float, u: float, colors
) -> None:
    """One fact's values under its heading: a one-row table, a small bar chart, or a sentence."""
    small = _font(font, False, round(9 * u))
    if fact.kind == "table":
        row = small.size * 1.7
        cell = w / len(YEARS)
        for r, texts in enumerate(([str(year) for year in YEARS], [f"{v:g}" for v in fact.values])):
            for c, text in enumerate(texts):
                left, top = x + c * cell, y + r * row
                draw.rectangle(
                    (left, top, left + cell, top + row), outline="#555555", fill="#e8e8e8" if r == 0 else None
                )
                draw.text(
                    (left + (cell - _text_width(draw, text, small)) / 2, top + (row - small.size) / 2),
                    text,
                    font=small,
                    fill="black",
                )
    elif fact.kind == "chart":
        base = y + max(h, 30 * u) - small.size * 1.5
        peak = max(fact.values) * 1.05
        slot = w / len(YEARS)
        for i, (year, value) in enumerate(zip(YEARS, fact.values)):
            left = x + i * slot + slot * 0.2
            draw.rectangle(
                (left, base - (base - y) * value / peak, left + slot * 0.6, base), fill=colors[i % len(colors)]
            )
            label = str(year)
            draw.text(
                (left + slot * 0.3 - _text_width(draw, label, small) / 2, base + 2 * u), label, font=small, fill="black"
            )
    else:
        body = _font(font, False, round(10 * u))
        for line in _wrap_to(draw, f"{fact.sentence} ({fact.unit})", body, w)[:3]:
            draw.text((x, y), line, font=body, fill="#222222")
            y += body.size * 1.3


def _table(draw: ImageDraw.ImageDraw, page: ReportPage, x: float, y: float, w: float, u: float) -> float:
    """A two-row table (header: metric and years; row: unit and values); returns the y below it."""
    font = _font(page.font, False, round(10 * u))
    bold = _font(page.font, True, round(10 * u))
    row = font.size * 1.8
    first = w * 0.3
    cell = (w - first) / len(YEARS)
    headers = [page.metric, *(str(year) for year in YEARS)]
    cells = [page.unit, *(f"{v:g}" for v in page.values)]
    for r, texts in enumerate((headers, cells)):
        for c, text in enumerate(texts):
            left = x if c == 0 else x + first + (c - 1) * cell
            right = x + first if c == 0 else left + cell
            top = y + r * row
            draw.rectangle((left, top, right, top + row), outline="#555555", fill="#e8e8e8" if r == 0 else None)
            f = bold if r == 0 else font
            tx = left + (right - left - _text_width(draw, text, f)) / 2
            draw.text((tx, top + (row - f.size) / 2), text, font=f, fill="black")
    return y + 2 * row + 12 * u


def _chart(
    draw: ImageDraw.ImageDraw,
    page: ReportPage,
    x: float,
    y: float,
    w: float,
    h: float,
    u: float,
    colors: list[str],
) -> None:
    """A bar chart of the values by year, titled with the metric, with a value axis."""
    h = max(h, 60 * u)
    title = _font(page.font, True, round(11 * u))
    small = _font(page.font, False, round(9 * u))
    draw.text((x + (w - _text_width(draw, page.metric, title)) / 2, y), page.metric, font=title, fill="black")
    top, bottom = y + title.size * 1.6, y + h - small.size * 1.8
    left, right = x + 34 * u, x + w
    draw.line((left, top, left, bottom), fill="black", width=max(1, round(u)))
    draw.line((left, bottom, right, bottom), fill="black", width=max(1, round(u)))
    peak = max(page.values) * 1.1
    draw.text((x, top), f"{peak:.0f}", font=small, fill="#444444")
    draw.text((x, bottom - small.size), "0", font=small, fill="#444444")
    slot = (right - left) / len(YEARS)
    for i, (year, value) in enumerate(zip(YEARS, page.values)):
        bar_left = left + i * slot + slot * 0.2
        bar_top = bottom - (bottom - top) * value / peak
        draw.rectangle((bar_left, bar_top, bar_left + slot * 0.6, bottom), fill=colors[i % len(colors)])
        label = str(year)
        draw.text(
            (bar_left + slot * 0.3 - _text_width(draw, label, small) / 2, bottom + 3 * u),
            label,
            font=small,
            fill="black",
        )

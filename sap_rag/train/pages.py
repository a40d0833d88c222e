"""Content of the synthetic report pages the toy model is trained and evaluated on.

A page is about one (company, metric) pair: a title naming both, a paragraph, and a table, a bar
chart, both, or more text. Within one generated corpus every (company, metric) pair occurs on
exactly one page, so each question (which names the company and the metric) has exactly one page
that answers it. Pages of the same company (other metrics) and of the same metric (other companies)
are the hard negatives. Different seeds give different pairs, numbers, layouts, fonts and sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["COMPANIES", "KINDS", "METRICS", "YEARS", "ReportPage", "make_pages", "vocabulary_text"]

COMPANIES = (
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
    "Kestrel Airlines",
    "Lumen Pharma",
    "Meridian Shipping",
    "Nimbus Software",
    "Orchid Retail",
    "Pioneer Steel",
    "Quartz Insurance",
    "Redwood Paper",
    "Sierra Water",
    "Tundra Motors",
)
METRICS = (
    ("revenue", "million EUR"),
    ("profit", "million EUR"),
    ("emissions", "kt CO2"),
    ("employees", "thousand"),
    ("water use", "million m3"),
    ("research spending", "million EUR"),
    ("customers", "million"),
    ("energy use", "GWh"),
)
KINDS = ("table", "chart", "mixed", "text")
YEARS = (2019, 2020, 2021, 2022, 2023)

_QUESTIONS = (
    "What was the {metric} of {company} in {year}?",
    "In which year was the {metric} of {company} highest?",
    "How did the {metric} of {company} change between {first} and {last}?",
    "{company} {metric} {year}",
    "Show the {metric} figures of {company}.",
    "Which page reports the {metric} of {company}?",
)


@dataclass(frozen=True)
class ReportPage:
    """One page: its content and how it is drawn (layout, font, sizes, colours)."""

    index: int
    company: str
    metric: str
    unit: str
    kind: str
    values: tuple[float, ...]  # one per year in YEARS
    font: int  # index into the renderer's font families
    title_size: float  # title height relative to the page width
    centered: bool
    band: bool  # a coloured band behind the title
    palette: int

    @property
    def title(self) -> str:
        return f"{self.company}: {self.metric}"

    @property
    def paragraph(self) -> str:
        trend = "rose" if self.values[-1] > self.values[0] else "fell"
        return (
            f"In {YEARS[-1]} {self.company} reported {self.metric} of {self.values[-1]:g} {self.unit}. "
            f"Compared with {YEARS[0]}, {self.metric} {trend} as the group expanded its operations."
        )

    def question(self, variant: int) -> tuple[str, str]:
        """A question this page (and no other page of its corpus) answers, and its answer."""
        template = _QUESTIONS[variant % len(_QUESTIONS)]
        year_index = (variant // len(_QUESTIONS) + self.index) % len(YEARS)
        text = template.format(
            metric=self.metric, company=self.company, year=YEARS[year_index], first=YEARS[0], last=YEARS[-1]
        )
        if "highest" in template:
            answer = str(YEARS[int(np.argmax(self.values))])
        elif "{year}" in template:
            answer = f"{self.values[year_index]:g} {self.unit}"
        else:
            answer = ", ".join(f"{y}: {v:g}" for y, v in zip(YEARS, self.values))
        return text, answer


def make_pages(
    num_pages: int, seed: int, *, num_fonts: int = 4, start: int = 0, title_sizes: tuple[float, float] = (0.085, 0.11)
) -> list[ReportPage]:
    """``num_pages`` pages with distinct (company, metric) pairs, deterministic per ``seed``.

    At most ``len(COMPANIES) * len(METRICS)`` pages (160). Pages come in runs of two or three per
    company so that a corpus holds the hard negatives a reader must tell apart. ``title_sizes`` is
    the range of the title's font size as a fraction of the page width (0.1 of a 252-px page is one
    28-px token row per line of title: big enough for a small model to read).
    """
    limit = len(COMPANIES) * len(METRICS)
    if not 1 <= num_pages <= limit:
        raise ValueError(f"num_pages must be between 1 and {limit}, got {num_pages}")
    rng = np.random.default_rng(seed)
    pairs: list[tuple[int, int]] = []
    companies = rng.permutation(len(COMPANIES))
    per_company = [list(rng.permutation(len(METRICS))) for _ in COMPANIES]
    while len(pairs) < num_pages:
        for c in companies:
            take = int(rng.integers(2, 4))
            for _ in range(take):
                if per_company[c] and len(pairs) < num_pages:
                    pairs.append((int(c), int(per_company[c].pop())))
    pages = []
    for i, (c, m) in enumerate(pairs):
        metric, unit = METRICS[m]
        base = float(rng.uniform(20, 900))
        values = tuple(round(base * float(rng.uniform(0.6, 1.4)), 1) for _ in YEARS)
        pages.append(
            ReportPage(
                index=start + i,
                company=COMPANIES[c],
                metric=metric,
                unit=unit,
                kind=KINDS[int(rng.integers(len(KINDS)))],
                values=values,
                font=int(rng.integers(num_fonts)),
                title_size=float(rng.uniform(*title_sizes)),
                centered=bool(rng.random() < 0.3),
                band=bool(rng.random() < 0.35),
                palette=int(rng.integers(4)),
            )
        )
    return pages


def vocabulary_text() -> list[str]:
    """Lines covering every word the pages and questions use (for a word-level tokenizer)."""
    lines = [c for c in COMPANIES] + [f"{m} {u}" for m, u in METRICS]
    lines += [q for q in _QUESTIONS]
    lines.append(ReportPage(0, "x", "y", "z", "text", (1.0,) * 5, 0, 0.06, False, False, 0).paragraph)
    lines.append(" ".join(str(y) for y in YEARS) + " year value page table chart report figures")
    return lines

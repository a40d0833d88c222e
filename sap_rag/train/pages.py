"""Content of the synthetic report pages the toy model is trained and evaluated on.

Two styles. ``report`` (:class:`ReportPage`, :func:`make_pages`):

A page is about one (company, metric) pair: a title naming both, a paragraph, and a table, a bar
chart, both, or more text. Within one generated corpus every (company, metric) pair occurs on
exactly one page, so each question (which names the company and the metric) has exactly one page
that answers it. Pages of the same company (other metrics) and of the same metric (other companies)
are the hard negatives. Different seeds give different pairs, numbers, layouts, fonts and sizes.

``facts`` (:class:`FactsPage`, :func:`make_fact_pages`): a page holds two or three facts, each a
block headed by its metric (a table of values by year, a chart with labelled bars, or a line of
text), under a title that names only the company. A company's pages share the title and the
layout (font, sizes, colours) and differ in the facts they hold; each (company, metric) fact sits
on exactly one page of a corpus. A question names a company and one metric, so what tells its page
from the company's other pages is one block of the page, not the title: the answer is local.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "COMPANIES",
    "FACT_KINDS",
    "KINDS",
    "METRICS",
    "YEARS",
    "Fact",
    "FactsPage",
    "ReportPage",
    "make_fact_pages",
    "make_pages",
    "max_pages",
    "vocabulary_text",
]

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


FACT_KINDS = ("table", "chart", "text")
# How a company's 8 metrics are split over its pages (facts per page), one split drawn per company.
_FACT_SPLITS = ((3, 3, 2), (3, 2, 3), (2, 3, 3))


def _question(template: str, metric: str, company: str, year_index: int, unit: str, values) -> tuple[str, str]:
    text = template.format(metric=metric, company=company, year=YEARS[year_index], first=YEARS[0], last=YEARS[-1])
    if "highest" in template:
        answer = str(YEARS[int(np.argmax(values))])
    elif "{year}" in template:
        answer = f"{values[year_index]:g} {unit}"
    else:
        answer = ", ".join(f"{y}: {v:g}" for y, v in zip(YEARS, values))
    return text, answer


@dataclass(frozen=True)
class Fact:
    """One fact block of a :class:`FactsPage`: a metric's values by year, drawn as ``kind``."""

    metric: str
    unit: str
    values: tuple[float, ...]  # one per year in YEARS
    kind: str  # one of FACT_KINDS

    @property
    def sentence(self) -> str:
        trend = "rose" if self.values[-1] > self.values[0] else "fell"
        return f"In {YEARS[-1]} the {self.metric} was {self.values[-1]:g} {self.unit}; it {trend} since {YEARS[0]}."


@dataclass(frozen=True)
class FactsPage:
    """One page of the ``facts`` style: a company title over two or three fact blocks.

    The layout fields (font, sizes, colours) are the company's, shared by all its pages.
    """

    index: int
    company: str
    facts: tuple[Fact, ...]
    font: int
    title_size: float  # title height relative to the page width
    heading_size: float  # fact heading height relative to the page width
    centered: bool
    band: bool
    palette: int

    kind: str = "facts"

    @property
    def title(self) -> str:
        return self.company

    @property
    def metric(self) -> str:
        """The page's metrics, joined (a page is about several)."""
        return ", ".join(fact.metric for fact in self.facts)

    @property
    def paragraph(self) -> str:
        return " ".join(f"{fact.metric}: {fact.sentence}" for fact in self.facts)

    def question(self, variant: int) -> tuple[str, str]:
        """A question about one of the page's facts (``variant`` picks the fact, template and year)
        that this page and no other page of its corpus answers, and its answer."""
        fact = self.facts[variant % len(self.facts)]
        template = _QUESTIONS[(variant // len(self.facts) + self.index) % len(_QUESTIONS)]
        year_index = (variant // (len(self.facts) * len(_QUESTIONS)) + self.index) % len(YEARS)
        return _question(template, fact.metric, self.company, year_index, fact.unit, fact.values)


def max_pages(style: str = "report") -> int:
    """The most pages one corpus of ``style`` holds (distinct (company, metric) pairs / facts).

    >>> max_pages("report"), max_pages("facts")
    (160, 60)
    """
    if style == "facts":
        return len(COMPANIES) * len(_FACT_SPLITS[0])
    return len(COMPANIES) * len(METRICS)


def make_fact_pages(num_pages: int, seed: int, *, num_fonts: int = 4, start: int = 0) -> list[FactsPage]:
    """``num_pages`` pages of the ``facts`` style, deterministic per ``seed`` (at most 60).

    Companies are taken in a random order; each brings its three pages together (its 8 metrics
    shuffled and split 3 + 3 + 2 in some order), so a corpus holds every page's distractors: pages
    with the same title and layout and other facts. The last company may be cut short by ``num_pages``.
    """
    limit = max_pages("facts")
    if not 1 <= num_pages <= limit:
        raise ValueError(f"num_pages must be between 1 and {limit} for the facts style, got {num_pages}")
    rng = np.random.default_rng([seed, 31337])
    pages: list[FactsPage] = []
    for c in rng.permutation(len(COMPANIES)):
        layout = dict(
            font=int(rng.integers(num_fonts)),
            title_size=float(rng.uniform(0.085, 0.1)),
            heading_size=float(rng.uniform(0.075, 0.09)),
            centered=bool(rng.random() < 0.3),
            band=bool(rng.random() < 0.35),
            palette=int(rng.integers(4)),
        )
        metrics = [int(m) for m in rng.permutation(len(METRICS))]
        split = _FACT_SPLITS[int(rng.integers(len(_FACT_SPLITS)))]
        offset = 0
        for size in split:
            facts = []
            for m in metrics[offset : offset + size]:
                metric, unit = METRICS[m]
                base = float(rng.uniform(20, 900))
                values = tuple(round(base * float(rng.uniform(0.6, 1.4)), 1) for _ in YEARS)
                facts.append(Fact(metric, unit, values, FACT_KINDS[int(rng.integers(len(FACT_KINDS)))]))
            offset += size
            if len(pages) < num_pages:
                pages.append(FactsPage(index=start + len(pages), company=COMPANIES[c], facts=tuple(facts), **layout))
        if len(pages) >= num_pages:
            break
    return pages


def vocabulary_text() -> list[str]:
    """Lines covering every word the pages and questions use (for a word-level tokenizer)."""
    lines = [c for c in COMPANIES] + [f"{m} {u}" for m, u in METRICS]
    lines += [q for q in _QUESTIONS]
    lines.append(ReportPage(0, "x", "y", "z", "text", (1.0,) * 5, 0, 0.06, False, False, 0).paragraph)
    lines.append(" ".join(str(y) for y in YEARS) + " year value page table chart report figures")
    return lines

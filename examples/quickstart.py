"""Quickstart: encode pages, prune them with SAP, and compare MaxSim scores before and after.

Runs offline on a tiny random-weight model by default: the numbers show the plumbing works, not
retrieval quality. With network and a GPU, pass a real model:

    python examples/quickstart.py --model vidore/colqwen2-v1.0
"""

from __future__ import annotations

import argparse
import logging

from PIL import Image, ImageDraw

import sap_rag


def sample_page(title: str, rows: list[tuple[str, int]], size: tuple[int, int] = (420, 560)) -> Image.Image:
    """A small document page: a title, a few lines of text, a table and a bar chart."""
    page = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(page)
    draw.text((20, 15), title, fill="black")
    for i in range(5):
        draw.line([20, 45 + 14 * i, size[0] - 40 - 30 * (i % 3), 45 + 14 * i], fill=(90, 90, 90), width=3)
    top = 130
    for r, (label, value) in enumerate(rows):
        y = top + 22 * r
        draw.rectangle([20, y, 300, y + 22], outline="black")
        draw.text((26, y + 5), label, fill="black")
        draw.text((220, y + 5), str(value), fill="black")
    base = top + 22 * len(rows) + 180
    for b, (_, value) in enumerate(rows):
        x = 40 + 60 * b
        draw.rectangle([x, base - value, x + 40, base], fill=(40 + 50 * b, 90, 200 - 40 * b))
    return page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny:colqwen2", help="hub id, local checkpoint or tiny:<family>")
    parser.add_argument("--keep-ratio", type=float, default=0.1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    encoder = sap_rag.load_encoder(args.model)
    if args.model.startswith("tiny:"):
        print("Using a tiny random-weight model: scores below show plumbing, not retrieval quality.\n")
    print(f"encoder: {encoder.family}, {encoder.num_layers} layers, SAP window {list(encoder.window)}")

    pages = [
        sample_page("Annual report 2023: revenue", [("Europe", 120), ("Asia", 150), ("Americas", 90)]),
        sample_page("Energy use by sector", [("Industry", 160), ("Transport", 110), ("Homes", 70)]),
    ]
    encoded = encoder.encode_pages(pages)
    pruner = sap_rag.SAPPruner(keep_ratio=args.keep_ratio)
    pruned = [pruner.prune(page) for page in encoded]
    queries = ["What was the revenue in Asia in 2023?", "Which sector uses the most energy?"]
    query_vectors = encoder.encode_queries(queries)

    for page, kept in zip(encoded, pruned):
        print(f"page: {page.num_tokens} visual tokens -> {kept.num_kept} anchors kept ({kept.kept_ratio:.0%})")
    full_scores = sap_rag.maxsim_matrix(query_vectors, [page.embeddings for page in encoded])
    kept_scores = sap_rag.maxsim_matrix(query_vectors, [kept.embeddings for kept in pruned])
    print("\nquery                                    page  MaxSim full  MaxSim pruned  retention")
    for q, query in enumerate(queries):
        for p in range(len(pages)):
            full, kept = float(full_scores[q, p]), float(kept_scores[q, p])
            # Retention is only meaningful for a positive full score (random weights can give negatives).
            retention = f"{kept / full:9.1%}" if full > 0 else "      n/a"
            print(f"{query[:40]:40s} {p:4d}  {full:11.3f}  {kept:13.3f}  {retention}")


if __name__ == "__main__":
    main()

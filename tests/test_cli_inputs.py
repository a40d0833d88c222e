"""Bad inputs through the CLI and the Python API: one clear line, and the index unchanged.

"Unchanged" means the committed content: documents, their pages and vectors, and search results
are identical, and so are the index's own files (manifest, registry, images); the Qdrant Edge
shard's files legitimately change when an index is opened and closed (the engine rewrites its
WAL and segment metadata), so they are compared through what they return, not byte for byte.
"""

from __future__ import annotations

import json
import os
import pathlib
import stat

import pytest
from _index_utils import tree_listing
from conftest import make_page
from PIL import Image
from test_ingest import write_pdf

from sap_rag.cli import main
from sap_rag.errors import InvalidInputError, ModelLoadError, NothingToIndexError, UnreadableInputError
from sap_rag.index import SAPIndex
from sap_rag.ingest import discover, load_document, load_image, render_pdf
from sap_rag.ingest.images import MAX_ASPECT_RATIO


def cli(capsys, argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def snapshot(index: pathlib.Path, capsys) -> dict:
    code, out, _ = cli(capsys, ["info", "--index", index, "--json", "--documents"])
    assert code == 0
    info = json.loads(out)
    code, out, _ = cli(capsys, ["search", "revenue", "--index", index, "-k", "5", "--json"])
    assert code == 0
    return {"info": info, "hits": json.loads(out), "files": tree_listing(index)}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """An index of one 2-page PDF, made once through the CLI."""
    root = tmp_path_factory.mktemp("built")
    write_pdf(root / "report.pdf", pages=2, text="Revenue by region")
    assert main(["index", str(root / "report.pdf"), "--index", str(root / "idx")]) == 0
    return root / "idx"


def unreadable(path: pathlib.Path, monkeypatch) -> pathlib.Path:
    """Mode 000; as root (who reads anything) reading it is made to fail as it would for a user."""
    path.chmod(0)
    if os.geteuid() == 0:
        real = pathlib.Path.read_bytes

        def read_bytes(self):
            if stat.S_IMODE(os.stat(self).st_mode) == 0:
                raise PermissionError(13, "Permission denied", str(self))
            return real(self)

        monkeypatch.setattr(pathlib.Path, "read_bytes", read_bytes)
    return path


def non_utf8_name(folder: pathlib.Path) -> pathlib.Path:
    name = os.fsencode(folder) + b"/caf\xe9.png"
    make_page(3).save(name.decode("utf-8", "surrogateescape"))
    return pathlib.Path(os.fsdecode(name))


def test_bad_files_are_one_line_errors_and_change_nothing(built, tmp_path, capsys, monkeypatch):
    before = snapshot(built, capsys)
    text = tmp_path / "notes.txt"
    text.write_text("plain text")
    cases = {
        unreadable(write_pdf(tmp_path / "locked.pdf", pages=1), monkeypatch): "cannot be read (Permission denied)",
        non_utf8_name(tmp_path): "the file name is not valid UTF-8",
        text: "supported types: .pdf, .png",
    }
    for path, message in cases.items():
        code, _, err = cli(capsys, ["index", path, "--index", built])
        assert code == 1 and err.startswith("error: ") and err.count("\n") == 1, err
        assert message in err and "\\udc" not in err
        assert snapshot(built, capsys) == before
        with SAPIndex.open(built) as index:  # the same through the Python API
            with pytest.raises(UnreadableInputError, match=message.split(" (")[0]):
                index.add_documents([path])
        assert snapshot(built, capsys) == before


def test_skip_errors_skips_unreadable_files_and_indexes_the_rest(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "docs"
    folder.mkdir()
    write_pdf(folder / "good.pdf", pages=1)
    unreadable(write_pdf(folder / "locked.pdf", pages=1), monkeypatch)
    non_utf8_name(folder)
    code, out, err = cli(capsys, ["index", folder, "--index", tmp_path / "idx", "--skip-errors"])
    assert code == 0 and "indexed 1 documents, 1 pages" in out
    assert "skipped 2 unreadable files" in err and "locked.pdf" in err and "caf\\xe9.png" in err


def test_a_failed_first_run_leaves_no_index_behind(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "docs"
    folder.mkdir()
    unreadable(write_pdf(folder / "locked.pdf", pages=1), monkeypatch)
    index = tmp_path / "idx"
    code, _, err = cli(capsys, ["index", folder, "--index", index])
    assert code == 1 and "cannot be read" in err and not index.exists()
    code, _, err = cli(capsys, ["index", folder, "--index", index, "--skip-errors"])  # every file skipped
    assert code == 1 and "no index was created" in err and not index.exists()
    empty = tmp_path / "empty"  # an empty folder given as --index is left empty
    empty.mkdir()
    assert cli(capsys, ["index", folder, "--index", empty])[0] == 1 and list(empty.iterdir()) == []
    # the retry with the intended model is not refused as a model mismatch
    write_pdf(folder / "good.pdf", pages=1)
    code, out, _ = cli(capsys, ["index", folder / "good.pdf", "--index", index, "--model", "tiny:colqwen2"])
    assert code == 0 and "indexed 1 documents" in out


def test_nothing_indexable_says_so_with_the_supported_types(tmp_path, capsys):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("x")
    (folder / "b.docx").write_bytes(b"PK\x03\x04")
    with pytest.raises(NothingToIndexError, match=r"found only other files \(a\.txt, b\.docx\).*\.pdf, \.png"):
        discover([folder])
    with pytest.raises(NothingToIndexError, match="supported types"):
        discover([tmp_path / "docs"], include=["*.pdf"])
    code, out, err = cli(capsys, ["index", folder, "--index", tmp_path / "idx"])
    assert code == 1 and "nothing to index" in err and ".webp" in err and "indexed 0" not in out
    assert not (tmp_path / "idx").exists()


def test_very_long_and_very_wide_pages_are_padded_and_indexed(tmp_path, capsys, tiny_encoder):
    from reportlab.pdfgen import canvas

    pdf = tmp_path / "banner.pdf"
    c = canvas.Canvas(str(pdf), pagesize=(14000, 40))
    c.drawString(10, 15, "a very wide banner")
    c.save()
    strip = tmp_path / "strip.png"
    Image.new("RGB", (4000, 10), "white").save(strip)
    tall = tmp_path / "tall.png"
    Image.new("RGB", (10, 4000), "black").save(tall)
    (page,) = render_pdf(pdf, dpi=72)
    assert page.size[0] == pytest.approx(14000, abs=1) and page.size[0] / page.size[1] <= MAX_ASPECT_RATIO
    padded = load_image(strip)
    assert padded.size == (4000, 200)
    # the original pixels sit in the middle of a white band
    tall_padded = load_image(tall)
    assert tall_padded.size == (200, 4000) and padded.getpixel((2000, 100)) == (255, 255, 255)
    assert tall_padded.getpixel((100, 2000)) == (0, 0, 0) and tall_padded.getpixel((5, 2000)) == (255, 255, 255)
    code, out, _ = cli(capsys, ["index", tmp_path, "--index", tmp_path / "idx"])
    assert code == 0 and "indexed 3 documents, 3 pages" in out
    with SAPIndex.open(tmp_path / "idx", encoder=tiny_encoder) as index:
        assert index.stats().pages == 3 and len(index.search("banner", k=3)) == 3
        info = index.add_images([Image.new("RGB", (3000, 5), "white")], doc_id="thin")
        assert info.num_pages == 1


def test_images_without_pixels_and_bad_dpi_are_refused(tmp_path, tiny_encoder):
    with pytest.raises(UnreadableInputError, match=r"no pixels \(0 x 0\)"):
        load_image(Image.new("RGB", (0, 0)))
    with pytest.raises(UnreadableInputError, match="no pixels"):
        load_image(Image.new("RGB", (0, 7)))
    with SAPIndex.create(tmp_path / "idx", encoder=tiny_encoder) as index:
        with pytest.raises(UnreadableInputError, match="no pixels"):
            index.add_images([make_page(0), Image.new("RGB", (0, 0))], doc_id="d")
        assert index.documents() == []
    pdf = write_pdf(tmp_path / "a.pdf", pages=1)
    for bad in (0, -72, 5000, float("nan"), "144"):
        with pytest.raises(InvalidInputError, match="dpi must be a number from 1 to"):
            render_pdf(pdf, dpi=bad)
        with pytest.raises(InvalidInputError, match="dpi"):
            load_document(pdf, dpi=bad)
    assert load_image(Image.new("RGB", (1, 1))).size == (32, 32)  # a tiny page is padded, not refused


def test_folder_links_are_followed_only_inside_the_folder(tmp_path, caplog):
    outside = tmp_path / "outside"
    outside.mkdir()
    write_pdf(outside / "secret.pdf", pages=1)
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    write_pdf(folder / "sub" / "real.pdf", pages=1)
    (folder / "inside-link.pdf").symlink_to(folder / "sub" / "real.pdf")
    (folder / "out-link.pdf").symlink_to(outside / "secret.pdf")
    (folder / "out-dir").symlink_to(outside, target_is_directory=True)
    (folder / "broken.pdf").symlink_to(tmp_path / "nowhere.pdf")
    with caplog.at_level("WARNING"):
        found = discover([folder])
    assert [p.resolve() for p in found] == [(folder / "sub" / "real.pdf").resolve()]  # the link is the same file
    warned = caplog.text
    assert "out-link.pdf: a symbolic link out of" in warned and "out-dir" in warned and "broken.pdf" in warned
    assert discover([folder / "out-link.pdf"]) == [folder / "out-link.pdf"]  # a path given directly is taken


def test_info_on_an_empty_index_prints_no_none_and_bytes_per_page_agree(tmp_path, capsys, built):
    with SAPIndex.create(tmp_path / "empty", dim=8):
        pass
    code, out, _ = cli(capsys, ["info", "--index", tmp_path / "empty", "--documents"])
    assert code == 0 and "None" not in out and "no documents" in out and "n/a" in out
    code, out, _ = cli(capsys, ["index", built.parent / "report.pdf", "--index", tmp_path / "idx"])
    summary = next(line for line in out.splitlines() if line.startswith("index: "))
    code, out, _ = cli(capsys, ["info", "--index", tmp_path / "idx"])
    per_page = next(line for line in out.splitlines() if "bytes_per_page" in line).split(":")[1].strip()
    assert f"{per_page} bytes per page" in summary


def test_info_lists_documents_and_delete_points_to_it(built, capsys):
    code, out, _ = cli(capsys, ["info", "--index", built, "--documents"])
    doc_id = json.loads(cli(capsys, ["info", "--index", built, "--json"])[1])["document_ids"][0]
    assert code == 0 and f"{doc_id}     2 pages  report.pdf" in out
    code, _, err = cli(capsys, ["delete", "0" * 24, "--index", built])
    assert code == 1 and f"sap-rag info --index {built} --documents" in err


def test_hits_carry_absolute_image_paths(built, capsys, monkeypatch):
    monkeypatch.chdir(built.parent)
    code, out, _ = cli(capsys, ["search", "revenue", "--index", built.name, "--json"])
    hits = json.loads(out)
    assert code == 0 and hits and all(pathlib.Path(h["image_path"]).is_absolute() for h in hits)
    assert all(pathlib.Path(h["image_path"]).is_file() for h in hits)


def test_an_unreachable_hub_model_fails_fast_with_what_to_do(tmp_path, capsys, monkeypatch):
    import sap_rag.encoders.loading as loading
    from sap_rag import load_encoder

    write_pdf(tmp_path / "a.pdf", pages=1)
    monkeypatch.setattr(loading, "_hub_reachable", False)
    with pytest.raises(ModelLoadError, match=r"cannot be reached \(no network\?\).*--model DIR"):
        load_encoder("someone/some-colqwen")
    code, _, err = cli(capsys, ["index", tmp_path / "a.pdf", "--index", tmp_path / "idx", "--model", "someone/x"])
    assert code == 1 and "cannot be reached" in err and "huggingface-cli download someone/x" in err
    assert not (tmp_path / "idx").exists()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE is set"):
        load_encoder("someone/some-colqwen")
    with pytest.raises(ModelLoadError, match="neither a checkpoint folder"):
        load_encoder("not a model name")

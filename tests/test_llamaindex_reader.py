"""SAPPageReader: one ImageDocument per page, with the file's hash, page number and page text."""

from __future__ import annotations

import base64
import io

import pytest

pytest.importorskip("llama_index.core")

from _li_fixtures import write_pdf
from conftest import make_page
from llama_index.core import SimpleDirectoryReader
from llama_index.core.schema import ImageDocument
from llama_index.retrievers.sap_rag import SAPPageReader
from PIL import Image

from sap_rag import InvalidInputError, UnreadableInputError
from sap_rag.ingest import content_id


@pytest.fixture
def folder(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    write_pdf(folder / "report.pdf", ["Revenue 2023 was 12 million", "Costs fell by 3 percent"])
    make_page(3).save(folder / "scan.png")
    return folder


def _image(doc: ImageDocument) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(doc.image)))


def test_one_image_document_per_page_with_hash_page_and_text(folder):
    pdf = folder / "report.pdf"
    docs = SAPPageReader().load_data(pdf, extra_info={"team": "finance"})

    assert [type(d) for d in docs] == [ImageDocument, ImageDocument]
    assert [d.metadata["page_number"] for d in docs] == [1, 2]
    assert {d.metadata["total_pages"] for d in docs} == {2}
    assert {d.metadata["file_hash"] for d in docs} == {content_id(pdf.read_bytes())}
    assert {d.metadata["file_path"] for d in docs} == {str(pdf.resolve())}
    assert docs[0].metadata["team"] == "finance"
    assert "Revenue 2023 was 12 million" in docs[0].text and "Costs fell" in docs[1].text
    # the rendered page at 144 dpi: 160 x 200 pt -> 320 x 400 px
    assert _image(docs[0]).size == (320, 400)
    assert len({d.doc_id for d in docs}) == 2

    (image,) = SAPPageReader().load_data(folder / "scan.png")
    assert image.text == "" and image.metadata["total_pages"] == 1
    assert _image(image).tobytes() == make_page(3).tobytes()


def test_an_edited_file_keeps_its_ids_and_changes_its_hashes(folder):
    pdf = folder / "report.pdf"
    before = SAPPageReader().load_data(pdf)
    write_pdf(pdf, ["Revenue 2023 was 14 million", "Costs fell by 3 percent"])
    after = SAPPageReader().load_data(pdf)
    # Same ids (a docstore upserts them), new hashes and metadata (the pipeline cache misses).
    assert [d.doc_id for d in after] == [d.doc_id for d in before]
    assert all(a.hash != b.hash for a, b in zip(after, before))
    assert after[0].metadata["file_hash"] != before[0].metadata["file_hash"]


def test_as_file_extractor_of_simple_directory_reader(folder):
    reader = SAPPageReader()
    docs = SimpleDirectoryReader(
        str(folder), file_extractor={".pdf": reader, ".png": reader}, filename_as_id=True
    ).load_data()
    assert sorted((d.metadata["file_name"], d.metadata["page_number"]) for d in docs) == [
        ("report.pdf", 1),
        ("report.pdf", 2),
        ("scan.png", 1),
    ]
    assert all(isinstance(d, ImageDocument) and d.image for d in docs)
    # SimpleDirectoryReader's own metadata and exclusions are kept
    assert all("last_modified_date" in d.metadata for d in docs)
    assert all("file_size" in d.excluded_llm_metadata_keys for d in docs)


def test_reader_is_where_llamahub_users_look():
    from llama_index.readers.sap_rag import SAPPageReader as FromReaders

    assert FromReaders is SAPPageReader


def test_bad_files_are_clear_errors(tmp_path):
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 not really")
    with pytest.raises(UnreadableInputError, match=r"broken\.pdf"):
        SAPPageReader().load_data(broken)
    with pytest.raises(UnreadableInputError, match="no such file"):
        SAPPageReader().load_data(tmp_path / "missing.pdf")

    class RemoteFS:
        protocol = ("s3",)

    with pytest.raises(InvalidInputError, match="local files only"):
        SAPPageReader().load_data(broken, fs=RemoteFS())


def test_importing_the_adapter_and_reading_a_page_is_quiet(folder):
    """Nothing on stderr: no llama-index "readers-file not found" line, no model or engine output."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from llama_index.readers.sap_rag import SAPPageReader\n"
        "import llama_index.retrievers.sap_rag\n"
        "docs = SAPPageReader().load_data(sys.argv[1])\n"
        "assert len(docs) == 2\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(folder / "report.pdf")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_paths_and_hashes_stay_out_of_prompts(folder):
    from llama_index.core.schema import MetadataMode

    (page, _) = SAPPageReader().load_data(folder / "report.pdf")
    for mode in (MetadataMode.LLM, MetadataMode.EMBED):
        content = page.get_content(metadata_mode=mode)
        assert str(folder) not in content and page.metadata["file_hash"] not in content
        assert "report.pdf" in content and "Revenue 2023" in content
    assert page.metadata["file_path"] == str(folder / "report.pdf")

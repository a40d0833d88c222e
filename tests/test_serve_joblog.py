"""The job log that lets ``GET /jobs/{id}`` answer across a restart: crafted and damaged files, links, size."""

from __future__ import annotations

import json

import pytest
from _serve_fixtures import shared_index  # noqa: F401  (session fixture)

from sap_rag import InvalidInputError


def test_finished_and_lost_jobs_are_read_back_and_bad_lines_skipped(tmp_path):
    from sap_rag.serve.joblog import JobLog

    log = JobLog(tmp_path / "state", keep=3)
    for i in range(5):
        log.queued(f"{i}-a")
        log.finished({"job_id": f"{i}-a", "state": "done", "results": [{"file": f"f{i}.pdf"}]})
    log.queued("9-lost")
    log.close()
    with open(tmp_path / "state" / "jobs.jsonl", "a") as handle:
        handle.write('not json\n[1, 2]\n{"event": "finished", "job_id": "x", "job": {"job_id": "other"}}\n')
        handle.write(json.dumps({"event": "queued", "job_id": "y" * 65}) + '\n{"event": "queued"')  # cut short
    again = JobLog(tmp_path / "state", keep=3)
    assert [again.lookup(f"{i}-a") is not None for i in range(5)] == [False, False, True, True, True]  # last 3
    assert again.lookup("4-a")["results"] == [{"file": "f4.pdf"}]
    assert again.lost("9-lost") and not again.lost("4-a") and again.lookup("x") is None
    again.close()
    assert len((tmp_path / "state" / "jobs.jsonl").read_text().splitlines()) == 4  # rewritten small at start
    third = JobLog(tmp_path / "state", keep=3)
    assert third.lost("9-lost") and third.lookup("2-a") is not None  # still known after another restart
    third.close()


def test_a_linked_state_folder_or_log_is_refused(tmp_path):
    from sap_rag.serve.joblog import JobLog

    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    with pytest.raises(InvalidInputError, match="link or not a folder"):
        JobLog(tmp_path / "link", keep=5)
    (tmp_path / "state").mkdir()
    (tmp_path / "elsewhere.txt").write_text("keep me\n")
    (tmp_path / "state" / "jobs.jsonl").symlink_to(tmp_path / "elsewhere.txt")
    with pytest.raises(InvalidInputError, match="not a plain file"):
        JobLog(tmp_path / "state", keep=5)
    assert (tmp_path / "elsewhere.txt").read_text() == "keep me\n"


def test_the_state_folder_may_not_be_inside_the_index(shared_index, toy_encoder, tmp_path):  # noqa: F811
    from _serve_fixtures import copy_index

    from sap_rag import SAPIndex
    from sap_rag.serve import ServeConfig
    from sap_rag.serve.service import IndexService

    path = copy_index(shared_index, tmp_path / "idx")
    with SAPIndex.open(path, encoder=toy_encoder, read_only=True) as index:
        with pytest.raises(InvalidInputError, match="inside the index"):
            IndexService(index, encoder=toy_encoder, config=ServeConfig(state_dir=path / "state"))
    assert not (path / "state").exists()

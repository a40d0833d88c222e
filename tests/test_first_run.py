"""A new user's first run, as processes: the README's command lines as typed, an index that opens its
model from any folder, and a quiet stderr unless ``--verbose``."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from conftest import TOY_CHECKPOINT

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "examples" / "data"
NOISE = ("Loading weights", "loss_type", "llama-index-readers-file")


def _venv_bin() -> Path:
    return Path(sys.executable).parent


def _env(cache: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of a user's shell: the venv's bin NOT on PATH (so only activation puts it there)."""
    env = dict(os.environ)
    venv_bin = str(_venv_bin())
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and p != venv_bin)
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    if cache is not None:
        env["SAP_RAG_CACHE_DIR"] = str(cache)
    env.update(extra)
    return env


def _sap_rag(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(_venv_bin() / "sap-rag"), *args], cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=300
    )


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def _code_lines(section: str) -> list[str]:
    """The lines of the section's ```bash blocks."""
    lines: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
        lines += [line.strip() for line in block.splitlines() if line.strip()]
    return lines


def _variants(line: str) -> list[list[str]]:
    """A README command line as argument lists: without its ``[optional]`` parts, and with all of them."""
    optional = re.findall(r"\[([^\]]+)\]", line)
    bare = shlex.split(re.sub(r"\s*\[[^\]]+\]", "", line), comments=True)
    if not optional:
        return [bare]
    return [bare, shlex.split(line.replace("[", "").replace("]", ""), comments=True)]


def _write_pairs(folder: Path) -> None:
    """pairs.jsonl: three questions about the sample reports, each with its page rendered to a PNG."""
    from sap_rag.ingest.pdf import render_pdf

    pages = folder / "pages"
    pages.mkdir()
    rows = [
        ("What was the revenue of Acme Industries in 2022?", "acme_industries_2023.pdf", 0),
        ("What was the water use of Borealis Energy in 2021?", "borealis_energy_2023.pdf", 1),
        ("How many customers did Cobalt Health have in 2023?", "cobalt_health_2023.pdf", 0),
    ]
    lines = []
    for i, (question, pdf, page) in enumerate(rows):
        image = render_pdf(SAMPLES / pdf, dpi=72)[page]
        image.save(pages / f"p{i}.png")
        lines.append(json.dumps({"query": question, "image": f"pages/p{i}.png"}))
    (folder / "pairs.jsonl").write_text("\n".join(lines) + "\n")


def _quiet(done: subprocess.CompletedProcess) -> None:
    for noise in NOISE:
        assert noise not in done.stderr, done.stderr[-2000:]


def test_the_readme_command_lines_work_as_typed_from_another_folder(tmp_path):
    """The set-up's activation line, then every line of the README's "Command line" block, run from a
    folder outside the repository with the README's inputs made there (the toy model as
    ``models/toy``, given relative as the demo gives it); then the index is searched from yet another
    folder, with the model moved, and as an index from before absolute model paths."""
    readme = (ROOT / "README.md").read_text()
    setup = _code_lines(_section(readme, "Set-up: the two commands"))
    # The set-up block says how to reach the commands it installed: the venv's activation, as typed.
    activate = [line.split("#")[0].strip() for line in setup if re.match(r"(source|\.) \.venv/bin/activate\b", line)]
    assert activate, "the README's set-up must say how to activate .venv before the sap-rag commands"
    venv = ROOT / ".venv"
    if not (venv / "bin" / "sap-rag").exists():  # tests run from another environment: activate that one
        venv = _venv_bin().parent
    assert (venv / "bin" / "activate").is_file()
    # Without activation the command is not found (what the README must not leave the user with).
    missing = subprocess.run(["bash", "-c", "sap-rag --help"], cwd=tmp_path, env=_env(), capture_output=True)
    assert missing.returncode == 127

    # The README's own inputs, made here: a model folder, the sample PDFs as reports/, pairs, a ViDoRe folder.
    shutil.copytree(TOY_CHECKPOINT, tmp_path / "models" / "toy")
    (tmp_path / "reports").mkdir()
    for name in ("acme_industries_2023.pdf", "borealis_energy_2023.pdf"):  # two reports keep it quick
        shutil.copy(SAMPLES / name, tmp_path / "reports" / name)
    _write_pairs(tmp_path)
    from sap_rag.eval.synthetic import make_synthetic_dataset

    make_synthetic_dataset(tmp_path / "data" / "vidore_v2" / "esg_reports_v2", num_pages=3, style="report")
    cache = tmp_path / "cache"  # empty: `index` loads the model and compiles its query side

    lines = [line for line in _code_lines(_section(readme, "Command line")) if line.startswith("sap-rag ")]
    assert [line.split()[1] for line in lines][:6] == ["index", "search", "info", "delete", "show", "calibrate"]
    script = f"cd {shlex.quote(str(venv.parent))} && {activate[0]} && cd {shlex.quote(str(tmp_path))} && "
    doc_ids: list[str] = []

    def run(argv: list[str]) -> tuple[list[str], subprocess.CompletedProcess]:
        """One README line as typed in a shell where the set-up's activation line ran."""
        command = argv[1]
        if command == "eval":
            argv = [*argv, "--pruners", "sap,random", "--keep-ratios", "0.5"]  # the README's form, fewer rows
        if command == "calibrate" and "--pairs" in argv:
            argv = [*argv, "--verbose"]  # (a flag after the command, as --help says) shows what is hidden
        if command in ("delete", "show"):
            if not doc_ids:
                done = _sap_rag(["info", "--index", "./idx", "--json", "--documents"], tmp_path, cache=cache)
                listed = sorted(json.loads(done.stdout)["document_list"], key=lambda d: d["filename"])
                doc_ids.extend(d["doc_id"] for d in listed)  # acme, borealis
            # delete Borealis, draw Acme: both lines work in the README's order
            doc = doc_ids[-1] if command == "delete" else doc_ids[0]
            argv = [doc if a == "DOC_ID" else a for a in argv]
        argv = ["models/toy" if a == "vidore/colqwen2-v1.0" else a for a in argv]
        argv = ["filename=acme_industries_2023.pdf" if a == "key=value" else a for a in argv]
        done = subprocess.run(
            ["bash", "-c", script + shlex.join(argv)],
            env=_env(cache),
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
        return argv, done

    def run_all(group: list[list[str]]) -> list[tuple[list[str], subprocess.CompletedProcess]]:
        return [run(argv) for argv in group]

    commands = [argv for line in lines for argv in _variants(line)]
    # The lines on ./idx run in the README's order; calibrate and eval (which need no index) beside them.
    on_index = [argv for argv in commands if "./idx" in argv]
    others = [argv for argv in commands if "./idx" not in argv]
    with ThreadPoolExecutor(2) as pool:
        results = [result for group in pool.map(run_all, [on_index, others]) for result in group]
    ran: list[str] = []
    for argv, done in results:
        assert done.returncode == 0, f"{shlex.join(argv)}\n{done.stderr[-2000:]}"
        ran.append(argv[1])
        if "--verbose" in argv:  # INFO logs and the weight-loading bar
            assert "INFO sap_rag" in done.stderr and "Loading weights" in done.stderr, done.stderr[-2000:]
        else:
            _quiet(done)  # no weight-loading bar, no transformers loss_type warning
        if argv[1] == "search" and "--json" in argv:
            assert json.loads(done.stdout)[0]["metadata"]["filename"] == "acme_industries_2023.pdf"
    assert {"index", "search", "info", "delete", "show", "calibrate", "eval"} <= set(ran)
    assert (tmp_path / "overlay.png").is_file() and (tmp_path / "calib.json").is_file()
    assert (tmp_path / "out" / "eval" / "retention.png").is_file()

    # The index recorded its model by absolute path, so it opens from anywhere.
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["encoder"]["spec"] == str((tmp_path / "models" / "toy").resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    question = "What was the revenue of Acme Industries in 2022?"
    found = _sap_rag(["search", question, "--index", "../idx", "-k", "1", "--json"], elsewhere, cache=cache)
    assert found.returncode == 0 and found.stderr == "", found.stderr
    assert json.loads(found.stdout)[0]["metadata"]["filename"] == "acme_industries_2023.pdf"
    # The model folder moved: one line naming what can be done (search has no --model).
    (tmp_path / "models" / "toy").rename(tmp_path / "models" / "moved")
    gone = _sap_rag(["search", question, "--index", "../idx"], elsewhere, cache=cache)
    assert gone.returncode == 1 and gone.stderr.count("\n") == 1
    assert "not there any more" in gone.stderr and "sap_rag.load_encoder(" in gone.stderr
    assert "--model" not in gone.stderr
    (tmp_path / "models" / "moved").rename(tmp_path / "models" / "toy")

    # An index written before absolute paths (a relative spec): elsewhere the error says to run from
    # where it was built, and names no option that search lacks.
    manifest["encoder"]["spec"] = "models/toy"
    (tmp_path / "idx" / "manifest.json").write_text(json.dumps(manifest))
    there = _sap_rag(["search", question, "--index", "../idx"], elsewhere, cache=cache, HF_HUB_OFFLINE="1")
    assert there.returncode == 1 and "run from the folder it is relative to" in there.stderr
    assert "pass --model" not in there.stderr and there.stderr.count("\n") == 1


def test_the_model_is_compared_and_recorded_as_one_path(tmp_path, monkeypatch):
    """``--model`` naming the index's folder another way is the same model; a hub id or tiny spec stays as typed."""
    from sap_rag.cli._common import recorded_model
    from sap_rag.index.manifest import Manifest
    from sap_rag.model_spec import resolve_spec, same_model

    (tmp_path / "models" / "toy").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    absolute = str((tmp_path / "models" / "toy").resolve())
    assert resolve_spec("models/toy") == resolve_spec("./models/../models/toy") == absolute
    assert resolve_spec("vidore/colqwen2-v1.0") == "vidore/colqwen2-v1.0"
    assert resolve_spec("tiny:colqwen2") == "tiny:colqwen2"
    assert same_model("models/toy", absolute) and not same_model("models/toy", "tiny:colqwen2")
    manifest = Manifest(
        dim=128,
        encoder={"spec": absolute},
        pruner={"name": "sap"},
        storage="float16",
        backend={"kind": "edge", "path": "shard"},
        two_stage={},
    )
    assert recorded_model(tmp_path, manifest, "./models/toy")[0] == absolute
    # An old manifest's relative folder is read as the absolute folder it names from here.
    manifest.encoder = {"spec": "models/toy"}
    manifest.write(tmp_path)
    assert Manifest.read(tmp_path).model == absolute

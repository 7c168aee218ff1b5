"""The bad-input matrix: what an attacker or a careless user hands the project, one case per line. Each case asserts the
one-line message the user gets and that nothing was written (no file, no dataset, no job, no code run)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image
from sqlalchemy import func, select

from db.engine import session
from db.models import Dataset, Job

# --- checkpoints: a pickle that would run code is refused on every path that loads a model --------------------------


class _Payload:
    """Unpickling this runs ``touch MARKER``: what a crafted checkpoint does to ``torch.load(weights_only=False)``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def armed(tmp_path) -> tuple[Path, Path]:
    """(a crafted checkpoint, the file it writes when unpickled); checked to be armed, then disarmed again."""
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"model": _Payload(marker), "model_config": {}, "alphabet": "AB", "preprocess": {}}, evil)
    torch.load(evil, weights_only=False)  # proof that it runs code when loaded the unsafe way
    assert marker.exists()
    marker.unlink()
    return evil, marker


def unescape(markdown: str) -> str:
    """What a reader sees of text passed through ``dashboard.state.plain`` (the word joiners are invisible)."""
    return re.sub(r"\\(.)", r"\1", markdown).replace("\u2060", "")


def _image(tmp_path) -> Path:
    path = tmp_path / "word.png"
    Image.new("L", (120, 32), 255).save(path)
    return path


def _ocr(*args: str, capsys) -> tuple[int, str]:
    from ocr.cli.main import main

    code = main(list(map(str, args)))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("entry", ["predict", "evaluate", "export", "train --init", "train --resume"])
def test_crafted_checkpoint_is_refused_by_the_command_line(entry, armed, tmp_path, synth_dir, capsys):
    evil, marker = armed
    run = tmp_path / "run"
    if entry == "predict":
        code, err = _ocr("predict", "--checkpoint", evil, _image(tmp_path), capsys=capsys)
    elif entry == "evaluate":
        code, err = _ocr("evaluate", "--checkpoint", evil, "--data", synth_dir, "--split", "train", "--out", run,
                         capsys=capsys)
    elif entry == "export":
        code, err = _ocr("export", "--checkpoint", evil, "--out", run, capsys=capsys)
    elif entry == "train --init":
        code, err = _ocr("train", "--data", f"{synth_dir}:train", "--out", run, "--epochs", "1", "--init", evil,
                         "--quiet", capsys=capsys)
    else:
        run.mkdir()
        (run / "last.pt").write_bytes(evil.read_bytes())
        code, err = _ocr("train", "--data", f"{synth_dir}:train", "--out", run, "--epochs", "1", "--resume", "--quiet",
                         capsys=capsys)
    assert code == 1
    last = err.strip().splitlines()[-1]  # training says what data it read first
    assert last.startswith("error: ") and "Traceback" not in err
    assert "not a checkpoint of this project: it holds Python objects that would run code when loaded, refused" in last
    assert not marker.exists()
    assert not (run / "best.pt").exists() and not (run / "model.onnx").exists()


def test_crafted_checkpoint_is_refused_by_adoption_an_evaluate_job_and_the_models_page(armed, settings, synth_dir,
                                                                                        monkeypatch):
    from db import catalog
    from db.registry import adopt_checkpoint, register_checkpoint
    from jobs import queue
    from jobs.runner import run
    from ocr.checkpoint import ModelError

    evil, marker = armed
    with pytest.raises(ModelError, match="would run code when loaded, refused"):
        adopt_checkpoint(settings, evil, ["synth"], "evil")
    with session(settings) as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0  # no half-adopted model
    catalog.import_dataset(settings, synth_dir, "synth", "synthetic")
    model_id = register_checkpoint(settings, evil, "best", name="planted")  # a file swapped on disk after registration
    job_id = queue.submit(settings, "evaluate", {"model": model_id, "dataset": "synth", "split": "train"})
    assert queue.claim(settings, "test-worker", "cpu").id == job_id
    assert run(job_id, "cpu", settings) == 1
    status = queue.job_status(settings, job_id)
    assert status["status"] == "failed" and "would run code when loaded, refused" in status["error"]
    assert not marker.exists()

    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    monkeypatch.setenv("HWR_START_WORKER", "0")
    monkeypatch.setenv("HWR_DEFAULT_DATA", "0")
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=60).run()
    at.switch_page(str(ROOT / "dashboard" / "app_pages" / "models.py")).run()
    next(b for b in at.button if b.label == "Prepare the export").click().run()
    assert not at.exception
    assert any("would run code when loaded, refused" in unescape(e.value) for e in at.error)
    assert "export_zip" not in at.session_state and not marker.exists()


@pytest.mark.parametrize("content, message", [
    ({"model": {}, "alphabet": "AB"}, "not a checkpoint of this project (missing model_config, preprocess)"),
    ({"model": {}, "model_config": {"stem": 8}, "alphabet": "AB", "preprocess": {}}, "the checkpoint's model does not load"),
    (["a", "list"], "not a checkpoint of this project (missing model, model_config, alphabet, preprocess)"),
    (b"not a checkpoint at all", "is not a readable checkpoint"),
])
def test_malformed_checkpoint_gets_one_line(content, message, tmp_path, capsys):
    path = tmp_path / "bad.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    code, err = _ocr("predict", "--checkpoint", path, _image(tmp_path), capsys=capsys)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1


# --- zips ------------------------------------------------------------------------------------------------------------

def _zip(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _nothing_extracted(folder: Path, archive: Path) -> bool:
    return sorted(p.name for p in folder.iterdir()) == [archive.name]


@pytest.mark.parametrize("members, message", [
    ({"bomb.bin": b"\0" * 20_000_000}, "over the limit of 100x (HWR_MAX_ZIP_RATIO raises it): a zip bomb?"),
    ({}, "the zip is empty"),
    ({"../escaped.txt": b"x"}, "unsafe member '../escaped.txt' (a path that escapes the target folder)"),
    ({"/etc/cron.d/x": b"x"}, "unsafe member '/etc/cron.d/x' (an absolute or Windows path)"),
])
def test_bad_zip_is_refused_before_anything_is_written(members, message, tmp_path):
    from ocr.data.datasets import DatasetError, open_source

    folder = tmp_path / "in"
    folder.mkdir()
    archive = _zip(folder / "data.zip", members)
    with pytest.raises(DatasetError, match="^data.zip: ") as err:
        open_source(archive)
    assert message in str(err.value)
    assert _nothing_extracted(folder, archive)


def test_zip_over_the_size_limit_and_a_link_member_are_refused(tmp_path, monkeypatch):
    from ocr.data.datasets import DatasetError, open_source

    folder = tmp_path / "in"
    folder.mkdir()
    archive = _zip(folder / "big.zip", {"a.bin": os.urandom(3_000_000)})
    monkeypatch.setenv("HWR_MAX_ZIP_GB", "0.002")
    with pytest.raises(DatasetError, match=r"expand to 0.00 GB, over the limit of 0.002 GB \(HWR_MAX_ZIP_GB raises it\)"):
        open_source(archive)
    link = zipfile.ZipInfo("train_v2/train/x.jpg")
    link.external_attr = (0o120777 << 16)
    with zipfile.ZipFile(folder / "link.zip", "w") as zf:
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(DatasetError, match="a symbolic link"):
        open_source(folder / "link.zip")
    assert sorted(p.name for p in folder.iterdir()) == ["big.zip", "link.zip"]


def test_corrupt_zip_is_refused(tmp_path):
    from ocr.data.datasets import DatasetError, open_source

    good = _zip(tmp_path / "good.zip", {"written_name_train_v2.csv": b"FILENAME,IDENTITY\n" * 2000})
    (tmp_path / "cut.zip").write_bytes(good.read_bytes()[:-200])
    with pytest.raises(DatasetError, match="cut.zip: not a readable zip file"):
        open_source(tmp_path / "cut.zip")
    assert not (tmp_path / "cut").exists()


def test_zip_never_extracts_into_an_existing_folder(tmp_path, synth_dir):
    from ocr.data.datasets import open_source

    archive = tmp_path / "names.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for path in synth_dir.rglob("*"):
            if path.is_file():
                zf.write(path, path.relative_to(synth_dir))
    (tmp_path / "names").mkdir()
    (tmp_path / "names" / "mine.txt").write_text("the user's own file")
    root = open_source(archive)
    assert root == tmp_path / "names-2"
    assert sorted(p.name for p in (tmp_path / "names").iterdir()) == ["mine.txt"]
    assert open_source(archive) == root  # extracted once, found again by its marker


# --- imports run as jobs: failed with one readable line, no dataset ----------------------------------------------------

def _layout(root: Path, csv_bytes: bytes, images: dict[str, Image.Image] | None = None) -> Path:
    folder = root / "validation_v2" / "validation"
    folder.mkdir(parents=True)
    (root / "written_name_validation_v2.csv").write_bytes(csv_bytes)
    for name, image in (images or {"A.jpg": Image.new("RGB", (284, 36), "white")}).items():
        image.save(folder / name)
    return root


def _import_job(settings, path: Path) -> dict:
    from jobs import queue
    from jobs.runner import run

    job_id = queue.submit(settings, "import", {"path": str(path), "name": "imported"})
    assert queue.claim(settings, "test-worker", "cpu").id == job_id
    run(job_id, "cpu", settings)
    return queue.job_status(settings, job_id)


def _datasets(settings) -> int:
    with session(settings) as s:
        return s.scalar(select(func.count()).select_from(Dataset))


@pytest.mark.parametrize("csv_bytes, message", [
    (b"FILENAME,NAME\nA.jpg,LEA\n", "written_name_validation_v2.csv: missing column(s) IDENTITY (found FILENAME, NAME)"),
    ("FILENAME,IDENTITY\nA.jpg,HÉLÈNE\n".encode("latin-1"), "written_name_validation_v2.csv: not UTF-8 text (byte 0xc9"),
    (b"FILENAME,IDENTITY\nA.jpg," + b"X" * 200_000 + b"\n", "written_name_validation_v2.csv line 2: not a readable CSV"),
    (b"FILENAME,IDENTITY\nMISSING.jpg,LEA\n", "no image could be read (1 of 1 rows"),
])
def test_unreadable_csv_fails_the_import_job_and_creates_no_dataset(csv_bytes, message, settings, tmp_path):
    status = _import_job(settings, _layout(tmp_path / "src", csv_bytes))
    assert status["status"] == "failed"
    assert message in status["error"] and "\n" not in status["error"] and len(status["error"]) < 400
    assert _datasets(settings) == 0


def test_zip_with_an_unsafe_member_fails_its_job_saying_so(settings, tmp_path):
    archive = _zip(tmp_path / "evil.zip", {"written_name_train_v2.csv": b"FILENAME,IDENTITY\n", "../../x.txt": b"x"})
    status = _import_job(settings, archive)
    assert status["status"] == "failed" and "unsafe member '../../x.txt'" in status["error"]
    assert "not a Kaggle-layout folder" not in status["error"] and _datasets(settings) == 0
    assert not (settings.data_dir / "extracted" / "evil").exists()


def test_oversized_image_and_label_are_excluded_with_their_reason(settings, tmp_path):
    from db import catalog

    rows = "FILENAME,IDENTITY\nA.jpg,LEA\nHUGE.png,PAUL\nB.jpg," + "X" * 10_000 + "\n"
    huge = Image.new("1", (9_000, 9_000))  # 81 Mpx: over the 64 Mpx limit, under PIL's own (2 x 64 Mpx)
    _layout(tmp_path / "src", rows.encode(), {"A.jpg": Image.new("RGB", (284, 36), "white"), "HUGE.png": huge,
                                               "B.jpg": Image.new("RGB", (284, 36), "gray")})
    from ocr.data.datasets import import_kaggle

    summary = import_kaggle(tmp_path / "src").summary()
    assert summary["excluded"]["bad_image"] == 1 and summary["excluded"]["too_long"] == 1
    assert "9,000 x 9,000 = 81,000,000 pixels, over the limit of 64,000,000" in summary["examples"]["bad_image"][0]
    assert "label of 10,000 characters, over the limit of 200" in summary["examples"]["too_long"][0]
    result = catalog.import_dataset(settings, tmp_path / "src", "mixed")
    assert result["added_by_status"] == {"ok": 1, "excluded": 1} and result["bad_image"] == 1
    with session(settings) as s:
        from db.models import Sample

        longest = s.scalar(select(func.max(func.length(Sample.original_label))))
    assert longest == 200


# --- server folders: only under the allowed roots; links that leave the folder are not followed -------------------

def test_server_folder_import_only_under_the_allowed_roots(settings, tmp_path):
    from db.settings import ImportPathError, Settings
    from jobs import queue

    narrow = Settings(settings.data_dir, settings.database_url, import_roots=(tmp_path / "allowed",))
    for path in ("/root", "/etc", str(tmp_path / "allowed" / ".." / "secret"), "/no/such/folder"):
        with pytest.raises(ImportPathError, match="outside the folders this server imports from"):
            queue.submit(narrow, "import", {"path": path, "name": "x"})
    (tmp_path / "allowed").mkdir()
    (tmp_path / "allowed" / "escape").symlink_to("/etc")
    with pytest.raises(ImportPathError):
        queue.submit(narrow, "import", {"path": str(tmp_path / "allowed" / "escape"), "name": "x"})
    assert queue.list_jobs(settings) == []


def test_links_to_images_outside_the_folder_are_not_imported(settings, tmp_path, synth_dir):
    from db import catalog

    outside = next((synth_dir / "train_v2" / "train").glob("*.jpg"))
    pool = tmp_path / "pool"
    pool.mkdir()
    Image.new("RGB", (284, 36), "white").save(pool / "own.jpg")
    (pool / "linked.jpg").symlink_to(outside)
    (pool / "linked_dir").symlink_to(outside.parent, target_is_directory=True)
    result = catalog.import_dataset(settings, pool, "pool", "upload")
    assert result["added"] == 1 and result["import"]["links_outside_refused"] >= 1
    kaggle = _layout(tmp_path / "kaggle", b"FILENAME,IDENTITY\nA.jpg,LEA\nLINK.jpg,PAUL\n")
    (kaggle / "validation_v2" / "validation" / "LINK.jpg").symlink_to(outside)
    from ocr.data.datasets import import_kaggle

    summary = import_kaggle(kaggle).summary()
    assert summary["usable"] == 1 and "a link to a file outside the dataset folder" in summary["examples"]["bad_image"][0]


# --- the command line's import: a link loop, a password-protected zip, a file listed twice ---------------------------

def _ocr_import(*args: str | Path) -> subprocess.CompletedProcess:
    """``python -m ocr import ...`` as a user runs it (a traceback would reach stderr here, not a test's pytest)."""
    from tests.conftest import PY, ROOT

    return subprocess.run([PY, "-m", "ocr", "import", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _looped(root: Path) -> Path:
    """A layout whose L1.jpg and L2.jpg are links to each other (a loop, no file behind it) beside a good A.jpg."""
    _layout(root, b"FILENAME,IDENTITY\nA.jpg,LEA\nL1.jpg,PAUL\nL2.jpg,UNREADABLE\n")
    folder = root / "validation_v2" / "validation"
    (folder / "L1.jpg").symlink_to("L2.jpg")
    (folder / "L2.jpg").symlink_to("L1.jpg")
    return root


@pytest.mark.parametrize("check", [[], ["--no-image-check"]])
def test_a_link_loop_is_a_bad_image_and_the_other_rows_import(check, tmp_path):
    done = _ocr_import(_looped(tmp_path / "src"), "--json", *check)
    assert done.returncode == 0 and done.stderr == ""
    summary = json.loads(done.stdout)
    assert (summary["rows"], summary["usable"]) == (3, 1)
    assert summary["excluded"]["bad_image"] == 1 and summary["excluded"]["unreadable"] == 1
    assert summary["examples"]["bad_image"] == [
        "L1.jpg: \"'L1.jpg' is a symbolic link loop (its links lead back to each other, never to a file)\""]


def test_a_link_loop_does_not_stop_a_catalog_import(settings, tmp_path):
    from db import catalog
    from ocr.data.datasets import check_image

    src = _looped(tmp_path / "src")
    assert "symbolic link loop" in check_image(src / "validation_v2" / "validation" / "L1.jpg")
    result = catalog.import_dataset(settings, src, "looped")
    assert result["added_by_status"] == {"ok": 1} and result["import"]["excluded"]["bad_image"] == 1


def _encrypted(path: Path) -> Path:
    """A zip whose members say they are encrypted (general purpose flag bit 0), in the local headers and the central
    directory: what ``zip -e`` writes, as far as a reader can tell before it needs the password."""
    _zip(path, {"written_name_validation_v2.csv": b"FILENAME,IDENTITY\nA.jpg,LEA\n",
                "validation_v2/validation/A.jpg": b"\xff\xd8" + b"x" * 100})
    data = bytearray(path.read_bytes())
    for signature, flags in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature)
        while at != -1:
            data[at + flags] |= 0x1
            at = data.find(signature, at + 4)
    path.write_bytes(bytes(data))
    assert all(m.flag_bits & 0x1 for m in zipfile.ZipFile(path).infolist())
    return path


def test_an_encrypted_zip_gets_one_line_and_nothing_is_extracted(tmp_path):
    from ocr.data.datasets import DatasetError, open_source

    folder = tmp_path / "in"
    folder.mkdir()
    archive = _encrypted(folder / "secret.zip")
    done = _ocr_import(archive)
    assert done.returncode == 1 and done.stdout == ""
    assert _one_error_line(done.stderr) == ("error: secret.zip is encrypted (password-protected zip): not supported; "
                                            "unzip it first and import the folder")
    with pytest.raises(DatasetError, match=r"^secret.zip is encrypted \(password-protected zip\)"):
        open_source(archive)
    assert _nothing_extracted(folder, archive)


def test_an_encrypted_zip_fails_its_import_job_saying_so(settings, tmp_path):
    status = _import_job(settings, _encrypted(tmp_path / "secret.zip"))
    assert status["status"] == "failed" and "\n" not in status["error"]
    assert "secret.zip is encrypted (password-protected zip): not supported; unzip it first" in status["error"]
    assert _datasets(settings) == 0 and not (settings.data_dir / "extracted" / "secret").exists()


def _listed_twice(root: Path) -> Path:
    """A.jpg with two labels, B.jpg twice with one label (``ana`` reads ``ANA`` once upper-cased), C.jpg once."""
    rows = b"FILENAME,IDENTITY\nA.jpg,LEA\nB.jpg,ANA\nA.jpg,PAUL\nB.jpg,ana\nC.jpg,JO\n"
    return _layout(root, rows, {n: Image.new("RGB", (284, 36), c) for n, c in
                                (("A.jpg", "white"), ("B.jpg", "gray"), ("C.jpg", "black"))})


def test_a_file_listed_with_two_labels_is_excluded_and_a_repeated_row_counts_once(tmp_path):
    from ocr.data.datasets import summary_text

    done = _ocr_import(_listed_twice(tmp_path / "src"), "--json")
    assert done.returncode == 0 and done.stderr == ""
    summary = json.loads(done.stdout)
    assert (summary["rows"], summary["usable"], summary["duplicates"]) == (5, 2, 1)
    assert summary["excluded"]["conflicting"] == 2 and sum(summary["excluded"].values()) == 2
    assert summary["examples"]["conflicting"] == ["A.jpg: \"listed with 2 different labels: 'LEA', 'PAUL'\""] * 2
    text = summary_text(summary)
    assert "bad_image 0, conflicting 2" in text and "repeated rows dropped (same file, same label): 1" in text


def test_a_file_listed_with_two_labels_is_kept_for_review_by_a_catalog_import(settings, tmp_path):
    from db import catalog
    from db.models import Sample

    result = catalog.import_dataset(settings, _listed_twice(tmp_path / "src"), "twice")
    assert result["added_by_status"] == {"ok": 2, "excluded": 1} and result["import"]["duplicates"] == 1
    with session(settings) as s:
        rows = s.execute(select(Sample.path, Sample.label, Sample.status, Sample.note).order_by(Sample.path)).all()
    assert [(Path(p).name, label, status, note) for p, label, status, note in rows] == [
        ("A.jpg", None, "excluded", "listed with 2 different labels: 'LEA', 'PAUL'"),
        ("B.jpg", "ANA", "ok", None), ("C.jpg", "JO", "ok", None)]


# --- labels: one length limit, the alphabet, plain text on the pages --------------------------------------------------

@pytest.mark.parametrize("label, message", [
    ("X" * 201, "the label is 201 characters long (at most 200)"),
    ("ANNE 😀", "characters no character set allows: '😀'"),
    ("   ", "the label is empty"),
])
def test_bad_label_is_refused_by_correction_and_drawing(label, message, settings, synth_dir):
    from db import catalog, corrections
    from db.models import LabelEdit

    catalog.import_dataset(settings, synth_dir, "synth", "synthetic")
    sid = catalog.training_items(settings, ["synth"])[0].sample_id
    with pytest.raises(corrections.CorrectionError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        corrections.correct_label(settings, sid, label, user="ana")
    buf = io.BytesIO()
    Image.new("RGB", (200, 40), "white").save(buf, "PNG")
    with pytest.raises(catalog.CatalogError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        catalog.add_drawn_sample(settings, buf.getvalue(), label, user="ana")
    with session(settings) as s:
        assert s.scalar(select(func.count()).select_from(LabelEdit)) == 0
        assert s.scalar(select(func.count()).select_from(Dataset).where(Dataset.name == "drawn")) == 0


def test_labels_show_as_plain_text_on_the_pages(settings, tmp_path, monkeypatch):
    from markdown_it import MarkdownIt
    from streamlit.testing.v1 import AppTest

    from dashboard.state import plain
    from db import catalog
    from tests.conftest import ROOT

    evil = "[X](HTTPS://EVIL.EXAMPLE/LOGIN) <B>:RED[HI]</B> $X$"
    html = MarkdownIt("commonmark", {"linkify": False}).render(plain(evil)).replace("\u2060", "")
    assert "<a" not in html and "<b>" not in html.lower() and evil.replace("<", "&lt;").replace(">", "&gt;") in html
    src = _layout(tmp_path / "src", f"FILENAME,IDENTITY\nA.jpg,\"{evil}\"\n".encode())
    catalog.import_dataset(settings, src, "evil")
    monkeypatch.setenv("HWR_START_WORKER", "0")
    monkeypatch.setenv("HWR_DEFAULT_DATA", "0")
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=60).run()
    at.switch_page(str(ROOT / "dashboard" / "app_pages" / "data.py")).run()
    assert not at.exception
    shown = [im.proto.imgs[0].caption for im in at.get("image")]
    assert [unescape(c) for c in shown] == [f"#1 {evil} (excluded, validation)"]
    assert "HTTPS:\u2060" in shown[0].replace("\\", "")  # no autolink (the real browser check: tests/test_browser.py)


# --- job parameters -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("config, message", [
    ({"lr": float("nan")}, "lr=nan is not a valid finite float"),
    ({"lr": float("inf")}, "lr=inf is not a valid finite float"),
    ({"max_minutes": float("nan")}, "max_minutes=nan is not a valid finite"),
    ({"lr": -1.0}, "must be positive"),
    ({"epochs": "3"}, "epochs='3' is not a valid int"),
    ({"preset": "huge"}, "unknown preset 'huge'"),
    ({"lrr": 0.1}, "unknown parameter(s) lrr"),
])
def test_bad_training_parameters_are_refused_at_submit(config, message, settings, synth_dir):
    from db import catalog
    from jobs import queue
    from jobs.params import ParamsError

    catalog.import_dataset(settings, synth_dir, "synth", "synthetic")
    with pytest.raises(ParamsError) as err:
        queue.submit(settings, "train", {"datasets": ["synth"], "config": config})
    assert message in str(err.value)
    assert queue.list_jobs(settings) == []


@pytest.mark.parametrize("args, message", [
    (["train", "--dataset", "synth", "--lr", "nan"], "'nan' must be a finite number above 0"),
    (["train", "--dataset", "synth", "--max-minutes", "inf"], "'inf' must be a finite number above 0"),
    (["train", "--dataset", "synth", "--lr", "abc"], "'abc' is not a number"),
])
def test_bad_numbers_on_the_command_lines(args, message, capsys):
    from jobs.__main__ import main

    with pytest.raises(SystemExit) as exit_:
        main(["submit", *args])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_predict_job_on_a_split_with_unusable_labels_reads_every_image(settings, tmp_path, trained):
    """Excluded, unreadable and out-of-alphabet rows are predicted like the others and left out of the scoring only."""
    from db import catalog
    from db.registry import adopt_checkpoint
    from jobs import queue
    from jobs.runner import run

    rows = "FILENAME,IDENTITY\nA.jpg,LEA\nB.jpg,JOSÉ\nC.jpg,UNREADABLE\nD.jpg,\n"
    images = {n: Image.new("RGB", (284, 36), c) for n, c in zip("ABCD", ["white", "gray", "black", "silver"])}
    catalog.import_dataset(settings, _layout(tmp_path / "src", rows.encode(), {f"{k}.jpg": v for k, v in images.items()}),
                           "mixed")
    model_id = adopt_checkpoint(settings, trained, ["mixed"], "tiny")
    job_id = queue.submit(settings, "predict", {"model": model_id, "dataset": "mixed", "split": "validation"})
    assert queue.claim(settings, "test-worker", "cpu").id == job_id
    assert run(job_id, "cpu", settings) == 0
    result = queue.job_status(settings, job_id)["result"]
    assert result["n"] == 4 and result["scored"] == 1 and result["skipped_images"] == 0


def test_upload_size_is_set_deliberately():
    import tomllib

    from tests.conftest import ROOT

    server = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["server"]
    assert server["maxUploadSize"] == 2000 and server["address"] == "127.0.0.1"

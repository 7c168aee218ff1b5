"""The command line as users script it: real subprocesses, exit codes, one-line errors."""

import csv
import json
import subprocess

import numpy as np
import pytest
import torch

from tests.conftest import PY, ROOT

COMMANDS = ["synth", "download-kaggle", "import", "train", "evaluate", "predict", "export"]


def run(*args, timeout=300, env=None):
    return subprocess.run([PY, "-m", "ocr", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    r = run(command, "--help")
    assert r.returncode == 0 and "usage:" in r.stdout


def test_import_json_on_real_data(real_data):
    r = run("import", real_data, "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert (s["rows"], s["usable"], s["splits"]) == (1000, 995, {"validation": 995})
    assert s["excluded"] == {"blank": 1, "unreadable": 1, "empty": 3, "bad_chars": 0, "too_long": 0, "bad_image": 0,
                             "conflicting": 0}


def test_synth_train_evaluate_predict(tmp_path, real_data):
    data, run_dir = tmp_path / "synth", tmp_path / "run"
    assert run("synth", "--n", 120, "--out", data, "--seed", 1, "--quiet").returncode == 0
    r = run("train", "--data", f"{data}:train", "--out", run_dir, "--epochs", 2, "--batch-size", 32, "--quiet",
            "--diagnose")
    assert r.returncode == 0, r.stderr
    assert "[diagnose] batch 0: input (32, 1, 32, " in r.stderr and "label lengths" in r.stderr
    assert {"best.pt", "last.pt", "metrics.jsonl"} <= {p.name for p in run_dir.iterdir()}
    assert r.stdout.count("epoch ") >= 2

    r = run("train", "--out", run_dir, "--resume", "--quiet")  # nothing left: the planned epochs are done
    assert r.returncode == 0, r.stderr

    out = tmp_path / "eval"
    r = run("evaluate", "--checkpoint", run_dir / "best.pt", "--data", real_data, "--split", "validation",
            "--out", out, "--json")
    assert r.returncode == 0, r.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("n", "exact_match", "char_accuracy", "cer", "wer", "mean_edit_distance", "excluded"):
        assert key in metrics
    assert metrics["n"] == 995 and metrics["excluded"]["empty"] == 3
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == 995 and set(rows[0]) == {"file", "label", "prediction", "confidence", "edit_distance"}
    wrong = sum(r["label"] != r["prediction"] for r in rows)
    assert len(list((out / "misclassified").iterdir())) == wrong
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF") and (out / "report.md").exists()

    images = [real_data / "validation_v2" / "validation" / f"VALIDATION_000{i}.jpg" for i in (1, 2, 3)]
    r = run("predict", "--checkpoint", run_dir / "best.pt", *images, "--json", "--top-k", 3, "--beam", 0)
    assert r.returncode == 0, r.stderr
    preds = [json.loads(line) for line in r.stdout.splitlines()]
    by_file = {row["file"]: row for row in rows}
    for p in preds:  # predict and evaluate read an image the same way
        row = by_file[p["file"].rsplit("/", 1)[-1]]
        assert p["text"] == row["prediction"] and abs(p["confidence"] - float(row["confidence"])) < 1e-3
    r = run("predict", "--checkpoint", run_dir / "best.pt", images[0], "--json", "--top-k", 3)
    p = json.loads(r.stdout)
    assert 0 <= p["confidence"] <= 1 and 1 <= len(p["candidates"]) <= 3  # ``ocr export``: the next test


def test_exported_models_give_the_same_outputs(trained, tmp_path, real_data):
    import onnxruntime as ort

    from ocr.recognize import Recognizer

    r = run("export", "--checkpoint", trained, "--out", tmp_path)  # through its command line
    assert r.returncode == 0, r.stderr
    assert {"model.safetensors", "config.json", "model.pt", "model.pt2", "model.onnx"} <= \
        {p.name for p in tmp_path.iterdir()}
    rec = Recognizer(trained)
    files = sorted((real_data / "validation_v2" / "validation").glob("*.jpg"))[:8]
    from ocr.preprocess import pad_batch

    images, _ = pad_batch([rec.prepare(f) for f in files])
    with torch.inference_mode():
        expected = rec.model(images)
    program = torch.export.load(tmp_path / "model.pt2").module()
    torch.testing.assert_close(program(images), expected, rtol=1e-4, atol=1e-4)
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    np.testing.assert_allclose(session.run(None, {"images": images.numpy()})[0], expected.numpy(), rtol=1e-4, atol=1e-4)
    # other widths and batch sizes than the export example's, one image included
    for narrow in (images[:3, :, :, :128], images[:1, :, :, :61], images[:1]):
        with torch.inference_mode():
            expected = rec.model(narrow)
        torch.testing.assert_close(program(narrow), expected, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(session.run(None, {"images": narrow.numpy()})[0], expected.numpy(),
                                   rtol=1e-4, atol=1e-4)
    slim = torch.load(tmp_path / "model.pt", weights_only=False)
    assert slim["alphabet"] == rec.alphabet.chars and "optimizer" not in slim
    assert [p.text for p in Recognizer(tmp_path).read(files)] == [p.text for p in rec.read(files)]  # the folder


@pytest.mark.parametrize("args, message", [
    (["import", "/no/such/folder"], "no such file or folder"),
    (["train", "--data", "/no/such/folder", "--out", "/tmp/x"], "no such file or folder"),
    (["train", "--out", "/tmp/hwr-nothing-here", "--resume"], "nothing to resume"),
    (["predict", "--checkpoint", "/no/model.pt", "x.jpg"], "not found"),
    (["evaluate", "--checkpoint", __file__, "--data", ".", "--out", "/tmp/x"], "not a readable checkpoint"),
])
def test_errors_are_one_line_without_traceback(args, message):
    r = run(*args)
    assert r.returncode != 0
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_download_without_credentials_explains_how(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HWR_CACHE_DIR": str(tmp_path)}
    r = run("download-kaggle", "--out", tmp_path / "k", env=env)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "KAGGLE_USERNAME" in r.stderr and "python -m ocr import" in r.stderr


def test_predict_reports_a_bad_file_and_reads_the_rest(trained, tmp_path, real_data):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    good = real_data / "validation_v2" / "validation" / "VALIDATION_0002.jpg"
    r = run("predict", "--checkpoint", trained, bad, good, "--beam", 0)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"{bad}: not a readable image" in r.stderr
    assert r.stdout.startswith(str(good)) and len(r.stdout.splitlines()) == 1

"""A model as a folder that leaves the project (model.safetensors + config.json): it reads exactly as its checkpoint,
keeps the user's labels out unless asked, and a broken or mismatched folder gets one clear line."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from ocr.checkpoint import ModelError, load_checkpoint
from ocr.data.datasets import import_kaggle
from ocr.pretrained import CONFIG, WEIGHTS, PretrainedError, check_repo_id, is_hub_id, save_pretrained
from ocr.recognize import Recognizer


def test_a_model_folder_reads_exactly_as_its_checkpoint(learned, synth_dir, tmp_path):
    checkpoint, _ = learned
    written = save_pretrained(load_checkpoint(checkpoint), tmp_path / "model")
    assert sorted(p.name for p in written) == [CONFIG, WEIGHTS]
    config = json.loads((tmp_path / "model" / CONFIG).read_text())
    ckpt = load_checkpoint(checkpoint)
    assert config["alphabet"] == ckpt["alphabet"] and config["preprocess"] == ckpt["preprocess"]
    assert "training_labels" not in config and "optimizer" not in config  # the user's labels stay home
    files = [s.path for s in import_kaggle(synth_dir).samples[:16]]
    a, b = Recognizer(checkpoint), Recognizer(tmp_path / "model")
    la, _ = a.logits([a.prepare(f) for f in files])
    lb, _ = b.logits([b.prepare(f) for f in files])
    assert torch.equal(la, lb)
    assert [p.text for p in a.read(files)] == [p.text for p in b.read(files)]
    with pytest.raises(ModelError, match="model folder .* a run resumes from its own last.pt"):
        load_checkpoint(tmp_path / "model", for_resume=True)


def test_training_labels_travel_only_when_asked(learned, tmp_path):
    checkpoint, _ = learned
    save_pretrained(load_checkpoint(checkpoint), tmp_path / "with", include_training_labels=True)
    labels = load_checkpoint(tmp_path / "with")["training_labels"]
    assert labels == load_checkpoint(checkpoint)["training_labels"] and labels


def _break(folder, what):
    if what == "no weights":
        (folder / WEIGHTS).unlink()
    elif what == "no config":
        (folder / CONFIG).unlink()
    elif what == "not json":
        (folder / CONFIG).write_text("{oops")
    elif what == "another format":
        (folder / CONFIG).write_text(json.dumps({"architectures": ["BertModel"]}))
    elif what == "newer":
        config = json.loads((folder / CONFIG).read_text())
        (folder / CONFIG).write_text(json.dumps({**config, "format_version": 99}))
    elif what == "set of another size":
        config = json.loads((folder / CONFIG).read_text())
        (folder / CONFIG).write_text(json.dumps({**config, "alphabet": config["alphabet"] + "0123"}))
    elif what == "garbled weights":
        (folder / WEIGHTS).write_bytes(b"\x00" * 64)


@pytest.mark.parametrize("what, message", [
    ("no weights", "lacks model.safetensors"),
    ("no config", "lacks config.json"),
    ("not json", "is not readable JSON"),
    ("another format", "is not the config of a model of this project"),
    ("newer", "written by a newer version"),
    ("set of another size", r"character set has 33 characters \(34 classes with the blank\), but the weights' "
                            r"output layer has 30 rows"),
    ("garbled weights", "is not readable safetensors"),
])
def test_a_broken_model_folder_gets_one_clear_line(learned, tmp_path, what, message):
    folder = tmp_path / "model"
    save_pretrained(load_checkpoint(learned[0]), folder)
    _break(folder, what)
    with pytest.raises(ModelError, match=message) as info:
        Recognizer(folder)
    assert "\n" not in str(info.value)


def test_hub_ids_are_checked_and_offline_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # this machine cannot reach the Hub; the same path as no network
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert is_hub_id("hf://someone/crnn-names") and is_hub_id("someone/crnn-names")
    assert not is_hub_id("runs/best.pt") and not is_hub_id(str(tmp_path))
    assert check_repo_id("hf://someone/crnn-names") == "someone/crnn-names"
    for bad in ("no-slash", "a/b/c", "someone/na..me", "someone/name-", "some one/x"):
        with pytest.raises(PretrainedError, match="is not a Hugging Face repo id"):
            check_repo_id(bad)
    with pytest.raises(ModelError, match="could not download someone/crnn-names from the Hugging Face Hub") as info:
        load_checkpoint("hf://someone/crnn-names")
    assert "\n" not in str(info.value)


def test_a_folder_copied_elsewhere_still_loads(learned, tmp_path):
    """Nothing in the folder points back at the run that made it."""
    save_pretrained(load_checkpoint(learned[0]), tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "a")
    assert Recognizer(tmp_path / "b").alphabet.chars == load_checkpoint(learned[0])["alphabet"]


def test_publish_dry_run_writes_the_hub_folder_and_it_reads_back(learned, synth_dir, tmp_path):
    import yaml

    from ocr.cli.main import main
    from ocr.evaluation.evaluate import evaluate
    from ocr.sharing.publish import Evaluation, publish

    checkpoint, _ = learned
    metrics = evaluate(checkpoint, synth_dir, "train", tmp_path / "eval")
    evaluation = Evaluation.from_run(tmp_path / "eval", "synthetic names (seed 0)")
    result = publish(checkpoint, "someone/crnn-names", evaluation, dry_run=True, out=tmp_path / "hub")
    assert result["files"] == ["README.md", "config.json", "model.onnx", "model.safetensors", "samples.json"]
    card = (tmp_path / "hub" / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["pipeline_tag"] == "image-to-text" and meta["library_name"] == "hwr-ocr" and meta["license"] == "mit"
    figures = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert figures == {"exact_match": metrics["exact_match"], "cer": metrics["cer"]}
    assert 'snapshot_download("someone/crnn-names")' in card and len(json.loads(
        (tmp_path / "hub" / "samples.json").read_text())) == min(12, metrics["n"])
    files = [s.path for s in import_kaggle(synth_dir).samples[:12]]
    assert [p.text for p in Recognizer(tmp_path / "hub").read(files)] == [p.text for p in Recognizer(checkpoint).read(files)]
    # the command line: a malformed id is one line and writes nothing
    assert main(["publish", "--model", str(checkpoint), "--repo", "not a repo", "--dry-run", "--out",
                 str(tmp_path / "nothing")]) == 1
    assert not (tmp_path / "nothing").exists()


def test_publishing_without_a_token_or_network_is_one_line_and_never_shows_the_token(learned, tmp_path, monkeypatch):
    from ocr.sharing.publish import PublishError, publish

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(PublishError, match="no Hugging Face token: run `hf auth login` or set HF_TOKEN"):
        publish(learned[0], "someone/crnn-names")
    secret = "hf_" + "x" * 34
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: the same as no network
    with pytest.raises(PublishError, match="upload to someone/crnn-names failed .*nothing was uploaded") as info:
        publish(learned[0], "someone/crnn-names", token=secret)
    assert secret not in str(info.value) and "\n" not in str(info.value)


def test_a_fresh_database_reads_at_once_with_the_shipped_model_until_it_trains_its_own(settings, learned, tmp_path):
    from db.registry import adopt_checkpoint, default_model, model_file, register_shipped_model

    shipped = tmp_path / "starter"
    save_pretrained(load_checkpoint(learned[0]), shipped)
    model_id = register_shipped_model(settings, shipped)
    model = default_model(settings)
    assert model is not None and model.id == model_id and model.kind == "shipped" and model.job_id is None
    path = model_file(settings, model_id)
    assert path.is_relative_to(settings.data_dir) and Recognizer(path).alphabet.chars  # a copy under the data dir
    assert register_shipped_model(settings, shipped) is None  # once, and never over the user's models
    own = adopt_checkpoint(settings, learned[0], [], "own")
    assert default_model(settings).id == own  # the user's first model takes over
    assert register_shipped_model(settings, tmp_path / "nothing-here") is None


@pytest.mark.parametrize("settings", ["postgresql"], indirect=True)  # one backend: the kind's path
def test_a_publish_job_writes_the_hub_folder_with_an_evaluations_figures(settings, synth_dir, trained):
    from jobs import queue
    from jobs.params import ParamsError
    from jobs.runner import run
    from tests.conftest import populate

    model_id = populate(settings, synth_dir, trained)["model_id"]
    with pytest.raises(ParamsError, match="publish job: 'no slash' is not a Hugging Face repo id"):
        queue.submit(settings, "publish", {"model": model_id, "repo_id": "no slash"})
    evaluation = next(j for j in queue.jobs_of_model(settings, model_id) if j["kind"] == "evaluate")
    job_id = queue.submit(settings, "publish", {"model": model_id, "repo_id": "someone/tiny",
                                                "evaluation_job": evaluation["id"], "dry_run": True})
    assert queue.claim(settings, "w", "cpu").id == job_id and run(job_id, "cpu", settings) == 0
    result = queue.job_status(settings, job_id)["result"]
    assert result["uploaded"] is False and "model.safetensors" in result["files"]
    card = (settings.resolve(result["folder"]) / "README.md").read_text()
    assert f"value: {evaluation['result']['exact_match']}" in card and "someone/tiny" in card
    assert Recognizer(settings.resolve(result["folder"])).alphabet.chars  # the folder loads back
    bad = queue.submit(settings, "publish", {"model": model_id, "repo_id": "someone/tiny", "evaluation_job": job_id,
                                             "dry_run": True})
    assert queue.claim(settings, "w", "cpu").id == bad and run(bad, "cpu", settings) == 1
    assert f"job {job_id} is not a finished evaluation of model {model_id}" in queue.job_status(settings, bad)["error"]

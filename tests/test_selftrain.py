"""Self-training as a training option: the first phase reads the unlabelled pool, confident readings become
pseudo-labels kept apart from labels, the second phase fine-tunes on both; resumable, recorded in the checkpoint, and
refused with a clear message when it cannot work."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess

import pytest

from ocr.checkpoint import load_checkpoint
from ocr.data.datasets import import_kaggle
from ocr.training.config import ConfigError, TrainConfig
from ocr.training.loop import Callback, TrainingError
from ocr.training.selftrain import completed_epochs, fit_self_training, read_pool
from tests.conftest import PY, ROOT, import_pool

FAST = {"batch_size": 16, "lr": 1e-4, "log_every": 2, "augment": False, "device": "cpu", "scheduler": "constant"}


@pytest.fixture(scope="module")
def labelled(synth_dir):
    samples = import_kaggle(synth_dir).samples
    return samples[:64], samples[:16]


@pytest.fixture(scope="module")
def pool(synth_dir, labelled, tmp_path_factory):
    """The memorised images again, without their labels, so the teacher's readings can be checked against the truth."""
    folder = tmp_path_factory.mktemp("pool")
    for s in labelled[0]:
        shutil.copy(s.path, folder / s.path.name)
    return sorted(folder.glob("*.jpg")), {s.path.name: s.label for s in labelled[0]}


class Record(Callback):
    def __init__(self, stop_at_phase_epoch: int | None = None):
        self.epochs, self.pseudo, self.checkpoints, self.stop_at = [], None, [], stop_at_phase_epoch

    def on_epoch(self, m):
        self.epochs.append((m["phase"], m["epoch"], m["planned_epochs"]))

    def on_checkpoint(self, path, kind, metrics):
        self.checkpoints.append(path)

    def on_pseudo_labels(self, teacher, labels, info):
        self.pseudo = (teacher, labels, info)

    def should_stop(self):
        return self.stop_at is not None and sum(p == "self-training" for p, *_ in self.epochs) >= self.stop_at


def test_self_training_reads_the_pool_and_fine_tunes_on_labels_and_pseudo_labels(labelled, pool, learned, tmp_path):
    train, val = labelled
    files, truth = pool
    cfg = TrainConfig(epochs=3, self_train=0.34, pseudo_threshold=0.5, pseudo_lm=None, **FAST)
    cb = Record()
    summary = fit_self_training(train, val, files, tmp_path, cfg, init=learned[0], callback=cb)
    # one run to the callback: the teacher's epochs, then the student's, numbered on
    assert cb.epochs == [("teacher", 1, 2), ("teacher", 2, 2), ("self-training", 3, 3)]
    assert summary["epochs"] == 3 and all(p.parent == tmp_path for p in cb.checkpoints)  # only the student's
    teacher, labels, info = cb.pseudo
    assert teacher == tmp_path / "teacher" / "best.pt" and info["read"] == len(files) == 64
    assert len(labels) == info["kept"] >= 16 and all(p.confidence >= 0.5 for p in labels)
    right = sum(truth[p.path.name] == p.text for p in labels)
    assert right >= 0.9 * len(labels), f"{right} of {len(labels)} pseudo-labels right"
    with (tmp_path / "pseudo_labels.csv").open() as f:
        assert [r["text"] for r in csv.DictReader(f)] == [p.text for p in labels]
    provenance = load_checkpoint(tmp_path / "best.pt")["provenance"]["self_training"]
    assert provenance["pseudo_labels"] == len(labels) and provenance["threshold"] == 0.5
    assert provenance["teacher"] == str(teacher) and provenance["decoder"] == "greedy" and provenance["share"] == 0.34
    assert summary["self_training"]["pseudo_labels"] == len(labels)


def test_a_given_teacher_reads_the_pool_and_the_whole_run_is_the_student(labelled, pool, learned, tmp_path):
    """A labelling loop's current model reads the pool: no teacher phase, every epoch trains on labels + its
    pseudo-labels, from the model the run starts from."""
    train, val = labelled
    files, truth = pool
    cfg = TrainConfig(epochs=2, self_train=0.5, pseudo_threshold=0.5, pseudo_lm=None, **FAST)
    cb = Record()
    summary = fit_self_training(train, val, files, tmp_path, cfg, init=learned[0], callback=cb, teacher=learned[0])
    assert cb.epochs == [("self-training", 1, 2), ("self-training", 2, 2)] and summary["epochs"] == 2
    assert not (tmp_path / "teacher").exists()
    teacher, labels, info = cb.pseudo
    assert teacher == learned[0] and info["read"] == len(files) and info["teacher_given"]
    assert len(labels) >= 16 and sum(truth[p.path.name] == p.text for p in labels) >= 0.9 * len(labels)
    provenance = load_checkpoint(tmp_path / "best.pt")["provenance"]["self_training"]
    assert provenance["teacher"] == str(learned[0]) and provenance["pseudo_labels"] == len(labels)
    assert completed_epochs(tmp_path) == 2


def test_a_stopped_self_training_run_resumes_where_it_was(labelled, pool, learned, tmp_path):
    train, val = labelled
    cfg = TrainConfig(epochs=4, self_train=0.5, pseudo_threshold=0.5, pseudo_lm=None, **FAST)
    first = Record(stop_at_phase_epoch=1)
    stopped = fit_self_training(train, val, pool[0], tmp_path, cfg, init=learned[0], callback=first)
    assert stopped["stopped"] == "stop requested" and completed_epochs(tmp_path) == 3
    rest = Record()
    # resumed with the defaults: the run's own plan (saved beside it) decides, and the pool is not read again
    done = fit_self_training(train, val, [], tmp_path, TrainConfig(device="cpu"), resume=True, callback=rest)
    assert rest.pseudo is None and rest.epochs == [("self-training", 4, 4)]
    assert done["epochs"] == 4 and completed_epochs(tmp_path) == 4


@pytest.mark.parametrize("change, error, message", [
    ({"self_train": 0.4}, TrainingError, "self-training needs unlabelled images, and the pool given has none"),
    ({"self_train": 1.0}, ConfigError, r"self_train=1.0 must be a share of the run in \[0, 1\)"),
    ({"self_train": 0.4, "pseudo_threshold": 0.0}, ConfigError, r"pseudo_threshold=0.0 must be in \(0, 1\]"),
])
def test_a_self_training_run_that_cannot_work_is_refused_before_anything_is_written(labelled, tmp_path, change,
                                                                                    error, message):
    with pytest.raises(error, match=message):
        fit_self_training(*labelled, [], tmp_path / "run", TrainConfig(epochs=2, **FAST, **change))
    assert not (tmp_path / "run").exists()


def test_unreadable_pool_images_are_counted_and_left_out(pool, learned, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    labels, counts = read_pool(learned[0], [bad, *pool[0][:8]], TrainConfig(pseudo_threshold=0.5, pseudo_lm=None))
    assert counts["unreadable"] == 1 and counts["read"] == 8 and counts["pool"] == 9
    assert bad not in {p.path for p in labels}


def test_the_pool_is_read_with_the_views_asked_for(pool, learned):
    from ocr.decoding.decoder import DecoderConfig
    from ocr.recognize import Recognizer
    from ocr.training.selftrain import MIN_PSEUDO_LENGTH

    files = pool[0][:8]
    kept, counts = read_pool(learned[0], files, TrainConfig(pseudo_threshold=1e-9, pseudo_lm=None, pseudo_views=3))
    assert counts["decoder"] == "greedy+3 views" and counts["read"] == 8
    rec = Recognizer(learned[0])
    expected = [p.text for p in rec.read(files, rec.decoder(DecoderConfig(views=3))) if len(p.text) >= MIN_PSEUDO_LENGTH]
    assert [k.text for k in kept] == expected and expected


def test_ocr_train_self_train_needs_a_pool_and_a_valid_threshold(synth_dir, tmp_path):
    def run(*args):
        return subprocess.run([PY, "-m", "ocr", "train", "--data", f"{synth_dir}:train", "--out", str(tmp_path / "r"),
                               "--epochs", "1", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)

    out = run("--self-train", "0.4")
    assert out.returncode != 0 and "--self-train needs --unlabelled DIR" in out.stderr
    out = run("--self-train", "0.4", "--unlabelled", str(tmp_path), "--pseudo-threshold", "1.5")
    assert out.returncode != 0 and "pseudo_threshold=1.5 must be in (0, 1]" in out.stderr
    out = run("--self-train", "0.4", "--unlabelled", str(tmp_path), "--pseudo-views", "9")
    assert out.returncode != 0 and "pseudo_views=9 must be between 1 and 7" in out.stderr
    (tmp_path / "empty").mkdir()
    out = run("--self-train", "0.4", "--unlabelled", str(tmp_path / "empty"))
    assert out.returncode != 0 and "the pool given has none" in out.stderr and "Traceback" not in out.stderr
    out = run("--teacher", str(tmp_path / "missing.pt"))
    assert out.returncode != 0 and "--teacher reads the unlabelled images for --self-train" in out.stderr
    out = run("--self-train", "0.4", "--unlabelled", str(tmp_path), "--teacher", str(tmp_path / "missing.pt"))
    assert out.returncode != 0 and "missing.pt not found" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "r" / "teacher").exists() and not (tmp_path / "r" / "run.json").exists()


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)  # one backend: the kind's path
def test_a_train_job_self_trains_and_keeps_pseudo_labels_apart_from_labels(settings, synth_dir, learned, tmp_path):
    from sqlalchemy import select

    from db import catalog
    from db.engine import session
    from db.models import Model, Prediction, Sample
    from jobs import queue
    from jobs.context import JobContext, run_dir
    from jobs.kinds.train import TrainProgress
    from jobs.kinds.train import run as run_train
    from jobs.params import ParamsError

    catalog.import_dataset(settings, synth_dir, "synth", "synthetic")
    import_pool(settings, tmp_path / "scans", "pool", 30, seed=9)
    config = {**FAST, "epochs": 2, "self_train": 0.5, "pseudo_threshold": 0.01, "pseudo_lm": None}
    with pytest.raises(ParamsError, match="self-training needs unlabelled_datasets"):
        queue.submit(settings, "train", {"datasets": ["synth"], "config": config})
    from db.registry import register_checkpoint

    base = register_checkpoint(settings, learned[0], "best", name="learned")
    params = {"datasets": ["synth"], "config": config, "unlabelled_datasets": ["pool"], "init_model": base}
    job_id = queue.submit(settings, "train", params)
    result = run_train(JobContext(settings, job_id, params, progress_type=TrainProgress))
    assert result["self_training"]["read"] == 30
    with session(settings) as s:
        teacher = s.scalars(select(Model).where(Model.job_id == job_id, Model.kind == "teacher")).one()
        pseudo = s.scalars(select(Prediction).where(Prediction.model_id == teacher.id)).all()
        pool_labels = s.scalars(select(Sample.label).where(Sample.split == "pool")).all()
        assert {m.kind for m in s.scalars(select(Model).where(Model.job_id == job_id))} == {"teacher", "best", "last"}
    assert len(pseudo) == result["self_training"]["kept"] > 0 and all(p.split == "pool" and p.label is None for p in pseudo)
    assert len(pool_labels) == 30 and set(pool_labels) == {None}  # never written over a label
    assert catalog.training_items(settings, ["pool"]) == []
    assert json.loads((run_dir(settings, job_id) / "self_training.json").read_text())["kept"] == len(pseudo)


@pytest.mark.parametrize("settings", ["postgresql"], indirect=True)  # one backend: the kind's path
def test_a_loop_retrain_has_the_current_model_read_the_pool(settings, synth_dir, learned, tmp_path):
    """A train job given a teacher model stores the pseudo-labels as that model's predictions (no teacher phase, no
    teacher registered), and retraining a self-trained model makes the model retrained the teacher."""
    from sqlalchemy import select

    from db import catalog
    from db.engine import session
    from db.models import Model, Prediction
    from db.registry import register_checkpoint
    from jobs import queue
    from jobs.context import JobContext
    from jobs.kinds.train import TrainProgress
    from jobs.kinds.train import run as run_train
    from jobs.params import ParamsError

    catalog.import_dataset(settings, synth_dir, "synth", "synthetic")
    import_pool(settings, tmp_path / "scans", "pool", 30, seed=9)
    base = register_checkpoint(settings, learned[0], "best", name="learned")
    config = {**FAST, "epochs": 1, "self_train": 0.5, "pseudo_threshold": 0.01, "pseudo_lm": None}
    with pytest.raises(ParamsError, match="teacher_model reads the unlabelled images for self-training"):
        queue.submit(settings, "train", {"datasets": ["synth"], "teacher_model": base,
                                         "config": {k: v for k, v in config.items() if k != "self_train"}})
    with pytest.raises(ValueError, match="no model with id 999"):
        queue.submit(settings, "train", {"datasets": ["synth"], "config": config, "unlabelled_datasets": ["pool"],
                                         "teacher_model": 999})
    params = {"datasets": ["synth"], "config": config, "unlabelled_datasets": ["pool"], "init_model": base,
              "teacher_model": base}
    job_id = queue.submit(settings, "train", params)
    result = run_train(JobContext(settings, job_id, params, progress_type=TrainProgress))
    assert result["self_training"]["read"] == 30 and result["self_training"]["teacher_given"]
    with session(settings) as s:
        assert {m.kind for m in s.scalars(select(Model).where(Model.job_id == job_id))} == {"best", "last"}
        pseudo = s.scalars(select(Prediction).where(Prediction.model_id == base, Prediction.job_id == job_id)).all()
        best = s.scalars(select(Model.id).where(Model.job_id == job_id, Model.kind == "best")).one()
    assert len(pseudo) == result["self_training"]["kept"] > 0 and all(p.split == "pool" for p in pseudo)
    retrain_id = queue.submit_retrain(settings, best)
    retrain = next(j for j in queue.list_jobs(settings) if j["id"] == retrain_id)
    assert retrain["params"]["init_model"] == retrain["params"]["teacher_model"] == best

"""onnxruntime reads as torch does (same texts, logits within 1e-4 of theirs), from an ONNX file made once per
weights beside the checkpoint; either engine can be forced, and the one used is recorded."""

import shutil
import threading

import numpy as np
import pytest
import torch

from ocr.checkpoint import ModelError, load_checkpoint, save_checkpoint
from ocr.data.datasets import import_kaggle
from ocr.recognize import Recognizer
from ocr.sharing import STARTER


def _same_reading(onnx: Recognizer, torch_rec: Recognizer, files: list) -> None:
    arrays = [onnx.prepare(f) for f in files]
    logits, lengths, embeddings = onnx.outputs(arrays)
    expected, expected_lengths, expected_embeddings = torch_rec.outputs(arrays)
    assert torch.equal(lengths, expected_lengths)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(embeddings, expected_embeddings, atol=1e-5)
    assert [p.text for p in onnx.read(files)] == [p.text for p in torch_rec.read(files)]


def test_onnxruntime_reads_what_torch_reads(synth_dir):
    onnx, torch_rec = Recognizer(STARTER), Recognizer(STARTER, engine="torch")
    assert (onnx.engine.name, torch_rec.engine.name) == ("onnx", "torch")
    _same_reading(onnx, torch_rec, [s.path for s in import_kaggle(synth_dir).samples])


def test_onnxruntime_reads_the_real_crops_as_torch_does(real_data):
    files = sorted((real_data / "validation_v2" / "validation").glob("*.jpg"))
    assert len(files) >= 1000
    _same_reading(Recognizer(STARTER), Recognizer(STARTER, engine="torch"), files)


def test_the_onnx_file_is_made_once_per_weights_beside_the_checkpoint(trained, synth_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HWR_CACHE_DIR", str(tmp_path / "cache"))
    ckpt_path = tmp_path / "model.pt"
    shutil.copy(trained, ckpt_path)
    assert Recognizer(ckpt_path).engine.name == "torch"  # auto, and no file yet: torch reads it at once
    first = Recognizer(ckpt_path, engine="onnx")
    made = tmp_path / "model.pt.onnx"
    assert first.engine.path == made and made.is_file()
    stamp = made.stat().st_mtime_ns
    found = Recognizer(ckpt_path)  # auto, now that the file is there
    assert found.engine.name == "onnx" and found.engine.path == made and made.stat().st_mtime_ns == stamp
    ckpt = load_checkpoint(ckpt_path)
    ckpt["model"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    save_checkpoint(ckpt_path, ckpt)  # new weights under the same name: the file is theirs no more
    assert Recognizer(ckpt_path).engine.name == "torch"
    again = Recognizer(ckpt_path, engine="onnx")
    assert again.engine.digest != first.engine.digest and made.stat().st_mtime_ns != stamp
    _same_reading(again, Recognizer(ckpt_path, engine="torch"), [s.path for s in import_kaggle(synth_dir).samples[:40]])


def test_where_the_checkpoint_folder_cannot_take_it_the_cache_does(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("HWR_CACHE_DIR", str(tmp_path / "cache"))
    ckpt_path = tmp_path / "model.pt"
    shutil.copy(trained, ckpt_path)
    (tmp_path / "model.pt.onnx").mkdir()  # the place beside it is taken by a folder
    rec = Recognizer(ckpt_path, engine="onnx")
    assert rec.engine.name == "onnx" and rec.engine.path.parent == tmp_path / "cache" / "onnx"
    assert not [p for p in (tmp_path / "cache" / "onnx").iterdir() if p.name.endswith(".tmp")]


def test_either_engine_can_be_forced_and_a_wrong_one_is_one_line(trained):
    assert Recognizer(STARTER, engine="torch").engine.name == "torch"  # the starter ships its ONNX file
    assert Recognizer(trained, engine="onnx").engine.name == "onnx"
    with pytest.raises(ModelError, match="unknown engine 'tensorrt'; choose from auto, torch, onnx"):
        Recognizer(trained, engine="tensorrt")


def test_a_stream_reads_in_order_keeps_bad_images_apart_and_stops_when_left(synth_dir, tmp_path):
    files = [s.path for s in import_kaggle(synth_dir).samples[:150]]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    rec = Recognizer(STARTER)
    expected = [p.text for p in rec.read(files)]
    batches = list(rec.score_stream(files[:70] + [bad] + files[70:], batch_size=16))
    readings = [r for batch in batches for r in batch]
    assert [len(b) for b in batches] == [16] * 9 + [7]
    assert isinstance(readings[70], ValueError) and "not a readable image" in str(readings[70])
    assert [r.text for r in readings[:70] + readings[71:]] == expected
    stream = rec.score_stream(files, batch_size=8)
    next(stream)
    stream.close()  # leaving early: the batches queued behind are dropped, none left running
    assert not [t for t in threading.enumerate() if t.name.startswith("read")]


def test_reading_in_parallel_threads_matches_reading_alone(synth_dir):
    files = [s.path for s in import_kaggle(synth_dir).samples]
    rec = Recognizer(STARTER)
    alone = [p.text for p in rec.read_prepared([rec.prepare(f) for f in files])]
    assert rec.workers == torch.get_num_threads() + 1 >= 2
    assert [p.text for p in rec.read(files, batch_size=7)] == alone


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_a_predict_job_streams_the_pool_records_its_engine_and_stops_between_batches(settings, tmp_path):
    from sqlalchemy import func, select

    from db.engine import session
    from db.models import Prediction, Sample
    from db.registry import register_shipped_model
    from jobs import queue
    from jobs.context import JobContext
    from jobs.kinds.reading import run_predict
    from tests.conftest import _mark_running, import_pool

    import_pool(settings, tmp_path / "pool", "pool", 150, seed=3)
    with session(settings) as s:
        last = s.scalars(select(Sample.path).order_by(Sample.id.desc()).limit(1)).one()
    settings.local(last).write_bytes(b"\xff\xd8 cut off")  # its file damaged after the import: read, skipped, logged
    model = register_shipped_model(settings, STARTER)
    params = {"model": model, "dataset": "pool", "engine": "onnx"}
    done = run_predict(JobContext(settings, None, params))
    assert (done["n"], done["skipped_images"], done["engine"]) == (149, 1, "onnx")

    job = queue.submit(settings, "predict", params)
    _mark_running(settings, job)
    queue.request_cancel(settings, job)
    with session(settings) as s:
        before = s.scalar(select(func.count()).select_from(Prediction))
    stopped = run_predict(JobContext(settings, job, params))
    assert stopped == {"stopped": True, "read": 64}  # the first batch read, then the stop: nothing more
    with session(settings) as s:
        assert s.scalar(select(func.count()).select_from(Prediction)) == before
    assert queue.job_status(settings, job)["progress_data"]["done"] == 64

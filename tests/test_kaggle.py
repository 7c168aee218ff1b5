"""The download path up to the network: a stand-in client writes the zip the real API would."""

import json
import os
import zipfile
from pathlib import Path

import pytest

from ocr.data import kaggle
from ocr.data.datasets import import_kaggle


class FakeApi:
    def __init__(self, source, fail=None):
        self.source, self.fail = source, fail

    def dataset_download_files(self, dataset, path, unzip, quiet):
        assert dataset == "landlord/handwriting-recognition" and unzip is False
        if self.fail:
            raise self.fail
        with zipfile.ZipFile(f"{path}/handwriting-recognition.zip", "w") as zf:
            zf.write(self.source / "written_name_validation_v2.csv", "written_name_validation_v2.csv")
            for p in sorted((self.source / "validation_v2" / "validation").glob("*.jpg"))[:20]:
                zf.write(p, f"validation_v2/validation/{p.name}")


def test_download_then_import(real_data, tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "secret")
    folder = kaggle.download(tmp_path, client_factory=lambda: FakeApi(real_data))
    s = import_kaggle(folder).summary()
    assert s["rows"] == 1000 and s["usable"] == 19  # rows whose images are in the zip (row 6 is UNREADABLE)
    assert s["excluded"]["bad_image"] == 976


def test_network_failure_is_one_clear_message(real_data, tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "secret")
    with pytest.raises(kaggle.KaggleError, match="could not download .* check the network"):
        kaggle.download(tmp_path, client_factory=lambda: FakeApi(real_data, ConnectionError("unreachable")))


def test_no_credentials(tmp_path, monkeypatch):
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path))
    assert not kaggle.has_credentials()
    with pytest.raises(kaggle.KaggleError, match="no Kaggle credentials"):
        kaggle.download(tmp_path)


KAGGLE_JSON = '{"username": "ana", "key": "k"}'


@pytest.mark.parametrize("outcome", ["downloads", "fails"])
def test_kaggle_import_job_uses_then_deletes_the_credentials(settings, synth_dir, monkeypatch, outcome):
    """The Kaggle servers cannot be reached from here: a stand-in for ``ocr.data.kaggle.download`` checks what the job
    hands it; the job's import and clean-up are real."""
    import stat

    import ocr.data.kaggle
    from jobs import queue
    from jobs.context import JobContext
    from jobs.kinds.import_data import run as run_import

    monkeypatch.delenv("KAGGLE_CONFIG_DIR", raising=False)  # restored after the test: the job sets it
    params = {"path": str(settings.data_dir / "datasets" / "kaggle"), "name": "kaggle", "kaggle_dataset": ocr.data.kaggle.DATASET}
    job_id = queue.submit(settings, "import", params, secrets={"kaggle.json": KAGGLE_JSON})
    folder = settings.data_dir / "secrets" / str(job_id)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "kaggle.json").stat().st_mode) == 0o600
    assert "ana" not in json.dumps(queue.job_status(settings, job_id))
    seen = {}

    def download(out, dataset):
        seen["config"] = os.environ.get("KAGGLE_CONFIG_DIR")
        seen["token"] = (Path(seen["config"]) / "kaggle.json").read_text()
        if outcome == "fails":
            raise ocr.data.kaggle.KaggleError("could not download (no network)")
        return synth_dir

    monkeypatch.setattr(ocr.data.kaggle, "download", download)
    ctx = JobContext(settings, job_id, queue.job_status(settings, job_id)["params"])
    if outcome == "fails":
        with pytest.raises(ocr.data.kaggle.KaggleError):
            run_import(ctx)
    else:
        assert run_import(ctx)["added"] == 200
    assert seen == {"config": str(folder), "token": KAGGLE_JSON}
    assert not folder.exists()


def test_no_job_parameter_names_a_folder_to_delete(settings, tmp_path):
    from jobs import queue
    from jobs.params import JobError, ParamsError

    victim = tmp_path / "precious"
    victim.mkdir()
    (victim / "kaggle.json").write_text("{}")
    with pytest.raises(ParamsError, match="credentials="):
        queue.submit(settings, "import", {"path": str(tmp_path), "name": "k", "kaggle_dataset": "a/b",
                                          "credentials": str(victim)})
    with pytest.raises(JobError, match="needs the kaggle.json"):
        queue.submit(settings, "import", {"path": str(tmp_path), "name": "k", "kaggle_dataset": "a/b",
                                          "credentials": True})
    assert (victim / "kaggle.json").exists() and queue.list_jobs(settings) == []


def test_secrets_go_when_a_queued_job_is_cancelled_and_when_a_worker_starts(settings, tmp_path):
    from jobs import queue
    from jobs.context import secrets_dir

    params = {"path": str(tmp_path), "name": "k", "kaggle_dataset": "a/b"}
    cancelled = queue.submit(settings, "import", params, secrets={"kaggle.json": KAGGLE_JSON})
    waiting = queue.submit(settings, "import", params, secrets={"kaggle.json": KAGGLE_JSON})
    assert queue.request_cancel(settings, cancelled) == "cancelled"
    assert not secrets_dir(settings, cancelled).exists()
    # a job that ended while its secrets could not be removed (its worker was killed): the next worker removes them
    failed = queue.submit(settings, "import", params, secrets={"kaggle.json": KAGGLE_JSON})
    queue.finish(settings, failed, "failed", error="x", only_if_running=False)
    assert queue.clean_secrets(settings) == [failed]
    assert secrets_dir(settings, waiting).exists() and not secrets_dir(settings, failed).exists()

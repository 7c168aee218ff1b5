"""The download path up to the network: a stand-in client writes the zip the real API would."""

import os
import zipfile
from pathlib import Path

import pytest

from ocr import kaggle
from ocr.datasets import import_kaggle


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


def _credentials(settings) -> str:
    import json as _json

    folder = settings.data_dir / "secrets" / "x"
    folder.mkdir(parents=True, mode=0o700)
    (folder / "kaggle.json").write_text(_json.dumps({"username": "ana", "key": "k"}))
    return str(folder)


@pytest.mark.parametrize("outcome", ["downloads", "fails"])
def test_kaggle_import_job_uses_then_deletes_the_credentials(settings, synth_dir, monkeypatch, outcome):
    """The Kaggle servers cannot be reached from here: a stand-in for ``ocr.kaggle.download`` checks what the job
    hands it; the job's import and clean-up are real."""
    import ocr.kaggle
    from jobs.tasks import JobContext, run_import

    monkeypatch.delenv("KAGGLE_CONFIG_DIR", raising=False)  # restored after the test: the job sets it
    creds = _credentials(settings)
    seen = {}

    def download(out, dataset):
        seen["config"] = os.environ.get("KAGGLE_CONFIG_DIR")
        seen["token"] = (Path(seen["config"]) / "kaggle.json").exists()
        if outcome == "fails":
            raise ocr.kaggle.KaggleError("could not download (no network)")
        return synth_dir

    monkeypatch.setattr(ocr.kaggle, "download", download)
    params = {"path": str(settings.data_dir / "datasets" / "kaggle"), "name": "kaggle", "kaggle_dataset": ocr.kaggle.DATASET,
              "credentials": creds}
    if outcome == "fails":
        with pytest.raises(ocr.kaggle.KaggleError):
            run_import(JobContext(settings, None, params))
    else:
        assert run_import(JobContext(settings, None, params))["added"] == 200
    assert seen == {"config": creds, "token": True}
    assert not Path(creds).exists()

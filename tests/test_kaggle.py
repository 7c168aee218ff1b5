"""The download path up to the network: a stand-in client writes the zip the real API would."""

import zipfile

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

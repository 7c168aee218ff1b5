import csv
import shutil
import zipfile

import pytest
from PIL import Image

from ocr.data.datasets import DatasetError, holdout_split, import_kaggle, parse_data_arg, safe_extract


def test_real_sample_counts(real_data):
    s = import_kaggle(real_data).summary()
    assert s["rows"] == 1000
    assert s["excluded"] == {"blank": 1, "unreadable": 1, "empty": 3, "bad_chars": 0, "too_long": 0, "bad_image": 0,
                             "conflicting": 0}
    assert s["usable"] == 995 and s["splits"] == {"validation": 995}
    assert "VALIDATION_0254.jpg" in s["examples"]["blank"][0]


def test_real_sample_from_zip(real_data, tmp_path):
    archive = tmp_path / "handwriting-recognition.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.write(real_data / "written_name_validation_v2.csv", "written_name_validation_v2.csv")
        for p in sorted((real_data / "validation_v2" / "validation").glob("*.jpg")):
            zf.write(p, f"validation_v2/validation/{p.name}")
    s = import_kaggle(archive).summary()
    assert (s["rows"], s["usable"], s["excluded"]["empty"]) == (1000, 995, 3)
    assert import_kaggle(archive).summary()["usable"] == 995  # second import reuses the extraction


def make_layout(root, rows, split="train"):
    folder = root / f"{split}_v2" / split
    folder.mkdir(parents=True)
    with (root / f"written_name_{split}_v2.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["FILENAME", "IDENTITY"])
        w.writerows(rows)
    return folder


def test_bad_input_is_reported_and_the_rest_loads(tmp_path):
    rows = [("GOOD_1.jpg", "martin "), ("GOOD_2.jpg", "Lea"), ("CORRUPT.jpg", "PAUL"), ("ZERO.jpg", "PAUL"),
            ("TEXT.jpg", "PAUL"), ("HUGE.png", "PAUL"), ("MISSING.jpg", "PAUL"), ("GOOD_3.jpg", "JÉRÔME"),
            ("GOOD_4.jpg", "ANNE2"), ("GOOD_5.jpg", "UNREADABLE"), ("GOOD_6.jpg", "empty"), ("GOOD_7.jpg", ""),
            ("../../etc/passwd", "ROOT"), ("GOOD_8.jpg", "NAN")]
    folder = make_layout(tmp_path, rows)
    for name in [f"GOOD_{i}.jpg" for i in range(1, 9)]:
        Image.new("RGB", (284, 36), "white").save(folder / name)
    full = folder / "GOOD_1.jpg"
    (folder / "CORRUPT.jpg").write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2])
    (folder / "ZERO.jpg").write_bytes(b"")
    (folder / "TEXT.jpg").write_text("this is not an image")
    Image.new("1", (20000, 20000)).save(folder / "HUGE.png")

    result = import_kaggle(tmp_path)
    s = result.summary()
    assert [(x.path.name, x.label) for x in result.samples] == [("GOOD_1.jpg", "MARTIN"), ("GOOD_2.jpg", "LEA"),
                                                                 ("GOOD_8.jpg", "NAN")]
    assert s["excluded"] == {"blank": 1, "unreadable": 1, "empty": 1, "bad_chars": 2, "too_long": 0, "bad_image": 6,
                             "conflicting": 0}
    assert s["bad_characters"] == {"É": 1, "Ô": 1, "2": 1}
    details = {e.filename: e.detail for e in result.excluded if e.reason == "bad_image"}
    assert "0 bytes" in details["ZERO.jpg"]
    assert "not a readable image" in details["TEXT.jpg"]
    assert "not a readable image" in details["CORRUPT.jpg"] or "truncated" in details["CORRUPT.jpg"]
    assert "too large" in details["HUGE.png"]
    assert "not found" in details["MISSING.jpg"]
    assert "outside the image folder" in details["../../etc/passwd"]


def test_missing_column_fails_the_whole_import_naming_the_file(tmp_path):
    folder = make_layout(tmp_path, [("A.jpg", "LEA")], "train")
    Image.new("RGB", (284, 36), "white").save(folder / "A.jpg")
    make_layout(tmp_path, [], "validation")
    (tmp_path / "written_name_validation_v2.csv").write_text("FILENAME,NAME\nB.jpg,LEA\n")
    with pytest.raises(DatasetError, match=r"validation_v2.csv: missing column\(s\) IDENTITY \(found FILENAME, NAME\)"):
        import_kaggle(tmp_path)


def test_unsafe_zip_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../escaped.txt", "x")
    with pytest.raises(ValueError, match="escapes the target folder"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()


def test_not_a_dataset(tmp_path):
    with pytest.raises(ValueError, match="not a Kaggle-layout folder"):
        import_kaggle(tmp_path)
    with pytest.raises(ValueError, match="no such file"):
        import_kaggle(tmp_path / "nope")
    shutil.copy(__file__, tmp_path / "x.zip")
    with pytest.raises(ValueError, match="x.zip: not a readable zip file"):
        import_kaggle(tmp_path / "x.zip")


def test_data_arg_and_holdout():
    assert parse_data_arg("data/kaggle:train,validation") == ("data/kaggle", ("train", "validation"))
    assert parse_data_arg("C:/data") == ("C:/data", None)
    items = list(range(100))
    train, val = holdout_split(items, 0.05, seed=3)
    assert len(val) == 5 and sorted(train + val) == items
    assert holdout_split(items, 0.05, seed=3) == (train, val)

"""Dashboard pages through Streamlit's AppTest, against a real temporary database."""

from __future__ import annotations

import shutil

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT, import_pool

APP = str(ROOT / "dashboard" / "app.py")


@pytest.fixture
def app_env(tmp_path, monkeypatch):
    from db.settings import Settings

    monkeypatch.setenv("HWR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("HWR_DATABASE_URL", raising=False)
    monkeypatch.setenv("HWR_START_WORKER", "0")
    monkeypatch.setenv("HWR_DEFAULT_DATA", "0")
    yield Settings.from_env()
    from db.engine import dispose_engines

    dispose_engines()


def test_overview_offers_a_starter_model_and_queues_it(app_env):
    from jobs.queue import list_jobs

    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception
    assert at.title[0].value == "Handwriting OCR"
    assert any("No worker is alive" in w.value for w in at.warning)
    _button(at, "Train a starter model").click().run()
    assert not at.exception
    jobs = list_jobs(app_env)
    assert sorted(j["kind"] for j in jobs) == ["synth", "train"]
    assert jobs[0]["params"]["datasets"] == ["synthetic-default"]
    assert jobs[0]["params"]["unlabelled_datasets"] == [] and "self_train" not in jobs[0]["params"]["config"]


def test_a_fresh_dashboard_reads_with_the_shipped_model_and_offers_to_train_your_own(app_env, learned, tmp_path,
                                                                                    monkeypatch):
    import ocr.sharing
    from db.registry import default_model
    from jobs.queue import list_jobs
    from ocr.checkpoint import load_checkpoint
    from ocr.pretrained import save_pretrained

    save_pretrained(load_checkpoint(learned[0]), tmp_path / "starter")
    monkeypatch.setattr(ocr.sharing, "STARTER", tmp_path / "starter")
    monkeypatch.setenv("HWR_STARTER_MODEL", "1")
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception
    model = default_model(app_env)
    assert model is not None and model.name.startswith("starter")
    assert any("ships with the project is the default" in m.value for m in at.markdown)
    _button(at, "Train your own model").click().run()
    assert sorted(j["kind"] for j in list_jobs(app_env)) == ["synth", "train"]
    at.switch_page(str(ROOT / "dashboard" / "app_pages" / "draw.py")).run()
    assert not at.exception and not any("No model yet" in i.value for i in at.info)


def test_the_starter_model_self_trains_on_an_unlabelled_pool(app_env, tmp_path):
    from jobs.queue import list_jobs

    import_pool(app_env, tmp_path / "scans", "scans", 4, seed=3)
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert at.checkbox(key="starter_self_train").value
    _button(at, "Train a starter model").click().run()
    assert not at.exception
    train = [j for j in list_jobs(app_env) if j["kind"] == "train"][0]["params"]
    assert train["unlabelled_datasets"] == ["scans"] and train["config"]["self_train"] == 0.35


@pytest.fixture
def populated(app_env, synth_dir, trained):
    from tests.conftest import populate

    return populate(app_env, synth_dir, trained)


def _page(name: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(str(ROOT / "dashboard" / "app_pages" / f"{name}.py")).run()
    assert not at.exception, at.exception
    return at


def _button(at: AppTest, label: str, index: int = 0):
    return [b for b in at.button if b.label == label][index]


def test_navigation_shows_the_pages(app_env):
    from streamlit.testing.v1 import AppTest as _  # noqa: F401

    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception
    source = (ROOT / "dashboard" / "app.py").read_text()
    for title in ("Overview", "Data", "Train", "Review", "Label next", "Draw", "Models", "Settings"):
        assert f'title="{title}"' in source


def test_data_page_browses_imports_and_generates(populated):
    from jobs.queue import list_jobs

    at = _page("data")
    assert "200 samples" in at.number_input(key="browse_page").label
    at.text_input(key="folder_path").input("/no/such/folder")
    _button(at, "Import").click().run()
    assert any("outside the folders this server imports from" in e.value for e in at.error)
    at.selectbox(key="folder_charset").set_value("any")
    at.checkbox(key="folder_upper").uncheck()
    at.text_input(key="folder_path").input(str(populated["settings"].data_dir))
    _button(at, "Import").click().run()
    at.number_input(key="synth_n").set_value(10)
    at.text_input(key="synth_name").input("more")
    at.selectbox(key="synth_kind").set_value("dates")
    _button(at, "Generate").click().run()
    assert not at.exception
    jobs = list_jobs(populated["settings"])
    assert [j["kind"] for j in jobs if j["status"] == "queued"] == ["synth", "import"]
    assert jobs[0]["params"]["name"] == "more" and jobs[0]["params"]["n"] == 10 and jobs[0]["params"]["kind"] == "dates"
    assert (jobs[1]["params"]["charset"], jobs[1]["params"]["upper"]) == ("any", False)  # the label rules


def test_train_page_queues_a_job_shows_it_and_cancels_it(populated):
    from jobs.queue import list_jobs

    at = _page("train")
    at.number_input(key="train_epochs").set_value(3)
    at.selectbox(key="train_scheduler").set_value("cosine")
    at.selectbox(key="train_charset").set_value("latin")
    _button(at, "Start training").click().run()
    assert not at.exception
    new = [j for j in list_jobs(populated["settings"]) if j["kind"] == "train" and j["status"] == "queued"]
    assert len(new) == 1 and new[0]["params"]["config"]["epochs"] == 3
    assert new[0]["params"]["config"]["charset"] == "latin" and new[0]["params"]["config"]["grow_charset"] is True
    assert new[0]["params"]["config"]["scheduler"] == "cosine" and new[0]["params"]["datasets"] == ["synth"]
    at.selectbox(key="train_job").set_value(new[0]["id"]).run()
    _button(at, "Cancel").click().run()
    assert not at.exception
    assert next(j for j in list_jobs(populated["settings"]) if j["id"] == new[0]["id"])["status"] == "cancelled"


def test_train_page_offers_self_training_on_a_pool_and_shows_what_it_did(populated, tmp_path):

    from jobs.queue import finish, list_jobs
    from tests.conftest import _mark_running

    s = populated["settings"]
    import_pool(s, tmp_path / "scans", "scans", 6, seed=11)
    at = _page("train")
    pool = at.multiselect(key="train_pool")
    assert pool.options == ["scans (6 without a label)"]
    pool.set_value(["scans"])
    at.slider(key="train_self_share").set_value(0.5)
    _button(at, "Start training").click().run()
    assert not at.exception
    job = next(j for j in list_jobs(s) if j["kind"] == "train" and j["status"] == "queued")
    assert job["params"]["unlabelled_datasets"] == ["scans"]
    assert {k: job["params"]["config"][k] for k in ("self_train", "pseudo_threshold", "pseudo_lm")} == {
        "self_train": 0.5, "pseudo_threshold": 0.5, "pseudo_lm": "names"}
    _mark_running(s, job["id"])
    finish(s, job["id"], "succeeded", result={"self_training": {"kept": 4, "read": 6, "threshold": 0.9,
                                                                "decoder": "beam20+names LM", "teacher_val_cer": 0.2}})
    at.selectbox(key="train_job").set_value(job["id"]).run()
    assert any("self-training: 4 pseudo-labels of 6 unlabelled images" in c.value for c in at.caption)

    # the start model as the teacher: refused without one, queued as the job's teacher_model with one
    at.checkbox(key="train_teacher_is_init").check()
    _button(at, "Start training").click().run()
    assert any("choose a model to start from" in e.value for e in at.error)
    at.selectbox(key="train_init").set_value(populated["model_id"])
    _button(at, "Start training").click().run()
    queued = [j for j in list_jobs(s) if j["kind"] == "train" and j["status"] == "queued"]
    assert [(j["params"]["init_model"], j["params"]["teacher_model"]) for j in queued] == [(populated["model_id"],) * 2]


def test_review_page_finds_label_errors_and_fixes_one(populated):
    from db import catalog, corrections
    from db.review import suspected_label_errors
    from jobs.context import JobContext
    from jobs.kinds.label_errors import run as run_find_label_errors
    from jobs.queue import finish, list_jobs
    from tests.conftest import _mark_running

    s = populated["settings"]
    at = _page("review")
    at.radio(key="review_mode").set_value("suspected label errors").run()
    assert not at.exception and any("No search has finished yet" in i.value for i in at.info)
    at.number_input(key="le_folds").set_value(2)
    at.number_input(key="le_minutes").set_value(0.5)
    _button(at, f"Find label errors with model #{populated['model_id']}").click().run()
    assert not at.exception
    job = next(j for j in list_jobs(s) if j["kind"] == "find-label-errors")
    assert job["params"] == {"model": populated["model_id"], "datasets": ["synth"], "splits": None, "folds": 2,
                             "max_minutes": 0.5, "lm": True}
    params = {**job["params"], "max_minutes": 0.05}  # the real search, kept short here
    _mark_running(s, job["id"])
    finish(s, job["id"], "succeeded", result=run_find_label_errors(JobContext(s, job["id"], params)))
    rows, total = suspected_label_errors(s, job["id"])
    assert total > 0, "the barely trained model doubts some labels"
    at = _page("review")
    at.radio(key="review_mode").set_value("suspected label errors").run()
    assert not at.exception
    assert any("read out of fold" in m.value for m in at.markdown)
    hard = suspected_label_errors(s, job["id"], page_size=100, hard_to_read=True)[1]
    at.radio(key="le_list").set_value("hard to read").run()  # doubted without a sure reading: their own list
    assert not at.exception and f"{hard:,} doubted without a sure reading" in at.number_input(key="le_page").label
    at.radio(key="le_list").set_value("suspected errors").run()
    sid = rows[0]["sample_id"]
    [b for b in at.button if b.label == "Exclude"][0].click().run()
    assert not at.exception
    assert corrections.history(s, sid)[-1]["new_status"] == "excluded"
    assert suspected_label_errors(s, job["id"])[1] == total - 1
    assert sid not in {it.sample_id for it in catalog.training_items(s, ["synth"])}


def test_label_next_page_walks_the_pool_uncertain_first(populated, tmp_path):

    from db import catalog, corrections
    from db.review import label_queue
    from jobs.context import JobContext
    from jobs.kinds.reading import run_predict
    from jobs.queue import list_jobs

    s, model_id = populated["settings"], populated["model_id"]
    import_pool(s, tmp_path / "scans", "scans", 8, seed=21)
    at = _page("label")
    assert at.metric[2].value == "8"  # not read by this model yet
    _button(at, f"Read the pool with model #{model_id} (names language model)").click().run()
    assert not at.exception
    run_predict(JobContext(s, None, {"model": model_id, "dataset": "scans"}))  # what the queued job does
    queue_now, read = label_queue(s, model_id, size=8)
    assert read == 8 and queue_now[0]["confidence"] == min(q["confidence"] for q in queue_now)  # uncertain first
    at = _page("label")
    first = queue_now[0]["sample_id"]
    at.text_input(key=f"label-next-{first}").input("anna  2")
    _button(at, "Save").click().run()
    assert not at.exception
    assert corrections.history(s, first)[-1]["new_label"] == "ANNA 2" and at.metric[0].value == "1"
    shown = [i.value.replace("\\", "").replace("\u2060", "") for i in at.info]  # as typed, without plain()'s escapes
    assert any("New character(s) for this dataset: '2'" in text for text in shown)  # taken, and said so
    second = label_queue(s, model_id, size=1)[0][0]["sample_id"]
    _button(at, "Skip `Esc`").click().run()
    third = label_queue(s, model_id, size=1, skip=frozenset({second}))[0][0]["sample_id"]
    assert any(third == int(t.key.rsplit("-", 1)[1]) for t in at.text_input if t.key.startswith("label-next-"))
    _button(at, "Unreadable `Alt+U`").click().run()
    assert not at.exception
    assert corrections.history(s, third)[-1]["new_status"] == "unreadable" and at.metric[0].value == "2"
    assert {it.sample_id for it in catalog.training_items(s, ["scans"])} == {first}
    _button(at, "Retrain with new labels").click().run()
    assert not at.exception
    retrain = [j for j in list_jobs(s) if j["kind"] == "train" and j["status"] == "queued"]
    assert len(retrain) == 1 and retrain[0]["params"]["init_model"] == model_id
    assert retrain[0]["params"]["datasets"] == ["synth", "scans"]  # what it was trained on, plus the new labels
    assert retrain[0]["params"]["config"]["max_minutes"] == 5.0


def test_review_page_corrects_accepts_undoes_and_retrains(populated):
    from db import corrections
    from jobs.queue import list_jobs

    s = populated["settings"]
    at = _page("review")
    labels = [t for t in at.text_input if t.key and t.key.startswith("label-")]
    assert labels, "no mistakes shown"
    sid = int(labels[0].key.split("-")[1])
    labels[0].input("JEAN-LUC")
    _button(at, "Save").click().run()
    assert not at.exception
    assert corrections.history(s, sid)[-1]["new_label"] == "JEAN-LUC"

    at = _page("review")
    field = [t for t in at.text_input if t.key and t.key.startswith("label-")][0]
    field.input("JOSÉ 😀")
    _button(at, "Save").click().run()
    assert any("no character set allows" in e.value for e in at.error)
    before = len(corrections.history(s, int(field.key.split("-")[1])))

    at = _page("review")
    assert at.metric[0].value == "1"  # one corrected sample since the model's data was read
    _button(at, "Retrain with corrections (fine-tune from this model)").click().run()
    retrain = [j for j in list_jobs(s) if j["kind"] == "train" and j["status"] == "queued"]
    assert len(retrain) == 1 and retrain[0]["params"]["init_model"] == populated["model_id"]
    assert len(corrections.history(s, int(field.key.split("-")[1]))) == before


def test_edits_carry_the_name_of_whoever_made_them(populated):
    """No login configured: the name given on Settings for this browser session, else the OS user."""
    import getpass

    from db import catalog, corrections

    s = populated["settings"]
    at = _page("review")
    field = [t for t in at.text_input if t.key and t.key.startswith("label-")][0]
    field.input("ANNA")
    _button(at, "Save").click().run()
    assert corrections.history(s, int(field.key.split("-")[1]))[-1]["user"] == getpass.getuser()
    at.switch_page(str(ROOT / "dashboard" / "app_pages" / "settings.py")).run()
    at.text_input(key="user_name_input").input("  Ana   Lima ").run()
    assert not at.exception
    at.switch_page(str(ROOT / "dashboard" / "app_pages" / "review.py")).run()
    field = [t for t in at.text_input if t.key and t.key.startswith("label-")][0]
    field.input("LEA")
    _button(at, "Save").click().run()
    history = corrections.history(s, int(field.key.split("-")[1]))
    assert history[-1]["user"] == "Ana Lima"
    assert "Ana Lima" in catalog.edits_csv(s, "synth")


def test_a_dashboard_open_to_the_network_without_login_says_so(app_env):
    from streamlit import config

    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not any("without a login" in w.value for w in at.warning)
    config.set_option("server.address", "0.0.0.0")
    try:
        at = AppTest.from_file(APP, default_timeout=30).run()
    finally:
        config.set_option("server.address", "127.0.0.1")
    assert any("listens on 0.0.0.0 without a login" in w.value for w in at.warning)


def test_pages_keep_their_model_while_a_training_job_registers_better_ones(populated):
    """A running job rewrites its best.pt each epoch and soon becomes the default model: a page left open on a model
    keeps it, and what is submitted there applies to that model."""
    from db import corrections
    from db.registry import default_model, register_checkpoint
    from jobs.queue import list_jobs

    s = populated["settings"]
    old = populated["model_id"]
    job_best = s.data_dir / "runs" / "job-99" / "best.pt"
    review = _page("review")
    assert review.selectbox(key="review_model").value == old
    best = register_checkpoint(s, job_best, "best", epoch=1, metrics={"val_cer": 0.5})
    last = register_checkpoint(s, job_best.with_name("last.pt"), "last", epoch=1, metrics={"val_cer": 0.5})
    models = _page("models")
    assert models.selectbox(key="models_model").options[:2] == [f"#{best} runs/job-99/best.pt", f"#{last} runs/job-99/last.pt"]
    models.selectbox(key="models_model").set_value(last).run()  # not the first choice: a reset would show
    assert models.caption[0].value.replace("\\", "").replace("\u2060", "") == "epoch 1 · val CER 0.500"  # shown through plain()

    for path, kind in ((job_best, "best"), (job_best.with_name("last.pt"), "last")):  # the job's next epoch
        register_checkpoint(s, path, kind, epoch=2, metrics={"val_cer": 0.2})
    models.selectbox(key="eval_split").set_value("train")
    _button(models, "Run evaluation job").click().run()
    assert [j["params"]["model"] for j in list_jobs(s) if j["kind"] == "evaluate" and j["status"] == "queued"] == [last]
    assert models.caption[0].value.replace("\\", "").replace("\u2060", "") == "epoch 2 · val CER 0.200"

    assert default_model(s).id == best
    field = [t for t in review.text_input if t.key and t.key.startswith("label-")][0]
    field.input("MARIE-CLAIRE")
    _button(review, "Save").click().run()
    assert not review.exception
    assert review.selectbox(key="review_model").value == old
    assert corrections.history(s, int(field.key.split("-")[1]))[-1]["new_label"] == "MARIE-CLAIRE"


def test_draw_page_waits_for_a_drawing(populated):
    at = _page("draw")
    assert any("Draw a word" in i.value for i in at.info)


def test_drawings_become_samples(app_env):
    import numpy as np

    from dashboard.drawing import is_blank, to_image, to_png
    from db import catalog

    blank = np.zeros((120, 720, 4), np.uint8)
    assert is_blank(blank)
    ink = blank.copy()
    ink[40:80, 100:110] = (20, 20, 20, 255)
    assert not is_blank(ink)
    image = to_image(ink)
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (255, 255, 255) and image.getpixel((105, 50))[0] < 50
    sid = catalog.add_drawn_sample(app_env, to_png(image), "anne")
    items = catalog.training_items(app_env, ["drawn"])
    assert [(it.sample_id, it.label) for it in items] == [(sid, "ANNE")] and items[0].path.exists()
    with pytest.raises(catalog.CatalogError, match="characters no character set allows"):
        catalog.add_drawn_sample(app_env, to_png(image), "ANNE 😀")
    with pytest.raises(ValueError, match="already sample"):
        catalog.add_drawn_sample(app_env, to_png(image), "ANNE")


def test_models_page_default_evaluate_report_export(populated):
    from db.registry import default_model
    from jobs.queue import list_jobs

    s = populated["settings"]
    at = _page("models")
    _button(at, "Set as default model").click().run()
    assert default_model(s).id == populated["model_id"] and default_model(s).is_default
    at.selectbox(key="eval_split").set_value("train")
    at.number_input(key="eval_views").set_value(5)
    _button(at, "Run evaluation job").click().run()
    queued = [j["params"] for j in list_jobs(s) if j["kind"] == "evaluate" and j["status"] == "queued"]
    assert [(p["split"], p["lm"], p["views"]) for p in queued] == [("train", True, 5)]
    _button(at, "Read the unlabelled samples").click().run()
    assert [(j["kind"], j["params"]["views"]) for j in list_jobs(s) if j["status"] == "queued"] == [("predict", 1),
                                                                                                    ("evaluate", 5)]
    at.selectbox(key="export_format").set_value("pt2")
    _button(at, "Prepare the export").click().run()
    assert not at.exception
    assert at.session_state["export_zip"][0].endswith("pt2.zip")
    at.text_input(key="publish_repo").set_value("not a repo id")
    _button(at, "Write the folder only (dry run)").click().run()
    assert any("is not a Hugging Face repo id" in e.value for e in at.error)
    at.text_input(key="publish_repo").set_value("someone/tiny")
    _button(at, "Write the folder only (dry run)").click().run()
    published = [j["params"] for j in list_jobs(s) if j["kind"] == "publish"]
    assert published == [{"model": populated["model_id"], "repo_id": "someone/tiny", "private": False,
                          "evaluation_job": None, "dry_run": True, "license": "mit"}]


def test_first_start_queues_the_default_synthetic_data_once(app_env, monkeypatch):
    import streamlit as st

    from jobs.queue import list_jobs

    monkeypatch.setenv("HWR_DEFAULT_DATA", "300")
    st.cache_resource.clear()
    for _ in range(2):
        at = AppTest.from_file(APP, default_timeout=30).run()
        assert not at.exception
    jobs = list_jobs(app_env)
    assert [(j["kind"], j["params"]["n"], j["params"]["name"], j["params"]["unlabelled"]) for j in jobs] == [
        ("synth", 30, "synthetic-pool", True), ("synth", 300, "synthetic-default", False)]  # newest first
    st.cache_resource.clear()


def test_first_open_shows_the_loop_with_the_starter_model(app_env, learned, tmp_path, monkeypatch):
    """With the starter registered at first open, its evaluation on the default validation split (Review's mistakes)
    and its reading of the default pool (Label next's order) are queued after the data, and the Overview shows what
    its card measured on real handwriting."""
    import streamlit as st

    import ocr.sharing
    from jobs.queue import list_jobs
    from ocr.checkpoint import load_checkpoint
    from ocr.pretrained import save_pretrained

    save_pretrained(load_checkpoint(learned[0]), tmp_path / "starter")
    shutil.copy(ocr.sharing.STARTER / "README.md", tmp_path / "starter" / "README.md")  # the card and its figures
    monkeypatch.setattr(ocr.sharing, "STARTER", tmp_path / "starter")
    monkeypatch.setenv("HWR_STARTER_MODEL", "1")
    monkeypatch.setenv("HWR_DEFAULT_DATA", "200")
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception
    jobs = sorted(list_jobs(app_env), key=lambda j: j["id"])
    starter = jobs[2]["params"]["model"]
    assert [(j["kind"], j["params"]["name" if j["kind"] == "synth" else "dataset"]) for j in jobs] == [
        ("synth", "synthetic-default"), ("synth", "synthetic-pool"), ("evaluate", "synthetic-default"),
        ("predict", "synthetic-pool")]
    assert jobs[2]["params"]["split"] == "validation" and jobs[2]["params"]["lm"] and jobs[3]["params"]["model"] == starter
    assert [m.value for m in at.metric][-2:] == ["0.784", "0.067"]
    assert any("real Kaggle validation rows 801" in c.value for c in at.caption)
    st.cache_resource.clear()


def test_settings_page_shows_where_things_are(app_env):
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.switch_page(str(ROOT / "dashboard" / "app_pages" / "settings.py")).run()
    assert not at.exception
    assert at.title[0].value == "Settings"
    assert str(app_env.data_dir) in at.table[0].value["value"].tolist()


def test_opening_the_dashboard_starts_a_worker(app_env, monkeypatch):
    import os
    import signal

    import streamlit as st

    from jobs.control import worker_alive
    from jobs.queue import alive_workers
    from tests.conftest import process_state, wait_for

    monkeypatch.setenv("HWR_START_WORKER", "1")
    monkeypatch.setenv("HWR_DEVICE", "cpu")
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception
    try:
        wait_for(lambda: worker_alive(app_env), 30, "the worker started by the dashboard")
    finally:
        for w in alive_workers(app_env, within=3600):
            os.kill(w.pid, signal.SIGTERM)
            wait_for(lambda pid=w.pid: process_state(pid) is None, 20, "the worker to stop")
        st.cache_resource.clear()


def test_character_diff_marks_what_the_model_dropped_and_added():
    from dashboard.state import diff_html

    out = diff_html("JEAN LUC", "JEAN LOC")
    assert "JEAN&nbsp;L" in out and '<del style="background:#fdd">U</del>' in out
    assert '<ins style="background:#dfd;text-decoration:none">O</ins>' in out
    assert "&lt;b&gt;" in diff_html("<b>", "")  # text is escaped, never markup


def test_kaggle_credentials_never_reach_the_database(app_env):
    import json
    import stat

    from jobs.queue import list_jobs

    at = _page("data")
    at.text_input(key="kaggle_user").input("ana")
    at.text_input(key="kaggle_key").input("s3cr3t-k3y")
    _button(at, "Download and import").click().run()
    assert not at.exception
    (job,) = list_jobs(app_env)
    assert "s3cr3t" not in json.dumps(job)
    assert job["params"]["credentials"] is True
    token = app_env.data_dir / "secrets" / str(job["id"]) / "kaggle.json"
    assert json.loads(token.read_text())["key"] == "s3cr3t-k3y"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and stat.S_IMODE(token.parent.stat().st_mode) == 0o700

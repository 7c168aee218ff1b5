"""Dashboard pages through Streamlit's AppTest, against a real temporary database."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT

APP = str(ROOT / "dashboard" / "app.py")


@pytest.fixture
def app_env(tmp_path, monkeypatch):
    from db.settings import Settings

    monkeypatch.setenv("HWR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("HWR_DATABASE_URL", raising=False)
    monkeypatch.setenv("HWR_START_WORKER", "0")
    yield Settings.from_env()
    from db.engine import dispose_engines

    dispose_engines()


def test_overview_offers_a_starter_model_and_queues_it(app_env):
    from jobs.queue import list_jobs

    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception
    assert at.title[0].value == "Handwriting OCR"
    assert any("No worker is alive" in w.value for w in at.warning)
    at.button[0].click().run()
    assert not at.exception
    jobs = list_jobs(app_env)
    assert sorted(j["kind"] for j in jobs) == ["synth", "train"]
    assert jobs[0]["params"]["datasets"] == ["synthetic-default"]


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

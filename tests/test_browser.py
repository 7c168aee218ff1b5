"""End to end in a real browser: Debian's Chromium driven by Playwright against ``streamlit run dashboard/app.py`` on a
free localhost port, with the worker the dashboard starts itself. Train and see the live chart get points, correct a
label on Review (checked in the database), draw a word and see a prediction. Screenshots go to the test's folder
(and to ``docs/`` with ``HWR_SCREENSHOTS=docs``)."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.conftest import PY, ROOT, _free_port, populate, process_state, stop_process, wait_for

CHROMIUM = Path("/usr/bin/chromium")
EVIL_LABEL = "[X](HTTPS://EVIL.EXAMPLE/LOGIN) WWW.EVIL.EXAMPLE <B>:RED[BOLD]</B>"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@pytest.fixture
def browser_context(tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run does it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements.txt)")
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            tempfile.mkdtemp(prefix="hwr-chromium-"), executable_path=str(CHROMIUM), headless=True, args=FLAGS,
            viewport={"width": 1400, "height": 2000})
        context.set_default_timeout(30_000)
        yield context
        context.close()


@pytest.fixture
def dashboard(tmp_path, monkeypatch, synth_dir, trained):
    """The dashboard on 127.0.0.1:PORT over a populated database; the server and the worker it starts are ended by
    their own pids."""
    from db.settings import Settings

    data_dir = tmp_path / "data"
    monkeypatch.setenv("HWR_DATA_DIR", str(data_dir))
    monkeypatch.delenv("HWR_DATABASE_URL", raising=False)
    settings = Settings.from_env()
    info = populate(settings, synth_dir, trained)
    port = _free_port()
    env = {**os.environ, "HWR_DEFAULT_DATA": "0", "HWR_START_WORKER": "1", "HWR_DEVICE": "cpu"}
    log = open(tmp_path / "streamlit.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen([PY, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port),
                               "--server.headless", "true", "--server.address", "127.0.0.1"], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def healthy():
        try:
            return urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok"
        except OSError:
            return False

    try:
        wait_for(healthy, 60, "the dashboard to answer")
        yield {"url": url, **info}
    finally:
        from jobs.queue import alive_workers

        stop_process(server, grace=20)
        for w in alive_workers(settings, within=3600):
            try:
                os.kill(w.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            wait_for(lambda pid=w.pid: process_state(pid) is None, 30, "the dashboard's worker to stop")
        log.close()
        from db.engine import dispose_engines

        dispose_engines()


def _shot(page, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    target = os.environ.get("HWR_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(target) / f"{name}.png"), full_page=True)


def draw_lili(page, box: dict) -> None:
    """Four block letters written with the mouse on a canvas at ``box``: L, I, L, I."""
    x0, y0 = box["x"] + 60, box["y"] + 25
    for dx in (0, 90, 180, 270):
        page.mouse.move(x0 + dx, y0)
        page.mouse.down()
        page.mouse.move(x0 + dx, y0 + 70, steps=8)
        if dx % 180 == 0:
            page.mouse.move(x0 + dx + 40, y0 + 70, steps=5)
        page.mouse.up()


def _idle(page) -> None:
    """Wait until the page's script run has finished: a click during a run can land on an element the run replaces."""
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for()


def test_train_watch_review_and_draw_in_a_browser(dashboard, browser_context, tmp_path):
    page = browser_context.new_page()
    try:
        _train_review_draw(page, dashboard, tmp_path)
        _label_next_by_keyboard(page, dashboard, tmp_path)
    except Exception as exc:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        log = (tmp_path / "streamlit.log").read_text(errors="replace")[-4000:]
        raise AssertionError(f"{exc}\nscreenshot: {tmp_path / 'failure.png'}\n--- streamlit log (end) ---\n{log}") from exc


def _train_review_draw(page, dashboard, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    from db.engine import session
    from db.models import LabelEdit

    settings = dashboard["settings"]

    # Train: a short job, then points on the live chart
    page.goto(f"{dashboard['url']}/train")
    _idle(page)
    page.get_by_role("spinbutton", name="Epochs").fill("3")
    page.get_by_role("spinbutton", name="Time budget (minutes, 0 = none)").fill("0")
    page.get_by_role("spinbutton", name="Batch size").fill("16")
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Queued training job").wait_for()
    # a drawn line (more than one point) on the live charts, while the page was left open
    page.wait_for_function("""() => [...document.querySelectorAll('.js-plotly-plot path.js-line')]
                                 .some(p => (p.getAttribute('d') || '').includes('L'))""", timeout=120_000)
    page.get_by_text("validation CER").first.wait_for(timeout=60_000)
    _shot(page, tmp_path, "dashboard-train")

    # Review: correct the first mistake's label, then find it in the database
    page.goto(f"{dashboard['url']}/review")
    _idle(page)
    field = page.get_by_label("Correct label").first
    field.fill("PLAYWRIGHT")
    expect(field).to_have_value("PLAYWRIGHT")
    # the Save of the form that holds the typed label: the list may re-render (a training job is running) between
    # typing and clicking, and the typed value stays with its sample's form
    page.evaluate("""() => [...document.querySelectorAll('input')].find(i => i.value === 'PLAYWRIGHT')
                             .closest('[data-testid="stForm"]').querySelector('button').click()""")
    wait_for(lambda: _edits(settings, "PLAYWRIGHT"), 30, "the correction in the database")
    _idle(page)
    _shot(page, tmp_path, "dashboard-review")

    # Draw: strokes on the canvas, then a prediction with its candidates
    page.goto(f"{dashboard['url']}/draw")
    _idle(page)
    canvas = page.locator("canvas.upper-canvas").first
    canvas.wait_for()
    draw_lili(page, canvas.bounding_box())
    page.get_by_text("What the model sees").wait_for(timeout=60_000)
    page.get_by_text("Prediction").first.wait_for(timeout=60_000)
    _idle(page)
    _shot(page, tmp_path, "dashboard-draw")

    with session(settings) as s:
        assert s.scalar(select(LabelEdit.new_label).where(LabelEdit.new_label == "PLAYWRIGHT")) == "PLAYWRIGHT"

    # Data: a label written as Markdown shows as typed, no link, no markup
    from sqlalchemy import update

    from db.models import Sample

    with session(settings, write=True) as s:  # how an import keeps a label with characters outside the alphabet
        sid = s.scalar(select(Sample.id).where(Sample.id <= 24, Sample.label != "PLAYWRIGHT").order_by(Sample.id))
        s.execute(update(Sample).where(Sample.id == sid).values(label=EVIL_LABEL, status="excluded"))
    page.goto(f"{dashboard['url']}/data")
    _idle(page)
    caption = page.get_by_text(f"#{sid} [X]", exact=False).first
    caption.wait_for()
    assert caption.inner_text().replace("\u2060", "") == f"#{sid} {EVIL_LABEL} (excluded, train)"  # as typed
    links = page.locator('a[href*="evil" i]')
    assert links.count() == 0, [links.nth(i).evaluate("a => a.outerHTML") for i in range(links.count())]
    assert page.locator("b", has_text="BOLD").count() == 0


def _label_next_by_keyboard(page, dashboard, tmp_path: Path) -> None:
    """Label next: Enter saves the typed label, Esc skips, Alt+U marks unreadable (keys, no clicks)."""
    from db.engine import session
    from db.models import Sample
    from jobs.context import JobContext
    from jobs.kinds.reading import run_predict
    from tests.conftest import import_pool

    settings = dashboard["settings"]
    import_pool(settings, tmp_path / "scans", "scans", 5, seed=31)
    run_predict(JobContext(settings, None, {"model": dashboard["model_id"], "dataset": "scans"}))
    page.goto(f"{dashboard['url']}/label")
    _idle(page)
    field = page.get_by_label("Label (Enter saves)")
    field.fill("KEYBOARD")
    field.press("Enter")
    wait_for(lambda: _edits(settings, "KEYBOARD"), 30, "the label saved by Enter")
    _idle(page)

    def shown() -> tuple[str, str | None] | None:
        """The label field's value and id once the page shows one image. A rerun briefly keeps the old field too, even
        between two calls on the locator: then None, and the caller asks again."""
        from playwright.sync_api import Error

        fields = page.get_by_label("Label (Enter saves)")
        try:
            return (fields.input_value(timeout=2000), fields.get_attribute("id", timeout=2000)) \
                if fields.count() == 1 else None
        except Error:  # two fields again (strict mode), or the one detached by a rerun
            return None

    before = wait_for(shown, 30, "the next image")[1]
    page.keyboard.press("Escape")
    wait_for(lambda: (now := shown()) is not None and now[1] != before, 30, "Esc to move on to the next image")
    _idle(page)
    page.keyboard.press("Alt+u")
    wait_for(lambda: _unreadable(settings), 30, "Alt+U to mark the image unreadable")
    _idle(page)
    _shot(page, tmp_path, "dashboard-label-next")
    with session(settings) as s:
        assert s.scalar(select(Sample.label).where(Sample.label == "KEYBOARD")) == "KEYBOARD"


def _unreadable(settings) -> bool:
    from db.engine import session
    from db.models import Sample

    with session(settings) as s:
        return s.scalar(select(Sample.id).where(Sample.split == "pool", Sample.status == "unreadable")) is not None


def _edits(settings, label: str) -> bool:
    from db.engine import session
    from db.models import LabelEdit

    with session(settings) as s:
        return s.scalar(select(LabelEdit.id).where(LabelEdit.new_label == label)) is not None

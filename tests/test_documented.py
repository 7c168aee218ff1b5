"""The documented surface is a test: every fenced command in README.md and docs/, and every benchmark's command
beside its figure, parses with its program's own argparse; the README's command-line path runs (at small sizes);
every ``python -m jobs`` subcommand runs through its real command line on tiny data: exit code, one-line errors,
outputs."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess

from tests.conftest import PY, ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"```(?:bash|sh|shell|console)?\n(.*?)```", re.S)
ENV = re.compile(r"^[A-Z_][A-Z0-9_]*=")
PROJECT = ("ocr", "jobs", "bench", "db", "dashboard", "docs")  # python -m of these is the project's own

# Runs a module as ``python -m`` would, stopping right after its top-level parser has parsed the arguments.
PARSE_ONLY = r"""
import argparse, contextlib, io, json, runpy, sys
class Parsed(Exception):
    pass
real = argparse.ArgumentParser.parse_args
def parse_args(self, args=None, namespace=None):
    real(self, args, namespace)
    raise Parsed
argparse.ArgumentParser.parse_args = parse_args
failures = []
for module, argv in json.loads(sys.stdin.read()):
    sys.argv, err = [module, *argv], io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            runpy.run_module(module, run_name="__main__", alter_sys=False)
        failures.append([module, argv, "never parsed its arguments"])
    except Parsed:
        pass
    except SystemExit as exc:
        if exc.code not in (0, None):
            failures.append([module, argv, err.getvalue().strip().splitlines()[-1:]])
print(json.dumps(failures))
"""


INLINE_BENCH = re.compile(r"`(python -m bench\.[^`]+)`")  # a benchmark's command beside its figure


def fenced_commands() -> list[tuple[str, str, list[str]]]:
    """(file, module, arguments) of every ``python -m`` command in a fenced block of README.md and docs/."""
    found = []
    for path in DOCS:
        for block in FENCE.findall(path.read_text(encoding="utf-8")):
            for line in block.replace("\\\n", " ").splitlines():
                for part in re.split(r"\s*&&\s*", line.strip()):
                    words = [w for w in shlex.split(part, comments=True)]
                    while words and ENV.match(words[0]):
                        words.pop(0)
                    if words[:2] in (["python", "-m"], ["python3", "-m"]) and len(words) > 2 and \
                            words[2].split(".")[0] in PROJECT:
                        found.append((path.name, words[2], words[3:]))
        for command in INLINE_BENCH.findall(path.read_text(encoding="utf-8")):
            words = shlex.split(command)
            found.append((path.name, words[2], words[3:]))
    return found


def test_every_documented_command_parses_with_its_own_command_line():
    commands = fenced_commands()
    modules = {m for _, m, _ in commands}
    assert {"ocr", "jobs", "jobs.worker", "bench.accuracy", "bench.starter"} <= modules and len(commands) >= 60
    r = subprocess.run([PY, "-c", PARSE_ONLY], input=json.dumps([[m, a] for _, m, a in commands]), cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []


def _readme_block(heading: str) -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index(heading):]
    return [line for line in FENCE.search(section).group(1).splitlines() if line.strip()]


SMALL = {"--n 20000": "--n 60", "--n 1000": "--n 12", "--max-minutes 25": "--max-minutes 0.03"}


def test_the_readme_command_line_path_runs_at_small_sizes(tmp_path):
    """The five commands of README's "From the command line", as written but for their sizes, in a fresh folder."""
    lines = _readme_block("## From the command line")
    assert len(lines) == 5 and all(line.startswith("python -m ocr ") for line in lines)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for line in lines:
        for big, small in SMALL.items():
            line = line.replace(big, small)
        r = subprocess.run([PY, *shlex.split(line)[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, f"{line}\n{r.stderr[-2000:]}"
    assert (tmp_path / "runs" / "first" / "eval" / "report.pdf").is_file()
    assert r.stdout.strip()  # predict printed a reading


def _jobs(env, *args, timeout=120):
    return subprocess.run([PY, "-m", "jobs", *map(str, args)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _one_line_error(r, text: str) -> None:
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and r.stderr.startswith("error: ") and text in r.stderr, \
        r.stderr


def test_every_jobs_command_runs_through_its_command_line(tmp_path):
    env = {**os.environ, "HWR_DATA_DIR": str(tmp_path / "data"), "HWR_DATABASE_URL": f"sqlite:///{tmp_path / 'j.db'}",
           "HWR_IMPORT_ROOTS": str(tmp_path)}
    r = _jobs(env, "submit", "synth", "--n", 24, "--name", "s1", "--kind", "numbers", "--validation", 4)
    assert r.returncode == 0, r.stderr
    synth = int(r.stdout.splitlines()[-1])
    worker = subprocess.run([PY, "-m", "jobs.worker", "--once", "--device", "cpu", "--poll", "0.2"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert worker.returncode == 0, worker.stdout[-2000:] + worker.stderr[-2000:]
    status = json.loads(_jobs(env, "status", synth, "--json").stdout)
    assert status["status"] == "succeeded" and status["params"]["kind"] == "numbers", status
    assert "synth" in _jobs(env, "status").stdout
    datasets = json.loads(_jobs(env, "datasets", "--json").stdout)
    assert [(d["name"], d["usable"]) for d in datasets] == [("s1", 28)]  # numbers read as written (label_rules.json)
    r = _jobs(env, "export-labels", "--dataset", "s1", "--out", tmp_path / "labels")
    assert r.returncode == 0 and (tmp_path / "labels" / "written_name_train_v2.csv").is_file()
    assert "succeeded" in _jobs(env, "log", synth).stdout
    assert json.loads(_jobs(env, "models", "--json").stdout) == []
    assert json.loads(_jobs(env, "workers", "--json").stdout) == []  # the --once worker has ended
    r = _jobs(env, "submit", "train", "--dataset", "s1", "--epochs", 1, "--charset", "data", "--self-train", 0.35,
              "--unlabelled", "s1")
    train = int(r.stdout.splitlines()[-1])
    assert _jobs(env, "cancel", train).stdout.strip() == f"job {train}: cancelled"
    assert _jobs(env, "resume", train).stdout.strip() == f"job {train} queued again"
    _one_line_error(_jobs(env, "resume", synth), f"job {synth} is succeeded")
    _one_line_error(_jobs(env, "submit", "evaluate", "--model", 999, "--dataset", "s1"), "no model with id 999")
    _one_line_error(_jobs(env, "submit", "evaluate", "--model", 999, "--dataset", "s1", "--views", 9),
                    "views=9 must be between 1")
    _one_line_error(_jobs(env, "submit", "train", "--dataset", "s1", "--pseudo-threshold", 1.5),
                    "pseudo_threshold=1.5 must be in (0, 1]")
    _one_line_error(_jobs(env, "submit", "predict", "--model", 1, "--dataset", "s1", "--beam", 500), "beam=500")
    _one_line_error(_jobs(env, "cancel", 4321), "no job with id 4321")


def test_data_describes_itself_and_says_which_characters_it_lacks(tmp_path):
    def ocr(*args):
        return subprocess.run([PY, "-m", "ocr", *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=300)

    assert ocr("synth", "--kind", "numbers", "--n", 40, "--out", tmp_path / "d", "--quiet").returncode == 0
    assert json.loads((tmp_path / "d" / "label_rules.json").read_text()) == {"upper": False, "strip_accents": False,
                                                                              "charset": "any"}
    r = ocr("train", "--data", f"{tmp_path / 'd'}:train", "--out", tmp_path / "r", "--epochs", 1, "--quiet")
    assert r.returncode == 0, r.stderr
    (tmp_path / "d" / "label_rules.json").unlink()  # a folder without its rules reads as Kaggle names forms
    r = ocr("train", "--data", f"{tmp_path / 'd'}:train", "--out", tmp_path / "r2", "--epochs", 1, "--quiet")
    last = r.stderr.splitlines()[-1]
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert last.startswith("error: no usable samples in ") and "label(s) have characters outside the 'names' set: " \
        in last and "--label-charset digits, latin or any admits them" in last
    r = ocr("train", "--data", f"{tmp_path / 'd'}:train", "--out", tmp_path / "r3", "--epochs", 1, "--quiet",
            "--label-charset", "any", "--keep-case")
    assert r.returncode == 0, r.stderr


def test_publish_with_an_evaluation_writes_the_cards_figures(tmp_path, synth_dir):
    from ocr.sharing import STARTER

    r = subprocess.run([PY, "-m", "ocr", "publish", "--model", STARTER, "--repo", "someone/names", "--eval-data",
                        synth_dir, "--eval-split", "train", "--dry-run", "--out", tmp_path / "hub"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    card = (tmp_path / "hub" / "README.md").read_text()
    assert "model-index:" in card and "evaluated on 200 images" in r.stderr

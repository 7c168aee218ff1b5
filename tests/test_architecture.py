"""The house rules of the code's layout, checked from the code: the floors (ocr knows nothing of db, jobs or
Streamlit), reading a model without training code, no import circles, and each job kind declared once."""

from __future__ import annotations

import ast
import subprocess

import pytest

from tests.conftest import PY, ROOT

PACKAGES = ("ocr", "db", "jobs", "dashboard")


def _module(path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its body (function-level imports too)."""
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    known = {_module(p) for p in files}
    graph: dict[str, set[str]] = {}
    for path in files:
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            found |= {n for n in names if n in known}
        graph[_module(path)] = found - {_module(path)}
    return graph


def test_the_import_graph_has_no_circles():
    graph, state, circles = _imports(), {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                circles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert circles == []


def test_the_floors_point_one_way():
    """dashboard -> jobs -> db, ocr: ocr imports none of the others, db neither jobs nor the dashboard."""
    graph = _imports()
    up = {m: sorted(i for i in targets if i.split(".")[0] in ("db", "jobs", "dashboard"))
          for m, targets in graph.items() if m.startswith("ocr")}
    assert {m: v for m, v in up.items() if v} == {}
    db_up = {m: sorted(i for i in t if i.split(".")[0] in ("jobs", "dashboard")) for m, t in graph.items()
             if m.startswith("db")}
    assert {m: v for m, v in db_up.items() if v} == {}
    streamlit = [p for p in (ROOT / "ocr").rglob("*.py") if "streamlit" in p.read_text(encoding="utf-8")]
    assert streamlit == []


@pytest.mark.parametrize("reader", ["ocr.recognize", "ocr.sharing.export", "ocr.evaluation.evaluate", "db.registry"])
def test_reading_a_model_imports_no_training_code(reader):
    code = (f"import sys, {reader}; print(sorted(m for m in sys.modules if m.startswith(('ocr.training', "
            "'ocr.data.augment', 'ocr.data.batches', 'ocr.curation'))))")
    r = subprocess.run([PY, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_each_job_kind_is_declared_once_and_the_command_line_offers_it():
    from jobs.kinds import KINDS
    from jobs.params import JobKind

    assert all(isinstance(k, JobKind) and k.name == name for name, k in KINDS.items())
    declared = [p.stem for p in (ROOT / "jobs" / "kinds").glob("*.py") if p.stem != "__init__"]
    assert sorted(declared) == ["import_data", "label_errors", "publish", "reading", "synth", "train"]
    r = subprocess.run([PY, "-m", "jobs", "submit", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and all(name in r.stdout for name in KINDS)
    for name, k in KINDS.items():
        assert callable(k.run) and hasattr(k.params, "check"), name

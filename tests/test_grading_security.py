"""Grading that survives students who cheat or break things (issue 12), end to end.

One ``course grade run`` of the pruning assignment grades, in parallel workers:

- alice: the instructor's solution; grace: an honest solution written differently (her
  own magnitude pruning with masks, helpers in cells she added, re-imports, progress
  prints); dora: functions that do nothing (the control for the tampering students);
- mallory rebinds ``grading`` to an object whose checks accept anything; patcher patches
  the checks inside ``course_lib.grading``, ``sys.modules``, ``builtins`` and makes IPython
  swallow every exception (both with dora's functions); reader looks for the instructor's files, the gradebook and other
  students' work and prints them, and records every cell IPython runs; vandal writes outside
  its folder (the course directory, the gradebook with sqlite, another student's
  submission, the course's code, /tmp) and plants symlinks; shouter prints a 50 MB line;
  killer's kernel exits in the middle of the notebook; hog allocates far too much memory;
  netcat opens network connections; leaky's ``global_magnitude_prune`` prunes correctly but
  runs its kernel out of memory at every call, while her other functions are correct (one
  memory bug must cost only the cells that call it, issue 21);
- erin's file is not a notebook.

Each attack is injected into the *solution cells* of the student version, so the students
follow the assignment whatever its content. Asserted: every score, the integrity report,
no hidden-test text in any feedback page, bounded feedback pages, and that nothing outside
each student's output changed (the course directory, the submissions, the gradebook rows of
the others, the repository, the machine's /tmp).

``test_parallel_run_scores_like_a_sequential_run`` grades a small assignment twice: one
worker, then three at once.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from test_grading import (
    REPO,
    cells_by_id,
    gradebook,
    hidden_test_lines,
    nbgrader_meta,
    released,
    require_baseline,
    solved,
    source_of,
    visible_text,
    write_submission,
)

from course_lib.grader import integrity, sandbox

ASSIGNMENT = "pruning"
#: Per-cell timeout of the run (the slowest cell of the solution is far below it).
TIMEOUT_S = 120
#: Memory of each kernel in this run: the solution needs about 1.5 GB per kernel.
MEMORY_LIMIT = "3G"
#: Largest feedback page accepted (the page of the 50 MB line included).
MAX_FEEDBACK_BYTES = 1_500_000
MARKER = f"course-grading-test-{uuid.uuid4().hex[:8]}"
PROTECTIONS = sandbox.detect()
ISOLATED = PROTECTIONS.namespaces
MEMORY_BOUNDED = bool(PROTECTIONS.cgroups and PROTECTIONS.cgroups.memory) or PROTECTIONS.rlimits
#: A kernel over its memory is killed (a memory cgroup), not handed an error (an rlimit).
MEMORY_KILLS = bool(PROTECTIONS.cgroups and PROTECTIONS.cgroups.memory)


# --- building students from the student version -------------------------------------------


def solution_cells(nb) -> list:
    """The code cells the student writes, in order."""
    return [c for c in nb.cells if c.cell_type == "code" and nbgrader_meta(c).get("solution")]


def doing_nothing(nb):
    """The student version with every stub returning instead of raising."""
    for cell in solution_cells(nb):
        lines = [
            line for line in cell.source.splitlines() if "raise NotImplementedError" not in line
        ]
        cell.source = "\n".join(lines) or "pass"
    return nb


def inject(nb, code: str, at: int = 0, before: bool = False):
    """Add ``code`` to the ``at``-th solution cell (after its code, or before it)."""
    cell = solution_cells(nb)[at]
    cell.source = f"{code}\n{cell.source}" if before else f"{cell.source}\n\n{code}"
    return nb


def points_between(nb, first: int, second: int) -> float:
    """Points of the test cells between the ``first`` and ``second`` solution cells."""
    cells = nb.cells
    ids = [id(c) for c in solution_cells(nb)]
    start, end = (next(i for i, c in enumerate(cells) if id(c) == ids[k]) for k in (first, second))
    return sum(
        float(nbgrader_meta(c)["points"])
        for c in cells[start:end]
        if nbgrader_meta(c).get("grade") and not nbgrader_meta(c).get("solution")
    )


MALLORY = '''
import course_lib.grading as _real_grading


class _AcceptEverything:
    """Every check passes; everything else is the real module."""

    def __getattr__(self, name):
        if name.startswith("check_"):
            return lambda *args, **kwargs: None
        return getattr(_real_grading, name)


grading = _AcceptEverything()
'''

PATCHER = """
import builtins, sys, types
import course_lib.grading as _g
for _module in [m for name, m in list(sys.modules.items()) if name.startswith("course_lib.grading")]:
    for _name in dir(_module):
        if _name.startswith("check_"):
            setattr(_module, _name, lambda *args, **kwargs: None)
_fake = types.ModuleType("course_lib.grading")
_fake.__getattr__ = lambda name: (lambda *a, **k: None) if name.startswith("check_") else getattr(_g, name)
sys.modules["course_lib.grading"] = _fake
builtins.AssertionError = type("AssertionError", (Exception,), {})
get_ipython().set_custom_exc((BaseException,), lambda shell, etype, value, tb, tb_offset=None: None)
"""

READER = """
import os, pathlib
_seen = []
get_ipython().events.register("pre_run_cell", lambda info: _seen.append(info.raw_cell))
_guesses = [pathlib.Path(p) for p in {guesses!r}]
try:
    import course_lib.paths as _paths
    _guesses += [_paths.REPO_ROOT / "assignments" / "source" / "{assignment}" / "{assignment}.ipynb"]
except Exception as error:
    print("no course_lib.paths", error)
_guesses += [pathlib.Path.cwd() / ".." / ".." / ".." / "source" / "{assignment}" / "{assignment}.ipynb"]
_guesses += [pathlib.Path.home() / ".bash_history", pathlib.Path("/root/.bashrc"), pathlib.Path("/etc/shadow")]
for _guess in _guesses:
    try:
        print("=== " + "READ", _guess, "\\n", _guess.read_text(errors="replace"))
    except Exception as error:
        print("=== cannot read", _guess, type(error).__name__)
for _top in ["/", "/home", "/root", "/tmp", str(pathlib.Path.cwd().parent)]:
    try:
        print("=== LIST", _top, sorted(os.listdir(_top))[:50])
    except Exception as error:
        print("=== cannot list", _top, type(error).__name__)
print("=== PROC", [p for p in os.listdir("/proc") if p.isdigit()])
"""

READER_LATER = """
print("=== " + "CELLS SEEN", _seen)
"""

VANDAL = """
import os, pathlib, sqlite3
_targets = {targets!r}
for _target in _targets:
    try:
        pathlib.Path(_target).parent.mkdir(parents=True, exist_ok=True)
        with open(_target, "w") as _f:
            _f.write("vandal was here")
        print("=== " + "WROTE", _target)
    except Exception as error:
        print("=== cannot write", _target, type(error).__name__)
for _db in {databases!r}:
    try:
        _c = sqlite3.connect(_db)
        _c.execute("UPDATE grade SET auto_score = 0, manual_score = 0")
        _c.commit()
        print("=== " + "ZEROED", _db)
    except Exception as error:
        print("=== cannot change", _db, type(error).__name__)
for _name, _to in [("{assignment}.ipynb", {gradebook!r}), ("feedback.html", "/etc/passwd")]:
    try:
        os.symlink(_to, _name)
    except Exception as error:
        print("=== cannot link", _name, type(error).__name__)
"""

SHOUTER = """
print("x" * 50_000_000)
"""

KILLER = """
import os
os._exit(0)
"""

HOG = """
import numpy as np
_blocks = []
for _ in range(200):  # up to 50 GB, 256 MB at a time, every page touched
    _blocks.append(np.ones(2**25))
"""

NETCAT = """
import socket, urllib.request
for _address in [("1.1.1.1", 80), ("8.8.8.8", 53), ("127.0.0.1", 22)]:
    try:
        socket.create_connection(_address, timeout=3).close()
        print("=== " + "CONNECTED", _address)
    except Exception as error:
        print("=== cannot connect", _address, type(error).__name__)
try:
    urllib.request.urlopen("http://example.com", timeout=3)
    print("=== " + "FETCHED example.com")
except Exception as error:
    print("=== cannot fetch", type(error).__name__)
"""


def grace(course: Path):
    """The solution written differently: her own global magnitude pruning (a threshold
    over all weights, masks through ``prune.custom_from_mask``), helpers in a cell she
    added, re-imports, prints from inside her functions, a function object for a solution."""
    nb = solved(course, ASSIGNMENT)
    cells = solution_cells(nb)
    helper = new_code_cell(
        "import numpy as np\n"
        "import torch\n"
        "from torch import nn\n"
        "from torch.nn.utils import prune\n"
        "\n"
        "LAYERS = (nn.Conv2d, nn.Linear)\n"
        "\n"
        "\n"
        "def weights_of(model):\n"
        "    return [m for m in model.modules() if isinstance(m, LAYERS)]\n"
    )
    nb.cells.insert(nb.cells.index(cells[0]), helper)
    if "def global_magnitude_prune(" in cells[0].source:
        cells[0].source = (
            "def global_magnitude_prune(model, sparsity):\n"
            "    layers = weights_of(model)\n"
            "    magnitudes = torch.cat([m.weight.detach().abs().flatten() for m in layers])\n"
            "    count = round(sparsity * magnitudes.numel())\n"
            "    if count == 0:\n"
            "        return model\n"
            "    order = torch.argsort(magnitudes, stable=True)\n"
            "    keep = torch.ones_like(magnitudes, dtype=torch.bool)\n"
            "    keep[order[:count]] = False\n"
            "    start = 0\n"
            "    for layer in layers:\n"
            "        size = layer.weight.numel()\n"
            "        mask = keep[start : start + size].view_as(layer.weight).to(layer.weight.dtype)\n"
            "        prune.custom_from_mask(layer, 'weight', mask)\n"
            "        start += size\n"
            "    print(f'pruned to {sparsity:.0%}')\n"
            "    return model\n"
        )
    for cell in cells[1:]:
        if cell.source.lstrip().startswith("def "):
            name = cell.source.split("def ", 1)[1].split("(", 1)[0]
            cell.source += (
                f"\n\n\nclass _Counted:\n"
                f"    def __init__(self, function):\n"
                f"        self.function, self.calls = function, 0\n"
                f"\n"
                f"    def __call__(self, *args, **kwargs):\n"
                f"        self.calls += 1\n"
                f"        return self.function(*args, **kwargs)\n"
                f"\n"
                f"\n"
                f"{name} = _Counted({name})\n"
            )
    return nb


def leaky(course: Path):
    """The solution, but ``global_magnitude_prune`` also fills 4 GiB at each call (more than
    the kernel's memory) after pruning; ``iterative_prune`` prunes through the correct code,
    renamed ``prune_globally``, so every other function is correct."""
    nb = solved(course, ASSIGNMENT)
    cells = cells_by_id(nb)
    correct = cells["global_magnitude_prune"]
    assert "def global_magnitude_prune(" in correct.source
    correct.source = (
        correct.source.replace("def global_magnitude_prune(", "def prune_globally(")
        + "\n\n\ndef global_magnitude_prune(model, sparsity):\n"
        "    prune_globally(model, sparsity)\n"
        "    history = torch.ones(2**30)  # a bug: 4 GiB at every call, every page written\n"
        "    return model\n"
    )
    iterative = cells["iterative_prune"]
    assert "global_magnitude_prune(" in iterative.source
    iterative.source = iterative.source.replace("global_magnitude_prune(", "prune_globally(")
    return nb


def make_students(course: Path) -> dict:
    """Write every student's submission; returns what the assertions need."""
    repo_targets = [REPO / "assignments" / "gradebook.db", REPO / "course_lib" / f"{MARKER}.py"]
    root = course / "assignments"
    guesses = [
        root / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb",
        root / "gradebook.db",
        root / "submitted" / "alice" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb",
        source_of(ASSIGNMENT),
    ]
    targets = [
        root / "gradebook.db",
        root / "submitted" / "alice" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb",
        root / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb",
        course / f"{MARKER}.txt",
        Path("/tmp") / MARKER,
        *repo_targets,
    ]
    reader = inject(
        released(course, ASSIGNMENT),
        READER.format(guesses=[str(g) for g in guesses], assignment=ASSIGNMENT),
    )
    inject(reader, READER_LATER, at=-1, before=True)
    vandal = VANDAL.format(
        targets=[str(t) for t in targets],
        databases=[str(root / "gradebook.db"), str(REPO / "assignments" / "gradebook.db")],
        gradebook=str(root / "gradebook.db"),
        assignment=ASSIGNMENT,
    )
    killer = solved(course, ASSIGNMENT)
    for cell in solution_cells(killer)[1:]:
        cell.source = cells_by_id(released(course, ASSIGNMENT))[
            nbgrader_meta(cell)["grade_id"]
        ].source
    inject(killer, KILLER, at=1)
    students = {
        "alice": solved(course, ASSIGNMENT),
        "grace": grace(course),
        "dora": doing_nothing(released(course, ASSIGNMENT)),
        "mallory": inject(doing_nothing(released(course, ASSIGNMENT)), MALLORY),
        "patcher": inject(doing_nothing(released(course, ASSIGNMENT)), PATCHER),
        "shouter": inject(released(course, ASSIGNMENT), SHOUTER),
        "killer": killer,
    }
    if ISOLATED:
        students["reader"] = reader
        students["vandal"] = inject(released(course, ASSIGNMENT), vandal)
        students["netcat"] = inject(released(course, ASSIGNMENT), NETCAT)
    if MEMORY_BOUNDED:
        students["hog"] = inject(released(course, ASSIGNMENT), HOG)
    if MEMORY_KILLS:
        students["leaky"] = leaky(course)
    for student, nb in students.items():
        write_submission(course, student, nbformat.writes(nb))
    write_submission(course, "erin", '{"cells": [')
    source = nbformat.read(source_of(ASSIGNMENT), as_version=4)
    return {
        "students": sorted(students),
        "killer_points": points_between(source, 0, 1),
        "written": [Path(t) for t in targets],
    }


# --- the run ---------------------------------------------------------------------------------


def snapshot(folder: Path, skip: tuple[str, ...]) -> dict[str, str]:
    """Relative path -> content hash of every file under ``folder`` (symlinks by target)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if relative.startswith(skip) or path.is_dir() and not path.is_symlink():
            continue
        if path.is_symlink():
            found[relative] = "link:" + str(path.readlink())
        else:
            found[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


#: What the grader itself writes in the course directory.
GRADER_OUTPUT = (
    "assignments/autograded",
    "assignments/feedback",
    "assignments/reports",
    "assignments/gradebook.db",
    "grades.csv",
    "grading.log",
)


def file_digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def marker_files() -> list[Path]:
    """Files the vandal tried to create in the repository (its name carries the marker)."""
    places = [REPO, REPO / "course_lib", REPO / "assignments", Path("/tmp")]
    return sorted(p for place in places if place.is_dir() for p in place.glob(f"*{MARKER}*"))


@pytest.fixture(scope="module")
def attacked(tmp_path_factory) -> dict:
    """The pruning assignment graded once for every student above, 2 workers."""
    require_baseline()
    root = tmp_path_factory.mktemp("attacked")
    shutil.copy(REPO / "nbgrader_config.py", root)
    shutil.copytree(source_of(ASSIGNMENT).parent, root / "assignments" / "source" / ASSIGNMENT)
    from course_lib import grader

    assert grader.nbgrader(root, "generate_assignment", ASSIGNMENT, quiet=True) == 0
    made = make_students(root)
    before = snapshot(root, GRADER_OUTPUT)
    outside = [p for p in made["written"] if not p.is_relative_to(root)]
    outside_before = {p: file_digest(p) for p in outside}
    repo_before = marker_files()
    command = [sys.executable, "-m", "course_lib.grader", "run", ASSIGNMENT, "--course-dir"]
    command += [str(root), "--timeout", str(TIMEOUT_S), "--workers", "2"]
    command += ["--memory-limit", MEMORY_LIMIT]
    run = subprocess.run(command, capture_output=True, text=True)
    log = run.stdout + run.stderr
    (root / "grading.log").write_text(log)
    with open(root / "grades.csv", newline="") as f:
        scores = {row["student_id"]: float(row["raw_score"] or 0) for row in csv.DictReader(f)}
    reports = {
        r["student"]: r for r in integrity.records(root / "assignments" / "reports", ASSIGNMENT)
    }
    return {
        **made,
        "root": root,
        "status": run.returncode,
        "log": log,
        "scores": scores,
        "reports": reports,
        "before": before,
        "after": snapshot(root, GRADER_OUTPUT),
        "repo_before": repo_before,
        "repo_after": marker_files(),
        "outside_before": outside_before,
    }


def tail(run: dict) -> str:
    return "\n--- grading log (end) ---\n" + run["log"][-5000:]


def auto_points() -> float:
    source = nbformat.read(source_of(ASSIGNMENT), as_version=4)
    return sum(
        float(nbgrader_meta(c)["points"])
        for c in source.cells
        if c.cell_type == "code"
        and nbgrader_meta(c).get("grade")
        and not nbgrader_meta(c).get("solution")
    )


def kinds(run: dict, student: str) -> set[str]:
    return set(integrity.flags(run["reports"][student]))


# --- the assertions ---------------------------------------------------------------------------


@pytest.mark.slow
def test_protections_are_reported_at_the_start(attacked):
    assert "Protections for student code on this machine:" in attacked["log"]
    for line in PROTECTIONS.describe(sandbox.Limits(sandbox.parse_bytes(MEMORY_LIMIT)), TIMEOUT_S):
        assert line in attacked["log"], line
    if not ISOLATED:
        assert "WARNING: student code is NOT isolated" in attacked["log"]
        pytest.skip("no bubblewrap here: the filesystem and network attacks are not graded")


@pytest.mark.slow
def test_honest_students_get_every_point_and_no_flag(attacked):
    for student in ("alice", "grace"):
        assert attacked["scores"][student] == auto_points(), student + tail(attacked)
        assert kinds(attacked, student) == set(), (student, attacked["reports"][student]["events"])
    assert kinds(attacked, "dora") == set(), attacked["reports"]["dora"]["events"]


@pytest.mark.slow
def test_switching_off_the_checks_earns_nothing_and_is_flagged(attacked):
    control = attacked["scores"]["dora"]  # the same functions, no tampering
    for student in ("mallory", "patcher"):
        assert attacked["scores"][student] == control, student + tail(attacked)
    for student in ("mallory", "patcher"):
        report = attacked["reports"][student]
        assert "tampering" in kinds(attacked, student), report["events"]
        flagged = {e["cell"] for e in report["events"] if e["kind"] == "tampering"}
        failed_in_grader = {
            k for k, t in report["tests"].items() if (t["score"] or 0) < t["points"]
        }
        assert flagged and flagged <= failed_in_grader
    rebound = [e for e in attacked["reports"]["mallory"]["events"] if e["kind"] == "rebinds"]
    assert any("'grading'" in e["detail"] for e in rebound), "the rebinding is named"


@pytest.mark.slow
def test_stubs_with_attacks_score_zero(attacked):
    for student in ("reader", "vandal", "shouter", "netcat", "hog"):
        if student in attacked["students"]:
            assert attacked["scores"][student] == 0.0, student + tail(attacked)


@pytest.mark.slow
def test_a_crash_gets_partial_credit_and_an_explanation(attacked):
    report = attacked["reports"]["killer"]
    assert attacked["scores"]["killer"] == attacked["killer_points"] > 0, tail(attacked)
    assert report["restarts"] == 1, report
    assert "kernel-died" in kinds(attacked, "killer")
    page = feedback(attacked, "killer")
    assert "The kernel running your code died during this cell" in page
    assert "status 0" in page
    nb = autograded(attacked, "killer")
    after = nb.cells[nb.cells.index(solution_cells(nb)[1]) + 1 :]
    assert all("NotRun" not in json.dumps(c.get("outputs", [])) for c in after), "cells went on"


@pytest.mark.slow
def test_a_function_that_runs_out_of_memory_costs_only_the_cells_that_call_it(attacked):
    if "leaky" not in attacked["students"]:
        pytest.skip("no memory cgroup here: a kernel over its memory gets an error, not killed")
    source = nbformat.read(source_of(ASSIGNMENT), as_version=4)
    report = attacked["reports"]["leaky"]
    # the one-shot tests (between her first and second functions) call the broken function;
    # every other test passes, whatever the order of the deaths
    expected = auto_points() - points_between(source, 0, 1)
    assert attacked["scores"]["leaky"] == expected, tail(attacked)
    assert report["restarts"] >= 2, report  # more deaths than one, and grading went on
    assert "memory" in kinds(attacked, "leaky"), report["events"]
    page = feedback(attacked, "leaky")
    assert "in a call of global_magnitude_prune()" in page
    assert "ran out of memory" in page
    assert "This cell was not run" not in page


@pytest.mark.slow
def test_outside_access_is_refused_and_reported(attacked):
    if not ISOLATED:
        pytest.skip("no bubblewrap here")
    for student in ("reader", "vandal", "netcat"):
        assert "outside-access" in kinds(attacked, student), student
    reader = json.dumps(attacked["reports"]["reader"]["events"])
    assert "gradebook.db" in reader and "source" in reader
    netcat = json.dumps(attacked["reports"]["netcat"]["events"])
    assert "1.1.1.1" in netcat
    assert "=== CONNECTED" not in feedback(attacked, "netcat")
    assert "=== FETCHED" not in feedback(attacked, "netcat")
    # the vandal may write what it likes into its own /tmp (paths that look like the course's
    # included): test_nothing_outside_the_students_output_changed checks the real files
    assert "=== ZEROED" not in feedback(attacked, "vandal"), "no gradebook was reachable"


@pytest.mark.slow
def test_nothing_outside_the_students_output_changed(attacked):
    assert attacked["after"] == attacked["before"], "a file in the course directory changed"
    assert attacked["repo_after"] == attacked["repo_before"] == [], "a file was created outside"
    for path, digest in attacked["outside_before"].items():
        assert file_digest(path) == digest, f"{path} changed"
    assert not (Path("/tmp") / MARKER).exists()
    with gradebook(attacked["root"]) as gb:
        alice = gb.find_submission(ASSIGNMENT, "alice")
        assert alice.code_score == auto_points(), "vandal's sqlite UPDATE did not reach alice"


@pytest.mark.slow
def test_no_feedback_page_shows_hidden_tests_and_every_page_is_small(attacked):
    hidden = hidden_test_lines(nbformat.read(source_of(ASSIGNMENT), as_version=4))
    assert hidden
    for student in attacked["students"]:
        path = (
            attacked["root"] / "assignments/feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html"
        )
        assert path.stat().st_size < MAX_FEEDBACK_BYTES, (student, path.stat().st_size)
        text = visible_text(path.read_text())
        assert "HIDDEN TESTS" not in text, student
        for line in hidden:
            assert line not in text, f"{student}'s feedback shows hidden test code: {line}"
    if ISOLATED:
        assert "=== READ" not in feedback(attacked, "reader"), "no file of the instructor was read"
        assert "=== CELLS SEEN" in feedback(attacked, "reader")


@pytest.mark.slow
def test_huge_output_is_cut_with_a_visible_note(attacked):
    assert "output-truncated" in kinds(attacked, "shouter")
    page = feedback(attacked, "shouter")
    assert "[output truncated:" in page
    assert len(page) < MAX_FEEDBACK_BYTES


@pytest.mark.slow
def test_memory_hog_is_stopped_and_the_others_are_unaffected(attacked):
    if "hog" not in attacked["students"]:
        pytest.skip("no memory limit on this machine")
    assert "memory" in kinds(attacked, "hog"), attacked["reports"]["hog"]["events"]


@pytest.mark.slow
def test_report_lists_every_flagged_student_and_the_unreadable_file(attacked):
    report = (attacked["root"] / "assignments/reports" / f"{ASSIGNMENT}-integrity.md").read_text()
    expected = {"mallory", "patcher", "shouter", "killer"}
    optional = ("reader", "vandal", "netcat", "hog", "leaky")
    expected |= {s for s in optional if s in attacked["students"]}
    flagged = set(re.findall(r"^### (\w+)$", report, flags=re.M))
    assert flagged == expected, report
    assert "| erin | not graded | unreadable notebook |" in report
    assert attacked["status"] == 1, "erin was not graded"
    for line in PROTECTIONS.describe(sandbox.Limits(sandbox.parse_bytes(MEMORY_LIMIT)), TIMEOUT_S):
        assert line in report


def feedback(run: dict, student: str) -> str:
    path = run["root"] / "assignments/feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html"
    return visible_text(path.read_text())


def autograded(run: dict, student: str):
    path = run["root"] / "assignments/autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    return nbformat.read(path, as_version=4)


# --- parallel and sequential runs give the same grades ------------------------------------


def _meta(grade_id: str, **flags) -> dict:
    base = {"grade": False, "grade_id": grade_id, "locked": False, "schema_version": 3}
    return {"nbgrader": {**base, "solution": False, **flags}}


def toy_notebook():
    """A seconds-long assignment: setup, one function, a visible and a hidden test, a run."""
    nb = new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [
        new_markdown_cell("# Toy"),
        new_code_cell(
            "import torch\nfrom course_lib import grading\nscale = 3",
            metadata=_meta("setup", locked=True),
        ),
        new_code_cell(
            "def triple(x):\n    ### BEGIN SOLUTION\n    return scale * x\n    ### END SOLUTION",
            metadata=_meta("triple", solution=True),
        ),
        new_code_cell(
            "assert triple(2) == 6, triple(2)\n### BEGIN HIDDEN TESTS\n"
            "grading.check_accuracy(triple(torch.tensor([-5.0])).abs().item() / 20, 0.7, 'triple(-5)')\n"
            "### END HIDDEN TESTS",
            metadata=_meta("test_triple", grade=True, locked=True, points=2),
        ),
        new_code_cell(
            "values = [triple(v) for v in range(4)]\nprint(values)",
            metadata=_meta("run", locked=True),
        ),
        new_code_cell(
            "grading.check_accuracy(sum(values) / 20, 0.5, 'mean of triples')",
            metadata=_meta("test_values", grade=True, locked=True, points=1),
        ),
    ]
    return nb


def toy_course(root: Path) -> Path:
    (root / "assignments/source/toy").mkdir(parents=True)
    shutil.copy(REPO / "nbgrader_config.py", root)
    nbformat.write(toy_notebook(), root / "assignments/source/toy/toy.ipynb")
    from course_lib import grader

    assert grader.nbgrader(root, "generate_assignment", "toy", quiet=True) == 0
    release = nbformat.read(root / "assignments/release/toy/toy.ipynb", 4)
    bodies = {
        "ann": "def triple(x):\n    return x + x + x",
        "cal": "def triple(x):\n    return 2 * x",
        "dan": MALLORY + "\ndef triple(x):\n    return 6 if x == 2 else 2 * x",
    }
    for student, body in bodies.items():
        nb = nbformat.from_dict(json.loads(json.dumps(release)))
        solution_cells(nb)[0].source = body
        write_submission(root, student, nbformat.writes(nb), "toy")
    return root


#: ann is right; cal and dan are not (dan hard-codes the visible test's answer and switches
#: the checks off); the last test needs only a mean above half: 1 point each.
EXPECTED_TOY = {"ann": 3.0, "cal": 1.0, "dan": 1.0}


def graded_scores(root: Path, workers: int) -> tuple[dict, dict, str]:
    command = [sys.executable, "-m", "course_lib.grader", "run", "toy", "--course-dir", str(root)]
    run = subprocess.run(
        command + ["--workers", str(workers), "--timeout", "60"], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    with gradebook_of(root) as gb:
        cells = {
            (s, g.name): g.score
            for s in EXPECTED_TOY
            for g in gb.find_submission_notebook("toy", "toy", s).grades
        }
    with open(root / "grades.csv", newline="") as f:
        totals = {row["student_id"]: float(row["raw_score"]) for row in csv.DictReader(f)}
    return totals, cells, run.stdout


def gradebook_of(root: Path):
    from nbgrader.api import Gradebook

    return Gradebook(f"sqlite:///{root / 'assignments' / 'gradebook.db'}")


@pytest.mark.slow
def test_parallel_run_scores_like_a_sequential_run(tmp_path):
    sequential = graded_scores(toy_course(tmp_path / "sequential"), workers=1)
    parallel = graded_scores(toy_course(tmp_path / "parallel"), workers=3)
    assert sequential[0] == EXPECTED_TOY, sequential[2]
    assert parallel[:2] == sequential[:2]
    assert "autograding 3 submission(s) of toy with 3 worker(s)" in parallel[2]
    assert re.search(r"^\[3/3\] \w+: ", parallel[2], flags=re.M), "progress is printed"
    assert "dan: 1/3 auto points; tampering (1)" in parallel[2]
    assert "cal: 1/3 auto points; no flags" in parallel[2]

"""The parts of the safe grader, one at a time (fast): the sandbox, what travels between
the two kernels, which kernel runs which cell, bounded outputs, the report.

The end-to-end runs with attacking students are in ``test_grading_security.py``.
"""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
import torch
import torch_pruning as tp
from nbformat.v4 import new_code_cell, new_notebook, new_output
from torch import nn
from torch.nn.utils import prune

from course_lib.grader import agent as link
from course_lib.grader import codec, integrity, kernel_pair, proxy, remote, sandbox
from course_lib.grader.kernels import OutputBudget
from course_lib.grader.plan import cell_names, imported_names, make_plan
from course_lib.models import BaselineCNN

REPO = Path(__file__).resolve().parents[1]
PROTECTIONS = sandbox.detect()

# --- the sandbox -----------------------------------------------------------------------------


def test_sizes_parse_and_bad_ones_say_what_to_write():
    assert sandbox.parse_bytes("4G") == 4 * 1024**3
    assert sandbox.parse_bytes("512M") == 512 * 1024**2
    assert sandbox.parse_bytes("1.5GiB") == int(1.5 * 1024**3)
    assert sandbox.parse_bytes("1000") == 1000
    with pytest.raises(ValueError, match="use e.g. 4G"):
        sandbox.parse_bytes("lots")


def test_protections_are_described_whatever_the_machine():
    lines = PROTECTIONS.describe(sandbox.Limits(), timeout=60)
    assert any(line.startswith("filesystem:") for line in lines)
    assert any(line.startswith("network:") for line in lines)
    if not PROTECTIONS.namespaces:
        assert any("NOT isolated" in w for w in PROTECTIONS.warnings())


def _box(tmp_path: Path, **kwargs) -> sandbox.Sandbox:
    # the Python environment, but never the repository as a whole (a virtual environment
    # inside it, as .ci/run makes, stays readable: the kernel needs its interpreter)
    environment = [p for p in sandbox.python_environment() if not REPO.is_relative_to(p)]
    return sandbox.Sandbox(
        work=tmp_path / "work",
        tmp=tmp_path / "tmp",
        readable=[*environment, REPO / "course_lib"],
        hidden=[tmp_path / "course"],
        env={"PYTHONPATH": str(REPO)},
        uid=sandbox.kernel_uid(7) if PROTECTIONS.own_user else None,
        name="hw",
        **kwargs,
    )


def test_sandboxed_code_cannot_read_write_or_connect_outside(tmp_path):
    if not PROTECTIONS.namespaces:
        pytest.skip("no bubblewrap here: " + " ".join(PROTECTIONS.warnings()))
    secret = tmp_path / "course" / "gradebook.db"
    secret.parent.mkdir()
    secret.write_text("grades")
    outside = tmp_path / "outside.txt"
    box = _box(tmp_path)
    box.prepare(f"course-grading-test-{os.getpid()}")
    script = textwrap.dedent(
        f"""
        import os, socket
        results = []
        for path in [{str(secret)!r}, {str(REPO / "assignments")!r}, "/root/.bashrc"]:
            results.append(("read", os.path.exists(path)))
        try:
            open({str(outside)!r}, "w").write("x")
            results.append(("write", True))
        except OSError:
            results.append(("write", False))
        try:
            open({str(REPO / "course_lib" / "x.py")!r}, "w").write("x")
            results.append(("lib", True))
        except OSError:
            results.append(("lib", False))
        try:
            socket.create_connection(("1.1.1.1", 80), timeout=3)
            results.append(("net", True))
        except OSError:
            results.append(("net", False))
        open("mine.txt", "w").write("ok")
        print(results, os.getcwd())
        """
    )
    try:
        run = subprocess.run(
            box.command([sys.executable, "-c", script]), capture_output=True, text=True, timeout=120
        )
    finally:
        box.release()
    assert run.returncode == 0, run.stderr
    assert "('read', True)" not in run.stdout and "True)" not in run.stdout, run.stdout
    assert "/home/student/hw" in run.stdout
    assert (box.work / "mine.txt").read_text() == "ok"
    assert not outside.exists() and not (REPO / "course_lib" / "x.py").exists()


@pytest.mark.slow
def test_limits_stop_memory_hogs(tmp_path):
    if not sandbox.detect().rlimits:
        pytest.skip("no resource limits on this platform")
    box = _box(tmp_path, limits=sandbox.Limits(memory_bytes=600 * 1024**2))
    box.prepare(f"course-grading-test-mem-{os.getpid()}")
    script = "import numpy as np\nblocks = [np.ones(2**24) for _ in range(64)]\nprint('allocated')"
    try:
        run = subprocess.run(
            box.command([sys.executable, "-c", script]), capture_output=True, text=True, timeout=120
        )
        hit = box.release()
    finally:
        box.release()
    assert "allocated" not in run.stdout
    assert run.returncode != 0
    assert hit or "MemoryError" in run.stderr, run.stderr[-500:]


# --- what travels between the kernels ---------------------------------------------------


def _codecs():
    return (
        codec.Codec(codec.STUDENT, codec.Registry(codec.STUDENT)),
        codec.Codec(codec.REFEREE, codec.Registry(codec.REFEREE)),
    )


def test_models_and_course_types_travel_by_value():
    student, referee = _codecs()
    model = BaselineCNN()
    prune.global_unstructured(
        [(m, "weight") for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)],
        prune.L1Unstructured,
        amount=0.5,
    )
    importance = tp.importance.MagnitudeImportance(p=2)
    sent = referee.loads(student.dumps([model, importance, {"x": torch.ones(3)}, 2.5]))
    back, back_importance, data, number = sent
    assert isinstance(back, BaselineCNN) and back is not model
    for a, b in zip(model.state_dict().values(), back.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(back(torch.zeros(1, 3, 32, 32)), model(torch.zeros(1, 3, 32, 32)))
    assert isinstance(back_importance, tp.importance.MagnitudeImportance)
    assert torch.equal(data["x"], torch.ones(3)) and number == 2.5


def test_a_huge_expanded_tensor_is_refused_before_it_is_copied():
    # 4 bytes of storage seen as 3.2 GB: copying it to send would kill a 3 GB kernel
    student, _ = _codecs()
    huge = torch.zeros(1).expand(800_000_000)
    with pytest.raises(proxy.TransferError, match=r"3\.2 GB .* cannot be sent"):
        student.dumps(huge)
    small = torch.zeros(1).expand(1000)  # a small view still travels as its own values
    assert student.dumps(small)


def test_a_lost_kernel_names_the_function_it_was_running():
    message = f"the other kernel closed the connection, {proxy.stopped_during('prune_it')}"
    assert proxy.function_stopped_in(message) == "prune_it"
    assert proxy.function_stopped_in("the other kernel closed the connection") is None


def test_code_in_the_kernels_reaches_the_link_by_its_old_name():
    # the grader's silent cells call course_lib.grader.remote.<entry point>(...) in each
    # kernel, and course_lib.grading.checks.type_name looks Proxy up there by name
    from course_lib.grading.checks import type_name

    assert "'course_lib.grader.remote'" in kernel_pair.AGENT
    for name in ("start", "arm", "serve", "fetch", "offline", "pull", "snapshot", "release"):
        assert getattr(remote, name) is getattr(link, name)
    assert type_name(proxy.Proxy(proxy.Handle("student", 1, "object", "Custom"))) == "Custom"


def test_functions_and_unknown_classes_travel_as_handles():
    student, referee = _codecs()

    class Custom:  # a class of the student's: never rebuilt in the referee
        pass

    value = referee.loads(student.dumps((lambda x: x, Custom(), print)))
    assert all(isinstance(v, proxy.Proxy) for v in value)
    assert len(student.registry.objects) == 3


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/course-grading-evil",))


def test_the_referee_refuses_a_pickle_that_would_run_code():
    buffer = io.BytesIO()
    torch.save({"model": _Evil()}, buffer)
    referee = _codecs()[1]
    with pytest.raises(proxy.TransferError, match="does not accept"):
        referee.loads(buffer.getvalue())
    with pytest.raises(ValueError, match="checkpoint"):  # a plain pickle is not a message
        referee.loads(pickle.dumps(_Evil()))
    assert not Path("/tmp/course-grading-evil").exists()


def test_new_state_of_an_argument_is_copied_in_place_keeping_identity():
    target = BaselineCNN()
    first_conv = next(m for m in target.modules() if isinstance(m, nn.Conv2d))
    weight = first_conv.weight
    source = BaselineCNN()
    codec.sync_into(target, source)
    assert next(m for m in target.modules() if isinstance(m, nn.Conv2d)) is first_conv
    source_conv = next(m for m in source.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.weight is weight and torch.equal(weight, source_conv.weight)
    pruned = BaselineCNN()
    tp.pruner.BasePruner(
        pruned,
        torch.randn(1, 3, 32, 32),
        importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=0.5,
        ignored_layers=[pruned.classifier[-1]],
    ).step()
    codec.sync_into(target, pruned)  # the structure changed: shapes follow
    assert [p.shape for p in target.parameters()] == [p.shape for p in pruned.parameters()]
    listed = [1]
    codec.sync_into(listed, [1, 2])
    assert listed == [1, 2]


STUDENT_SIDE = """
import sys, torch
from course_lib.grader import agent as link

def double_in_place(model):
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2)
    return model

def softmax_mix(x, logits):
    return (torch.softmax(logits, 0) * x).sum()

def per_path(xs, logits):  # a list of tensors, like a sync point with one output per path
    p = torch.softmax(logits, 0)
    return [p[0] * x + p[1] * x.mean() for x in xs]

def calls_back(model, callback):
    callback(model)
    return model

def fails(x):
    raise ValueError(f"bad input {x}")

def steal():  # ask the referee for a name the grader did not hand out
    return link.agent().fetch_names(["In"])

link.start("student", sys.argv[1])
link.serve()
"""


@pytest.mark.slow
def test_calls_cross_the_link_with_in_place_changes_gradients_and_errors(tmp_path):
    address = str(tmp_path / "referee.sock")
    link.start("referee", address)
    script = tmp_path / "student.py"
    script.write_text(STUDENT_SIDE)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, str(script), address], env=env)
    try:
        agent = link.agent()
        agent.accept(120)
        names = ["double_in_place", "softmax_mix", "per_path", "calls_back", "fails", "steal"]
        names.append("absent")
        values = agent.fetch_names(names)
        assert isinstance(values["absent"], codec.Missing)
        model = BaselineCNN()
        before = [p.clone() for p in model.parameters()]
        assert values["double_in_place"](model) is model
        assert all(torch.equal(p, 2 * b) for p, b in zip(model.parameters(), before, strict=True))
        logits = torch.zeros(3, requires_grad=True)
        values["softmax_mix"](torch.tensor([1.0, 2.0, 3.0]), logits).backward()
        assert logits.grad is not None and logits.grad.abs().sum() > 0
        logits = torch.tensor([0.3, -0.2], requires_grad=True)
        xs = [torch.tensor([1.0, 2.0]), torch.tensor([-1.0, 4.0])]
        outputs = values["per_path"](xs, logits)
        assert isinstance(outputs, list) and len(outputs) == 2
        sum(o.square().sum() for o in outputs).backward()
        expected = torch.tensor([0.3, -0.2], requires_grad=True)
        p = torch.softmax(expected, 0)
        sum((p[0] * x + p[1] * x.mean()).square().sum() for x in xs).backward()
        assert torch.allclose(logits.grad, expected.grad)
        seen = []
        values["calls_back"](model, lambda m: seen.append(type(m).__name__))
        assert seen == ["BaselineCNN"]
        with pytest.raises(ValueError, match="bad input 3") as raised:
            values["fails"](3)
        assert "in fails" in str(raised.value)  # the student's frames, never the link's
        assert "course_lib/grader" not in str(raised.value)
        with pytest.raises(PermissionError, match="does not hand out"):
            values["steal"]()
    finally:
        link.release()
        child.wait(timeout=60)
        link.stop()
    assert child.returncode == 0


# --- which kernel runs which cell -------------------------------------------------------


def test_cell_names_follow_python_scopes():
    assigned, read = cell_names(
        "import torch\nfrom torch import nn\nx = 1\n\n"
        "def f(a):\n    global y\n    y = a + scale\n    return [b * z for b in a]\n\n%time print(x)"
    )
    assert {"torch", "nn", "x", "f", "y"} <= assigned
    assert {"scale", "z"} <= read and "a" not in read and "b" not in read
    assert "x" not in read, "the argument of a magic is text, not code"
    assert imported_names("import torch\nimport numpy as np\nx = np") == {"torch", "np"}
    assert cell_names("def broken(:\n") == (set(), set())


def _cell(source: str, grade_id: str | None = None, **flags):
    meta = {"nbgrader": {"grade_id": grade_id, **flags}} if grade_id else {}
    return new_code_cell(source, metadata=meta)


def test_plan_sends_the_tests_to_the_referee_and_names_where_they_are_needed():
    nb = new_notebook()
    nb.cells = [
        _cell("import math\nfrom course_lib import grading\nscale = 3", "setup"),
        _cell("def triple(x):\n    return scale * x\ngrading = None", "triple", solution=True),
        _cell("values = [triple(v) for v in range(3)]", "run"),
        _cell("print(values, math.pi)"),
        _cell("assert triple(2) == 6\ngrading.check_accuracy(1.0, 0.5)", "test"),
    ]
    sources = {"setup": nb.cells[0].source, "run": nb.cells[2].source, "test": nb.cells[4].source}
    plan = make_plan(nb, sources, {"test": 1.0}, {"triple"})
    setup, solution, run, added, test = plan.cells
    assert setup.preamble and setup.trusted and not solution.trusted and run.trusted
    assert not added.trusted and test.test and test.points == 1.0
    plan.ran(setup)
    plan.ran(solution)
    fetch, shadowed = plan.for_referee(run)
    assert fetch == ["triple"] and shadowed == []
    plan.ran(run)
    assert plan.for_student(added) == ["values"], "computed by the referee after the preamble"
    assert plan.for_student(added) == [], "pulled once"
    plan.ran(added)
    fetch, shadowed = plan.for_referee(test)
    assert fetch == ["triple"]
    assert shadowed == [("grading", 1)], "the solution rebound a name the test uses"
    edited = nbformat.from_dict(nb)
    edited.cells[4].source = "# put back by nbgrader\n" + edited.cells[4].source + "\npass"
    test = make_plan(edited, sources, {"test": 1.0}, {"triple"}).cells[4]
    assert test.trusted and test.test and test.code == sources["test"], "the source runs"


# --- outputs and the report -------------------------------------------------------------


def test_output_budget_cuts_and_notes():
    budget = OutputBudget(per_output=1000, per_cell=1500, per_notebook=10_000)
    kept = budget.admit(0, new_output("stream", name="stdout", text="x" * 5000))
    assert kept is not None and len(kept.text) < 1000
    note = budget.note(0)
    assert note is not None and "[output truncated:" in note.text
    assert budget.note(1) is None
    assert budget.admit(2, new_output("display_data", data={"text/plain": "z" * 5000})) is None


def test_report_lists_flags_and_not_graded(tmp_path):
    records = [
        {
            "student": "ann",
            "protections": ["filesystem: isolated"],
            "warnings": [],
            "events": [{"kind": "rebinds", "cell": "t", "detail": "note"}],
            "tests": {"t": {"points": 2.0, "score": 2.0, "student_kernel": 2.0}},
        },
        {
            "student": "dan",
            "protections": ["filesystem: isolated"],
            "warnings": [],
            "events": [{"kind": "tampering", "cell": "t", "detail": "passed there, failed here"}],
            "tests": {"t": {"points": 2.0, "score": 0, "student_kernel": 2.0}},
        },
    ]
    text = integrity.write_report(tmp_path / "r.md", "toy", records, {"eve": "unreadable notebook"})
    assert "| ann | 2 / 2 | - |" in text and "| dan | 0 / 2 | tampering |" in text
    assert "### dan" in text and "### ann" not in text
    assert "| eve | not graded | unreadable notebook |" in text
    assert (tmp_path / "r.json").exists()
    assert integrity.summary_line(records[1]) == "dan: 0/2 auto points; tampering (1)"

"""The binary-network assignment: its checks, its accuracy floor, and nbgrader end to end.

Uses the pipeline helpers of ``tests/test_grading.py`` (one course directory, one grading
run). Students: alice submits the solution, bob the untouched student version, carol a
plausible wrong one (``sign`` through ``torch.sign``, which gives 0 at 0, and one scale for
the whole tensor instead of one per output channel).
"""

from __future__ import annotations

import csv

import nbformat
import pytest
import test_grading as pipeline
import torch

from course_lib import data, grading
from course_lib.bnn.binarize import SignSTE, sign
from course_lib.bnn.recu import recu_clamp
from course_lib.bnn.scaling import xnor_alpha
from course_lib.grading import bnn as homework

ASSIGNMENT = "bnn"
AUTO_POINTS, MANUAL_POINTS = 14.0, 6.0
EXPECTED = {"alice": 14.0, "bob": 0.0, "carol": 9.0}
#: The homework network's training cell takes about 20 s on a quiet laptop; grading five
#: notebooks beside other jobs can take several times longer.
TIMEOUT_S = 600


def per_channel_alpha(w):
    return xnor_alpha(w).flatten()


# --- the checks accept the course's functions and reject common mistakes ----------------------


def test_sign_checks():
    grading.check_sign_ste(SignSTE)

    class TorchSign(torch.autograd.Function):  # sign(0) = 0
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return torch.sign(x)

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * (x.abs() <= 1)

    class Unclipped(torch.autograd.Function):  # identity backward: no clipping
        @staticmethod
        def forward(ctx, x):
            return sign(x)

        @staticmethod
        def backward(ctx, grad):
            return grad

    with pytest.raises(grading.CheckFailed, match=r"sign\(0\) = 0, expected 1"):
        grading.check_sign_ste(TorchSign)
    with pytest.raises(grading.CheckFailed, match="clipped identity"):
        grading.check_sign_ste(Unclipped)
    with pytest.raises(grading.CheckFailed, match="clipped identity"):
        grading.check_sign_ste(homework.zero_gradient_sign())


def test_packing_and_dot_checks():
    grading.check_packing(homework.reference_pack)
    grading.check_binary_dot(homework.reference_pack, homework.reference_binary_dot)

    def inverted(v):  # bit 1 for +1: consistent, so the dot products still agree
        return homework.reference_pack(-v)

    with pytest.raises(grading.CheckFailed, match="bit i % 64 of word i // 64 is 1 where v"):
        grading.check_packing(inverted)
    grading.check_binary_dot(inverted, homework.reference_binary_dot)

    def no_factor_two(a, w, n):
        return n - sum((x ^ y).bit_count() for x, y in zip(a, w, strict=True))

    with pytest.raises(grading.CheckFailed, match="length 1 = 0, the float dot product is"):
        grading.check_binary_dot(homework.reference_pack, no_factor_two)


def test_alpha_error_and_clamp_checks():
    grading.check_alpha(per_channel_alpha)
    grading.check_quantization_error(
        lambda w, alpha: homework.reference_qe(w, alpha.reshape(-1, *[1] * (w.dim() - 1)))
    )
    grading.check_recu(recu_clamp)
    with pytest.raises(grading.CheckFailed, match="everything but the first"):
        grading.check_alpha(lambda w: w.abs().mean().expand(w.shape[0]))
    with pytest.raises(grading.CheckFailed, match="eq. 8"):
        grading.check_quantization_error(lambda w, alpha: float(((w - torch.sign(w)) ** 2).mean()))

    def per_channel_clamp(w, tau):
        if tau == 1.0:
            return w
        b = w.abs().flatten(1).mean(1).reshape(-1, *[1] * (w.dim() - 1))
        q = -b * torch.log(torch.tensor(2 - 2 * tau))
        return torch.maximum(torch.minimum(w, q), -q)

    with pytest.raises(grading.CheckFailed, match="whole tensor"):
        grading.check_recu(per_channel_clamp)
    assert grading.bnn_homework("quick").epochs >= 1
    with pytest.raises(ValueError, match="unknown profile"):
        grading.bnn_homework("fast")


@pytest.fixture(scope="module")
def homework_loaders(cifar):
    settings = grading.bnn_homework("quick")
    return data.make_loaders(cifar, settings.data, seed=0, channels_last=False)


@pytest.mark.slow
def test_a_sign_without_gradient_cannot_reach_the_floor(homework_loaders):
    """The floor is meaningful: the homework network trained with the course's functions
    passes it, the same network with a sign that passes no gradient does not."""
    settings = grading.bnn_homework("quick")
    functions = homework.reference_functions()
    good, _ = homework.train_homework_network(functions, homework_loaders, settings, seed=0)
    dead = {**functions, "sign": homework.zero_gradient_sign().apply}
    bad, _ = homework.train_homework_network(dead, homework_loaders, settings, seed=0)
    assert good >= grading.BNN_MIN_ACCURACY + 0.03, good
    assert bad <= grading.BNN_MIN_ACCURACY - 0.03, bad
    with pytest.raises(grading.CheckFailed, match="below the floor"):
        grading.check_accuracy(bad, grading.BNN_MIN_ACCURACY)


# --- the source notebook ------------------------------------------------------------------


def test_source_notebook_is_a_valid_nbgrader_assignment():
    nb = nbformat.read(pipeline.source_of(ASSIGNMENT), as_version=4)
    nbformat.validate(nb)
    cells = pipeline.cells_by_id(nb)
    meta = pipeline.nbgrader_meta
    assert len(cells) == sum("grade_id" in meta(c) for c in nb.cells), "duplicate ids"
    auto = sum(
        meta(c)["points"] for c in cells.values() if meta(c)["grade"] and not meta(c)["solution"]
    )
    manual = sum(
        meta(c)["points"] for c in cells.values() if meta(c)["grade"] and meta(c)["solution"]
    )
    assert (auto, manual) == (AUTO_POINTS, MANUAL_POINTS)
    for grade_id, cell in cells.items():
        if meta(cell)["grade"] and not meta(cell)["solution"]:
            assert meta(cell)["locked"] and cell.cell_type == "code", grade_id
        if "BEGIN HIDDEN TESTS" in cell.source:
            assert meta(cell)["grade"] and not meta(cell)["solution"], grade_id
    assert cells["parameters"].metadata["tags"] == ["parameters"]
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    imported = "\n".join(line for line in code.splitlines() if "import" in line)
    assert "course_lib.bnn" not in imported and "from course_lib import bnn" not in imported
    assert pipeline.hidden_test_lines(nb), "the hidden tests are not visible elsewhere"


@pytest.mark.slow
def test_solution_passes_every_check_under_papermill(tmp_path):
    import papermill

    source = pipeline.source_of(ASSIGNMENT)
    papermill.execute_notebook(
        str(source),
        str(tmp_path / source.name),
        parameters={"profile": "quick", "seed": 0},
        cwd=str(tmp_path),
        progress_bar=False,
    )


# --- nbgrader, end to end -------------------------------------------------------------------


def make_submissions(course) -> dict:
    carol = pipeline.solved(course, ASSIGNMENT)
    cells = pipeline.cells_by_id(carol)
    sign_cell = cells["sign_ste"]
    correct_sign = "return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))"
    assert correct_sign in sign_cell.source
    sign_cell.source = sign_cell.source.replace(correct_sign, "return torch.sign(x)")
    alpha_cell = cells["alpha_qe"]
    assert "return w.abs().flatten(1).mean(dim=1)" in alpha_cell.source
    alpha_cell.source = alpha_cell.source.replace(
        "return w.abs().flatten(1).mean(dim=1)", "return w.abs().mean().expand(w.shape[0])"
    )
    submissions = {
        "alice": pipeline.solved(course, ASSIGNMENT),
        "bob": pipeline.released(course, ASSIGNMENT),
        "carol": carol,
    }
    for student, nb in submissions.items():
        pipeline.write_submission(course, student, nbformat.writes(nb), ASSIGNMENT)
    return {}


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> dict:
    previous = pipeline.TIMEOUT_S
    pipeline.TIMEOUT_S = TIMEOUT_S
    try:
        return pipeline.graded_course(
            tmp_path_factory.mktemp("bnn_course"), ASSIGNMENT, make_submissions
        )
    finally:
        pipeline.TIMEOUT_S = previous


@pytest.mark.slow
def test_bnn_assignment_is_graded_with_partial_credit(course):
    root = course["root"]
    assert course["status"] == 0, pipeline.log_tail(course)
    with open(root / "grades.csv", newline="") as f:
        rows = {row["student_id"]: row for row in csv.DictReader(f)}
    assert sorted(rows) == sorted(EXPECTED)
    for student, score in EXPECTED.items():
        assert float(rows[student]["score"]) == score, student + pipeline.log_tail(course)
        assert float(rows[student]["max_score"]) == AUTO_POINTS + MANUAL_POINTS
    with pipeline.gradebook(root) as gb:
        for grade_id, score in (
            ("test_sign", 0.0),
            ("test_sign_hidden", 0.0),
            ("test_alpha", 1.0),
            ("test_alpha_hidden", 0.0),
            ("test_dot_hidden", 2.0),
            ("test_training", 2.0),
        ):
            assert gb.find_grade(grade_id, ASSIGNMENT, ASSIGNMENT, "carol").score == score, grade_id


@pytest.mark.slow
def test_bnn_feedback_explains_the_failure_without_hidden_tests(course):
    nb = nbformat.read(pipeline.source_of(ASSIGNMENT), as_version=4)
    hidden = pipeline.hidden_test_lines(nb)
    path = course["root"] / "assignments/feedback/carol" / ASSIGNMENT / f"{ASSIGNMENT}.html"
    text = pipeline.visible_text(path.read_text())
    assert "HIDDEN TESTS" not in text
    for line in hidden:
        assert line not in text, f"carol's feedback shows hidden test code: {line}"

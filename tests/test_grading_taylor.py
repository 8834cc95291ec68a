"""The Taylor-pruning assignment: its checks, and the nbgrader pipeline end to end.

The fast tests run the checks of ``course_lib.grading.taylor`` on the course's own functions
and on plausible mistakes. The slow tests build a throw-away course (as
``tests/test_grading.py`` does for the other assignments, whose helpers are reused here)
and grade three students in one ``nbgrader autograde`` run:

- alice submits the instructor's solution (full marks);
- bob submits the student version untouched (zero);
- grace forgets the absolute value in the criterion (partial credit).

A last slow test runs the assignment's quick-profile pipeline with a *random* ranking and
checks that it does not clear the accuracy floor that the solution clears.
"""

from __future__ import annotations

import copy
import csv
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch
from test_grading import (
    cells_by_id,
    gradebook,
    hidden_test_lines,
    nbgrader_meta,
    released,
    solved,
    source_of,
    strip_solution_markers,
    visible_text,
    write_submission,
)
from torch import nn

from course_lib import grader, grading, taylor
from course_lib.taylor import criterion, loop

ASSIGNMENT = "taylor"
SOURCE = source_of(ASSIGNMENT)
AUTO_POINTS, MANUAL_POINTS = 9.0, 6.0
#: grace's criterion has no absolute value: she fails the three criterion points, and her
#: ranking (the most harmful filters first) misses the accuracy floor: 9 - 3 - 2 = 4.
EXPECTED_AUTO_SCORE = {"alice": 9.0, "bob": 0.0, "grace": 4.0}
#: Per-cell timeout: the run cell takes about a minute on a quiet 2-core machine.
TIMEOUT_S = 600


# --- the checks, on the course's own functions and on mistakes (fast) -----------------------


def test_the_course_functions_pass_every_check():
    grading.check_taylor_criterion(criterion.taylor_scores)
    grading.check_taylor_criterion(criterion.taylor_scores, grading.other_network(3), (3, 6), 3)
    grading.check_normalization(criterion.normalize_per_layer)

    def reference_round(model, scores, count, example, finetune):
        chosen = criterion.lowest_filters(scores, count)
        loop.remove_filters(model, chosen, example)
        finetune(model)
        return chosen

    grading.check_prune_round(reference_round)
    grading.check_prune_round(reference_round, 12, grading.other_network(4), seed=4)


def signed_criterion(model, batches):
    """A plausible mistake: the signed mean, without the absolute value."""
    maps = criterion.feature_maps(model)
    totals, handles = {}, []

    def make_hook(name):
        def hook(module, inputs, output):
            activation = output.detach()
            output.register_hook(
                lambda g: totals.__setitem__(
                    name, totals.get(name, 0) + (activation * g).mean(dim=(0, 2, 3))
                )
            )

        return hook

    handles = [m.register_forward_hook(make_hook(n)) for n, m in maps.items()]
    model.eval()
    for x, y in batches:
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
    for handle in handles:
        handle.remove()
    model.zero_grad(set_to_none=True)
    return totals


def test_the_criterion_checks_catch_plausible_mistakes():
    with pytest.raises(grading.CheckFailed, match="absolute value"):
        grading.check_taylor_criterion(signed_criterion)

    def summed_over_the_batch(model, batches):  # the sum over images instead of the mean
        return {k: v * 4 for k, v in criterion.taylor_scores(model, batches).items()}

    with pytest.raises(grading.CheckFailed, match="scores differ"):
        grading.check_taylor_criterion(summed_over_the_batch)

    def magnitude_of_the_batch_mean(model, batches):  # the course's own error until 2026-12
        return criterion.taylor_scores(model, batches, per_example=False)

    with pytest.raises(grading.CheckFailed, match="magnitude per image"):
        grading.check_taylor_criterion(magnitude_of_the_batch_mean)

    def leaves_hooks(model, batches):
        maps = criterion.feature_maps(model)
        next(iter(maps.values())).register_forward_hook(lambda *args: None)
        return criterion.taylor_scores(model, batches)

    with pytest.raises(grading.CheckFailed, match="still carry forward hooks"):
        grading.check_taylor_criterion(leaves_hooks)


def test_the_normalization_check_catches_a_missing_or_wrong_norm():
    with pytest.raises(grading.CheckFailed, match="L2 norm|square root"):
        grading.check_normalization(lambda scores: dict(scores))
    with pytest.raises(grading.CheckFailed, match="square root"):
        grading.check_normalization(
            lambda scores: {k: v / v.sum().clamp_min(1e-12) for k, v in scores.items()}
        )
    with pytest.raises(grading.CheckFailed, match="all zero stays zero"):
        grading.check_normalization(lambda scores: {k: v / v.norm() for k, v in scores.items()})


def test_the_round_check_catches_local_ranking_and_missing_finetune():
    def per_layer(model, scores, count, example, finetune):  # the same count from every layer
        chosen = {
            k: v.argsort()[: max(1, count // len(scores))].tolist() for k, v in scores.items()
        }
        loop.remove_filters(model, chosen, example)
        finetune(model)
        return chosen

    with pytest.raises(grading.CheckFailed, match="one ranking over all layers"):
        grading.check_prune_round(per_layer)

    def no_finetune(model, scores, count, example, finetune):
        chosen = criterion.lowest_filters(scores, count)
        loop.remove_filters(model, chosen, example)
        return chosen

    with pytest.raises(grading.CheckFailed, match="finetune was called 0 time"):
        grading.check_prune_round(no_finetune)


def test_taylor_homework_settings():
    quick = grading.taylor_homework("quick")
    assert quick.rounds * quick.filters_per_round < sum(taylor.network.VGG16_WIDTHS) // 4
    with pytest.raises(ValueError, match="unknown profile"):
        grading.taylor_homework("fast")


# --- the source notebook ----------------------------------------------------------------------


def test_source_notebook_is_a_valid_nbgrader_assignment():
    nb = nbformat.read(SOURCE, as_version=4)
    nbformat.validate(nb)
    cells = cells_by_id(nb)
    assert len(cells) == sum("grade_id" in nbgrader_meta(c) for c in nb.cells), "duplicate ids"
    auto = manual = 0.0
    for grade_id, cell in cells.items():
        meta = nbgrader_meta(cell)
        if meta["grade"] and not meta["solution"]:
            assert meta["locked"] and cell.cell_type == "code" and meta["points"] > 0, grade_id
            assert cell.source.startswith(
                f"# {'Hidden tests' if 'hidden' in grade_id else 'Test'} ({meta['points']} point"
            )
            auto += meta["points"]
        elif meta["grade"]:
            assert cell.cell_type == "markdown" and meta["points"] > 0, grade_id
            manual += meta["points"]
        elif meta["solution"] and cell.cell_type == "code":
            assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source
        if "BEGIN HIDDEN TESTS" in cell.source:
            assert meta["grade"] and not meta["solution"], grade_id
    assert (auto, manual) == (AUTO_POINTS, MANUAL_POINTS)
    assert cells["parameters"].metadata["tags"] == ["parameters"]
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    imported = "\n".join(line for line in code.splitlines() if "import" in line)
    for name in (
        "taylor_scores",
        "normalize_per_layer",
        "lowest_filters",
        "remove_filters",
        "score_filters",
    ):
        assert name not in imported, f"{name} is imported in the assignment"


# --- the nbgrader pipeline, end to end ----------------------------------------------------------


def make_submissions(course: Path) -> None:
    grace = solved(course, ASSIGNMENT)
    cell = cells_by_id(grace)["taylor_criterion"]
    assert ".mean(dim=(2, 3)).abs().sum(dim=0)" in cell.source
    cell.source = cell.source.replace(".mean(dim=(2, 3)).abs().sum(dim=0)", ".mean(dim=(0, 2, 3))")
    for student, nb in {
        "alice": solved(course, ASSIGNMENT),
        "bob": released(course, ASSIGNMENT),
        "grace": grace,
    }.items():
        write_submission(course, student, nbformat.writes(nb), ASSIGNMENT)


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> dict:
    """The Taylor assignment, generated and graded for alice, bob and grace."""
    import shutil

    if not taylor.transfer.source_checkpoint().exists():
        pytest.fail("checkpoints/taylor_source_vgg.pt is missing: the assignment transfers it")
    root = tmp_path_factory.mktemp("taylor_course")
    shutil.copy(Path(__file__).resolve().parents[1] / "nbgrader_config.py", root)
    shutil.copytree(SOURCE.parent, root / "assignments" / "source" / ASSIGNMENT)
    assert grader.nbgrader(root, "generate_assignment", ASSIGNMENT) == 0
    make_submissions(root)
    command = [
        sys.executable,
        "-m",
        "course_lib.grader",
        "run",
        ASSIGNMENT,
        "--course-dir",
        str(root),
    ]
    command += ["--csv", str(root / "grades.csv"), "--timeout", str(TIMEOUT_S)]
    run = subprocess.run(command, capture_output=True, text=True)
    return {"root": root, "status": run.returncode, "log": run.stdout + run.stderr}


def log_tail(course: dict) -> str:
    return "\n--- grading log (end) ---\n" + course["log"][-6000:]


@pytest.mark.slow
def test_student_version_has_no_solutions_and_no_hidden_tests(course):
    release = course["root"] / "assignments/release" / ASSIGNMENT / SOURCE.name
    text = release.read_text()
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    student_nb = nbformat.reads(text, as_version=4)
    shown = "\n".join(cell.source for cell in student_nb.cells)
    source = nbformat.read(SOURCE, as_version=4)
    for line in hidden_test_lines(source):
        assert line not in shown, f"hidden test in the student version: {line}"
    solutions = cells_by_id(source)
    for grade_id, cell in cells_by_id(student_nb).items():
        if nbgrader_meta(cell)["solution"]:
            body = strip_solution_markers(solutions[grade_id].source).splitlines()
            assert [line for line in body if line.strip() and line not in cell.source], grade_id
            assert "YOUR CODE HERE" in cell.source or "YOUR ANSWER HERE" in cell.source


@pytest.mark.slow
def test_solution_full_marks_untouched_zero_and_a_plausible_mistake_partial(course):
    assert course["status"] == 0, log_tail(course)
    with open(course["root"] / "grades.csv", newline="") as f:
        rows = {row["student_id"]: row for row in csv.DictReader(f)}
    assert sorted(rows) == sorted(EXPECTED_AUTO_SCORE)
    for student, score in EXPECTED_AUTO_SCORE.items():
        assert float(rows[student]["score"]) == score, student + log_tail(course)
        assert float(rows[student]["max_score"]) == AUTO_POINTS + MANUAL_POINTS
    with gradebook(course["root"]) as gb:
        assert gb.find_submission(ASSIGNMENT, "alice").needs_manual_grade
        for grade_id, points in (
            ("test_criterion", 0.0),
            ("test_criterion_hidden", 0.0),
            ("test_normalize", 1.0),
            ("test_prune_round_hidden", 2.0),
            ("test_accuracy", 0.0),
        ):
            grade = gb.find_grade(grade_id, ASSIGNMENT, ASSIGNMENT, "grace")
            assert grade.score == points, grade_id + log_tail(course)


@pytest.mark.slow
def test_feedback_explains_the_failure_without_hidden_tests(course):
    hidden = hidden_test_lines(nbformat.read(SOURCE, as_version=4))
    assert hidden
    path = course["root"] / "assignments/feedback/grace" / ASSIGNMENT / f"{ASSIGNMENT}.html"
    text = visible_text(path.read_text())
    assert "and take the absolute value" in text
    assert "HIDDEN TESTS" not in text
    for line in hidden:
        assert line not in text, f"grace's feedback shows hidden test code: {line}"


# --- the floor separates the criterion from a random choice ----------------------------------


def homework_run(ranking: str, seed: int = 0) -> float:
    """The assignment's Part 4 (quick profile) with the course's functions and ``ranking``
    (a criterion of :data:`course_lib.taylor.CRITERIA`; ``random`` drawn with ``seed``);
    returns the pruned network's test accuracy."""
    from course_lib import data, train

    settings = grading.taylor_homework("quick")
    device = train.default_device()
    loaders = taylor.class_loaders(data.load_cifar10(), taylor.HELD_OUT, settings.data, 0, device)
    calibration = list(taylor.plain_copy(loaders.train, batch_size=128))
    unpruned = taylor.transfer_network(taylor.load_source(), loaders, settings.transfer, seed=0)
    model = copy.deepcopy(unpruned.model)
    finetune = taylor.finetune_rounds(loaders.train, settings.finetune, 0)
    for index in range(1, settings.rounds + 1):
        scores = criterion.score_filters(model, ranking, calibration, seed=1_000 * seed + index)
        chosen = criterion.lowest_filters(scores, settings.filters_per_round)
        loop.remove_filters(model, chosen, torch.zeros(1, 3, 32, 32, device=device))
        finetune(model, index)
    return train.evaluate(model, loaders.test)[1]


@pytest.mark.slow
def test_random_ranking_misses_the_floor_that_the_taylor_criterion_clears():
    taylor_accuracy = homework_run("taylor")
    random_accuracies = [homework_run("random", seed) for seed in range(3)]
    assert taylor_accuracy >= grading.TAYLOR_MIN_ACCURACY, taylor_accuracy
    # on average, not every draw: one lucky random ranking reached 83.3 % on an AMD EPYC
    # (float32) where it had 80.3 % on an Intel Xeon (bfloat16); the mean of seeds 0-2 was
    # 69.9 and 68.3 % (the measurements beside TAYLOR_MIN_ACCURACY)
    mean_random = sum(random_accuracies) / len(random_accuracies)
    assert mean_random < grading.TAYLOR_MIN_ACCURACY - 0.05, random_accuracies

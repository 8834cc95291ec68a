"""Graded assignments: the checks of ``course_lib.grading`` and the nbgrader pipeline, end to end.

The slow tests build a throw-away course directory (a copy of ``nbgrader_config.py`` and of
the assignment's source) and grade five students in one ``nbgrader autograde`` run:

- alice submits the instructor's solution;
- bob submits the student version untouched;
- carol's first function is an infinite loop (stopped by the per-cell timeout);
- dave deleted two test cells and a written answer, rewrote a test to ``pass`` (with a
  broken function under it) and raised a test's points in the metadata;
- erin's file is not valid notebook JSON.
"""

from __future__ import annotations

import copy
import csv
import html
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest
import torch
import torch_pruning as tp
from torch import nn
from torch.nn.utils import prune

from course_lib import cli, grader, grading
from course_lib.grader import integrity
from course_lib.grading.nas import reference_mixed_op, reference_sync_point
from course_lib.models import BaselineCNN
from course_lib.nas import SearchSpace, costs, decide
from course_lib.paths import CHECKPOINT_DIR

REPO = Path(__file__).resolve().parents[1]
ASSIGNMENT = "pruning"
SOURCE = REPO / "assignments" / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
AUTO_POINTS, MANUAL_POINTS = 12.0, 10.0
#: (auto-graded, written) points of every assignment.
POINTS = {"pruning": (12.0, 10.0), "nas": (15.0, 8.0)}


def source_of(assignment: str) -> Path:
    return REPO / "assignments" / "source" / assignment / f"{assignment}.ipynb"


#: Per-cell timeout of the test run: well above the slowest cell of the solution (about 8 s on
#: a quiet 2-core machine; 30 s was exceeded when other jobs shared the cores), and what
#: carol's infinite loop costs.
TIMEOUT_S = 120
EXPECTED_AUTO_SCORE = {"alice": 12.0, "bob": 0.0, "carol": 4.0, "dave": 8.0, "erin": 0.0}
GRADED = ("alice", "bob", "carol", "dave")


def nbgrader_meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def cells_by_id(nb) -> dict:
    return {nbgrader_meta(c)["grade_id"]: c for c in nb.cells if "grade_id" in nbgrader_meta(c)}


def hidden_test_lines(nb) -> list[str]:
    """The lines between BEGIN and END HIDDEN TESTS (stripped) that occur nowhere else in
    the notebook, not even as part of a line: what a student must never see."""
    hidden, visible, inside = [], [], False
    for cell in nb.cells:
        for line in cell.source.splitlines():
            if "BEGIN HIDDEN TESTS" in line or "END HIDDEN TESTS" in line:
                inside = "BEGIN" in line
            elif line.strip():
                (hidden if inside else visible).append(line.strip())
    visible_text = "\n".join(visible)
    return [line for line in hidden if len(line) >= 12 and line not in visible_text]


def require_baseline() -> None:
    """The assignment prunes the committed baseline: say so plainly when it is missing."""
    if not (CHECKPOINT_DIR / "baseline_cnn.pt").exists():
        pytest.fail(
            f"{CHECKPOINT_DIR / 'baseline_cnn.pt'} is missing: the pruning assignment loads the "
            f"committed baseline (course run notebooks/01_baseline.ipynb --profile full)."
        )


def strip_solution_markers(source: str) -> str:
    return "\n".join(line for line in source.splitlines() if " SOLUTION" not in line)


# --- the checks, on a fresh model (fast) -------------------------------------------------


def _weight_params(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def test_check_sparsity_is_exact():
    model = BaselineCNN()
    prune.global_unstructured(_weight_params(model), prune.L1Unstructured, amount=0.3)
    grading.check_sparsity(model, 0.3)
    assert grading.sparsity(model) == pytest.approx(0.3, abs=1e-6)
    with pytest.raises(grading.CheckFailed, match="expected .* \\(sparsity 0.31\\)"):
        grading.check_sparsity(model, 0.31)


def test_magnitude_criterion_accepts_global_and_rejects_per_layer_pruning():
    original = BaselineCNN()
    pruned = BaselineCNN()
    pruned.load_state_dict(original.state_dict())
    prune.global_unstructured(_weight_params(pruned), prune.L1Unstructured, amount=0.5)
    grading.check_magnitude_criterion(original, pruned)
    per_layer = BaselineCNN()
    per_layer.load_state_dict(original.state_dict())
    for module, name in _weight_params(per_layer):
        prune.l1_unstructured(module, name, amount=0.5)
    with pytest.raises(grading.CheckFailed, match="over all layers"):
        grading.check_magnitude_criterion(original, per_layer)


def test_check_schedule():
    grading.check_schedule([0.2, 0.4, 0.6], 0.6, 3, total=1000)
    with pytest.raises(grading.CheckFailed, match="cumulative"):
        grading.check_schedule([0.2, 0.36, 0.488], 0.6, 3, total=1000)
    with pytest.raises(grading.CheckFailed, match="ran 2 times, expected 3"):
        grading.check_schedule([0.3, 0.6], 0.6, 3, total=1000)


@pytest.mark.parametrize("ratio", [0.1, 0.2, 0.3, 0.4, 0.5])
def test_check_structured_matches_torch_pruning(ratio):
    model = BaselineCNN()
    pruner = tp.pruner.BasePruner(
        model,
        torch.randn(1, 3, 32, 32),
        importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=ratio,
        iterative_steps=2,
        ignored_layers=[model.classifier[-1]],
    )
    for _ in range(2):
        pruner.step()
    grading.check_structured(model, ratio)
    params = sum(p.numel() for p in model.parameters())
    assert params == sum(p.numel() for p in grading.expected_structured(ratio).parameters())
    with pytest.raises(grading.CheckFailed, match="shapes"):
        grading.check_structured(model, ratio + 0.1)


def test_check_steps_and_accuracy():
    grading.check_steps([300, 200, 100], 3)
    with pytest.raises(grading.CheckFailed, match="every step must"):
        grading.check_steps([300, 300, 100], 3)
    floor = grading.accuracy_floor(0.88, "one_shot_50")
    assert floor == pytest.approx(0.88 - grading.MAX_DROP["one_shot_50"])
    assert grading.accuracy_floor(0.2, "one_shot_50") == grading.MIN_ACCURACY
    grading.check_accuracy(0.9, floor)
    with pytest.raises(grading.CheckFailed, match="below the floor"):
        grading.check_accuracy(floor - 0.01, floor)
    with pytest.raises(grading.CheckFailed, match="fraction"):
        grading.check_accuracy(85.0, floor)


# --- the pruning floors and mask implementations --------------------------------------------


def _global_prune(model: nn.Module, sparsity: float, keep_mask) -> nn.Module:
    """Global magnitude pruning to ``sparsity``; ``keep_mask(layer, mask)`` keeps the zeros."""
    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    magnitudes = torch.cat([m.weight.detach().abs().flatten() for m in layers])
    keep = torch.ones_like(magnitudes)
    keep[magnitudes.argsort(stable=True)[: round(sparsity * magnitudes.numel())]] = 0.0
    for layer, mask in zip(layers, keep.split([m.weight.numel() for m in layers]), strict=True):
        mask = mask.view_as(layer.weight)
        with torch.no_grad():
            layer.weight.mul_(mask)
        keep_mask(layer, mask)
    return model


def _gradient_hooks(layer: nn.Module, mask: torch.Tensor) -> None:
    layer.weight.register_hook(lambda grad: grad * mask)


def _forward_pre_hook(layer: nn.Module, mask: torch.Tensor) -> None:
    def remask(module, _inputs):
        with torch.no_grad():
            module.weight.mul_(mask)

    layer.register_forward_pre_hook(remask)


def _no_mask(layer: nn.Module, mask: torch.Tensor) -> None:
    """Zeroing the weights once and keeping nothing: training revives them."""


def _iterate(keep_mask, model: nn.Module, final: float, steps: int, finetune) -> nn.Module:
    for k in range(1, steps + 1):
        _global_prune(model, final * k / steps, keep_mask)
        finetune(model)
    return model


@pytest.mark.slow
def test_accuracy_floors_pass_the_methods_and_fail_the_common_mistakes(cifar):
    """On the committed baseline with the graded (quick) settings: global one-shot pruning,
    iterative pruning with fine-tuning and fine-tuned channel pruning clear their floors;
    layer-wise pruning, iterative pruning without fine-tuning and channel pruning without
    fine-tuning do not."""
    from course_lib.data import make_loaders
    from course_lib.models import load_baseline_cnn
    from course_lib.prune import structured, unstructured
    from course_lib.train import evaluate

    require_baseline()
    settings = grading.pruning_homework("quick")
    loaders = make_loaders(cifar, settings.data, seed=0, channels_last=False)
    baseline = load_baseline_cnn().eval()

    def accuracy(model):
        return evaluate(model, loaders.val)[1]

    def finetune(model):
        grading.train_with_pruner(model, loaders.train, settings.finetune, 0)

    def fresh():
        return copy.deepcopy(baseline)

    base = accuracy(baseline)
    floor = grading.accuracy_floor(base, "one_shot_50")
    grading.check_accuracy(accuracy(unstructured.prune_to(fresh(), 0.5, "global")), floor)
    with pytest.raises(grading.CheckFailed, match="below the floor"):
        grading.check_accuracy(accuracy(unstructured.prune_to(fresh(), 0.5, "layer")), floor)
    final, steps = settings.iterative_sparsity, settings.iterative_steps
    floor = grading.accuracy_floor(base, "iterative_90")
    iterative = unstructured.prune_iteratively(fresh(), final, steps, finetune)
    grading.check_accuracy(accuracy(iterative), floor)
    untrained = unstructured.prune_iteratively(fresh(), final, steps, lambda model: None)
    with pytest.raises(grading.CheckFailed, match="below the floor"):
        grading.check_accuracy(accuracy(untrained), floor)
    layerwise = unstructured.prune_iteratively(fresh(), final, steps, finetune, "layer")
    with pytest.raises(grading.CheckFailed, match="below the floor"):
        grading.check_accuracy(accuracy(layerwise), floor)
    floor = grading.accuracy_floor(base, "structured_50")
    ratio, steps = settings.structured_ratio, settings.structured_steps
    tuned = fresh()
    records = structured.prune_channels_gradually(tuned, ratio, steps, finetune=finetune)
    assert len(records) == steps
    grading.check_accuracy(accuracy(tuned), floor)
    untuned = fresh()
    structured.prune_channels_gradually(untuned, ratio, steps)
    with pytest.raises(grading.CheckFailed, match="below the floor"):
        grading.check_accuracy(accuracy(untuned), floor)


@pytest.mark.slow
@pytest.mark.parametrize("keep_mask", [_gradient_hooks, _forward_pre_hook])
def test_alternative_mask_implementations_pass_the_iterative_tests(keep_mask):
    """Masks kept in a gradient hook or re-applied in a forward pre-hook are correct: the
    hidden test trains with real SGD steps and checks after a forward pass."""
    torch.manual_seed(0)
    batch = (torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,)))
    original = BaselineCNN()
    sparsities = []
    model = _iterate(keep_mask, BaselineCNN(), 0.8, 4, grading.sgd_finetune(batch, sparsities))
    grading.check_schedule(sparsities, 0.8, 4, total=grading.zero_count(model)[1])
    grading.check_sparsity(model, 0.8, "alternative masks")
    pruned = _global_prune(copy.deepcopy(original), 0.6, keep_mask)
    grading.check_magnitude_criterion(original, pruned)


@pytest.mark.slow
def test_pruning_without_a_mask_fails_the_iterative_tests():
    torch.manual_seed(0)
    batch = (torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,)))
    sparsities = []
    model = _iterate(_no_mask, BaselineCNN(), 0.8, 4, grading.sgd_finetune(batch, sparsities))
    with pytest.raises(grading.CheckFailed, match="after step 1 of 4"):
        grading.check_schedule(sparsities, 0.8, 4, total=grading.zero_count(model)[1])


def _structured_prune(
    model, ratio, importance, iterative_steps=1, finetune=None,
    pruner_class=tp.pruner.BasePruner, batch=None, sparse_train=None, reg=None,
    late=False, drop_reg=False,
):  # fmt: skip
    """The assignment's solution, with two ways of getting sparsity training wrong."""
    extra = {} if reg is None or drop_reg else {"reg": reg}
    pruner = pruner_class(
        model, torch.randn(1, 3, 32, 32), importance=importance, pruning_ratio=ratio,
        iterative_steps=iterative_steps, ignored_layers=[model.classifier[-1]], **extra,
    )  # fmt: skip
    if sparse_train is not None and not late:
        sparse_train(model, pruner)
    for _ in range(iterative_steps):
        pruner.step()
        if sparse_train is not None and late:
            sparse_train(model, pruner)
    return model


@pytest.mark.slow
def test_check_sparse_training_needs_the_pruner_before_the_first_step():
    model = BaselineCNN()
    grading.check_sparse_training(_structured_prune, model)

    def without_sparse_training(*args, sparse_train=None, reg=None, **kwargs):
        return _structured_prune(*args, **kwargs)

    with pytest.raises(grading.CheckFailed, match="ran 0 times"):
        grading.check_sparse_training(without_sparse_training, model)
    with pytest.raises(grading.CheckFailed, match="ran 2 times|already pruned"):
        grading.check_sparse_training(lambda *a, **k: _structured_prune(*a, late=True, **k), model)
    with pytest.raises(grading.CheckFailed, match="strength"):
        grading.check_sparse_training(
            lambda *a, **k: _structured_prune(*a, drop_reg=True, **k), model
        )


@pytest.mark.slow
def test_train_with_pruner_regularizes_with_a_sparsity_training_pruner_only():
    from course_lib.data import TensorLoader
    from course_lib.train import TrainConfig

    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=generator)
    loader = TensorLoader(images, torch.randint(0, 10, (64,), generator=generator), batch_size=32)
    config = TrainConfig(epochs=1, lr=0.01, schedule="constant", channels_last=False)
    example = torch.randn(1, 3, 32, 32)

    def trained(pruner_class, **kwargs) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = BaselineCNN()
        pruner = None
        if pruner_class is not None:
            pruner = pruner_class(
                model, example, importance=tp.importance.GroupMagnitudeImportance(p=2),
                ignored_layers=[model.classifier[-1]], **kwargs,
            )  # fmt: skip
        grading.train_with_pruner(model, loader, config, 0, pruner)
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    plain = trained(None)
    assert not grading.regularizes(None) and not grading.regularizes(object())
    assert grading.regularizes(tp.pruner.GroupNormPruner(BaselineCNN(), example, importance=None))
    base = trained(tp.pruner.BasePruner)  # BasePruner trains plainly: the same weights
    assert all(torch.equal(plain[k], base[k]) for k in plain)
    group_norm = trained(tp.pruner.GroupNormPruner, reg=0.1)
    assert not torch.allclose(plain["features.0.0.weight"], group_norm["features.0.0.weight"])
    bn_scale = trained(tp.pruner.BNScalePruner, reg=0.1)
    assert not torch.allclose(plain["features.0.1.weight"], bn_scale["features.0.1.weight"])


def test_nas_checks_accept_the_course_functions_and_reject_common_mistakes():
    space = SearchSpace()
    grading.check_mixed_op(reference_mixed_op, ("conv3x3", "conv5x5", "sep3x3"), (4, 6))
    grading.check_cost_formulas(costs.conv_mults, costs.conv_adds, costs.fc_mults, costs.fc_adds)
    grading.check_cost_table(costs.op_cost_table, space)
    grading.check_ops_loss(costs.ops_loss, space)
    grading.check_derive(decide, space)

    def detached(x, logits, candidates):
        return reference_mixed_op(x, logits.detach(), candidates)

    def plain_mean(x, logits, candidates):
        return sum(op(x) for op in candidates) / len(candidates)

    with pytest.raises(grading.CheckFailed, match="no gradient"):
        grading.check_mixed_op(detached)
    with pytest.raises(grading.CheckFailed, match="eq. 1-2"):
        grading.check_mixed_op(plain_mean)
    with pytest.raises(grading.CheckFailed, match=r"conv_adds\(3, 32, 32, 3, 8\) = 221184"):
        grading.check_cost_formulas(
            costs.conv_mults, costs.conv_mults, costs.fc_mults, costs.fc_adds
        )
    no_pooling = SearchSpace(pool_after=())
    with pytest.raises(grading.CheckFailed, match="Mind the resolution"):
        grading.check_cost_table(lambda s: costs.op_cost_table(no_pooling), space)
    with pytest.raises(grading.CheckFailed, match="eq. 6"):
        grading.check_ops_loss(lambda probs, table: (probs * table).sum() / table.sum(), space)

    def sync_column_swapped(op_logits, sync_logits, ops):
        return decide(op_logits, sync_logits.flip(-1), ops)

    with pytest.raises(grading.CheckFailed, match="column 0 of sync_logits"):
        grading.check_derive(sync_column_swapped, space)
    assert grading.nas_homework("quick").space == space
    with pytest.raises(ValueError, match="unknown profile"):
        grading.nas_homework("fast")


def test_nas_sync_checks_accept_the_course_functions_and_reject_common_mistakes():
    space = SearchSpace()
    for merge, paths in (("conv", 2), ("sum", 3)):
        grading.check_sync_point(reference_sync_point, merge=merge, paths=paths)
    grading.check_sync_loss(costs.sync_loss, space)
    grading.check_total_loss(costs.total_loss)

    def columns_swapped(xs, logits, merge):  # P_direct on the merge
        return reference_sync_point(xs, logits.flip(0), merge)

    def no_softmax(xs, logits, merge):
        s = merge(xs)
        return [logits[0] * s + logits[1] * x for x in xs]

    def merge_only(xs, logits, merge):
        return [merge(xs) for _ in xs]

    for wrong, message in (
        (columns_swapped, "eq. 3"),
        (no_softmax, "eq. 3"),
        (merge_only, "eq. 3"),
    ):
        with pytest.raises(grading.CheckFailed, match=message):
            grading.check_sync_point(wrong)
    with pytest.raises(grading.CheckFailed, match="eq. 11"):  # forgot the normalization
        grading.check_sync_loss(lambda probs, table: (probs[:, 0] * table).sum(), space)
    with pytest.raises(grading.CheckFailed, match="eq. 11"):  # P_direct instead of P_sync
        grading.check_sync_loss(lambda p, t: costs.sync_loss(p.flip(-1), t), space)
    with pytest.raises(grading.CheckFailed, match="eq. 12"):  # beta on the op cost only
        grading.check_total_loss(lambda ce, o, s, a, b: a * ce + b * o + s)
    with pytest.raises(grading.CheckFailed, match="eq. 12"):  # alpha forgotten
        grading.check_total_loss(lambda ce, o, s, a, b: ce + b * (o + s))


def test_bad_submission_is_reported_clearly(tmp_path):
    folder = tmp_path / "assignments" / "submitted" / "erin" / ASSIGNMENT
    folder.mkdir(parents=True)
    (folder / f"{ASSIGNMENT}.ipynb").write_text('{"cells": [')
    (bad,) = grader.check_submissions(tmp_path, ASSIGNMENT)
    assert bad.student == "erin" and "invalid JSON" in bad.problem
    assert "resubmit" in str(bad) and "erin" in str(bad)
    assert cli.main(["grade", "check", ASSIGNMENT, "--course-dir", str(tmp_path)]) == 1


# --- the source notebook -----------------------------------------------------------------


@pytest.mark.parametrize("assignment", sorted(POINTS))
def test_source_notebook_is_a_valid_nbgrader_assignment(assignment):
    nb = nbformat.read(source_of(assignment), as_version=4)
    nbformat.validate(nb)
    cells = cells_by_id(nb)
    assert len(cells) == sum("grade_id" in nbgrader_meta(c) for c in nb.cells), "duplicate ids"
    auto = manual = 0.0
    for grade_id, cell in cells.items():
        meta = nbgrader_meta(cell)
        if meta["grade"] and not meta["solution"]:  # autograder tests: read-only, with points
            assert meta["locked"] and cell.cell_type == "code" and meta["points"] > 0, grade_id
            auto += meta["points"]
        elif meta["grade"]:  # manually graded written answers
            assert cell.cell_type == "markdown" and meta["points"] > 0, grade_id
            manual += meta["points"]
        elif meta["solution"] and cell.cell_type == "code":
            assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source
        if "BEGIN HIDDEN TESTS" in cell.source:
            assert meta["grade"] and not meta["solution"], (
                f"hidden tests outside a test cell: {grade_id}"
            )
    assert (auto, manual) == POINTS[assignment]
    assert cells["parameters"].metadata["tags"] == ["parameters"]
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    if assignment == "pruning":
        assert "load_baseline_cnn()" in code, "the assignment uses the committed baseline"
        assert "course_lib.prune" not in code and "from course_lib import prune" not in code
    else:  # what the students write must not be imported from the course's solution
        imported = "\n".join(line for line in code.splitlines() if "import" in line)
        names = ("mixed_op", "conv_mults", "conv_adds", "ops_loss", "op_cost_table", "decide")
        for name in (*names, "sync_loss", "total_loss", "SyncPoint"):
            assert name not in imported, f"{name} is imported in the assignment"


@pytest.mark.slow
@pytest.mark.parametrize("assignment", sorted(POINTS))
def test_solution_passes_every_check_under_papermill(assignment, tmp_path):
    """The same checks as the nbgrader tests, hidden ones included, on the instructor's solution."""
    if assignment == "pruning":
        require_baseline()
    source = source_of(assignment)
    papermill.execute_notebook(
        str(source),
        str(tmp_path / source.name),
        parameters={"profile": "quick", "seed": 0},
        cwd=str(tmp_path),
        progress_bar=False,
    )


# --- the nbgrader pipeline, end to end ----------------------------------------------------


def released(course: Path, assignment: str):
    """The student version nbgrader generated."""
    return nbformat.read(course / "assignments/release" / assignment / f"{assignment}.ipynb", 4)


def solved(course: Path, assignment: str):
    """The student version with the instructor's solutions filled in (markers removed)."""
    nb = released(course, assignment)
    solutions = cells_by_id(nbformat.read(source_of(assignment), as_version=4))
    for grade_id, cell in cells_by_id(nb).items():
        if nbgrader_meta(cell)["solution"]:
            cell.source = strip_solution_markers(solutions[grade_id].source)
    return nb


def make_submissions(course: Path) -> dict[str, str]:
    """Write the five students' submissions; returns erin's (invalid) text."""
    release = released(course, ASSIGNMENT)
    carol = solved(course, ASSIGNMENT)
    cells_by_id(carol)["global_magnitude_prune"].source = "while True:  # debugging\n    pass"
    dave = solved(course, ASSIGNMENT)
    for grade_id in ("test_one_shot", "test_one_shot_accuracy", "answer_unstructured"):
        dave.cells.remove(cells_by_id(dave)[grade_id])
    dave_cells = cells_by_id(dave)
    dave_cells["test_iterative"].source = "# these tests are wrong\npass"
    dave_cells["iterative_prune"].source = cells_by_id(release)["iterative_prune"].source
    nbgrader_meta(dave_cells["test_structured"])["points"] = 50
    erin = nbformat.writes(solved(course, ASSIGNMENT))[:5000]  # an upload cut short: not valid JSON
    for student, nb in {
        "alice": solved(course, ASSIGNMENT),
        "bob": release,
        "carol": carol,
        "dave": dave,
    }.items():
        write_submission(course, student, nbformat.writes(nb))
    write_submission(course, "erin", erin)
    return {"erin": erin}


def write_submission(course: Path, student: str, text: str, assignment: str = ASSIGNMENT) -> None:
    folder = course / "assignments" / "submitted" / student / assignment
    folder.mkdir(parents=True)
    (folder / f"{assignment}.ipynb").write_text(text)


def graded_course(root: Path, assignment: str, submit) -> dict:
    """Generate ``assignment`` in ``root``, ``submit(root)`` the students' notebooks, then
    `python -m course_lib.grader run` (autograde, feedback, export) once for all of them;
    its output is kept in "log"."""
    shutil.copy(REPO / "nbgrader_config.py", root)
    shutil.copytree(source_of(assignment).parent, root / "assignments" / "source" / assignment)
    assert grader.nbgrader(root, "generate_assignment", assignment) == 0
    submitted = submit(root)
    command = [sys.executable, "-m", "course_lib.grader", "run", assignment]
    command += ["--course-dir", str(root), "--csv", str(root / "grades.csv")]
    run = subprocess.run(command + ["--timeout", str(TIMEOUT_S)], capture_output=True, text=True)
    log = run.stdout + run.stderr
    (root / "grading.log").write_text(log)
    return {"root": root, "status": run.returncode, "log": log, "submitted": submitted}


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> dict:
    """The pruning assignment, graded for alice, bob, carol, dave and erin."""
    require_baseline()
    return graded_course(tmp_path_factory.mktemp("course"), ASSIGNMENT, make_submissions)


def log_tail(course: dict) -> str:
    """The end of the grading run's output, for assertion messages."""
    return "\n--- grading log (end) ---\n" + course["log"][-6000:]


def gradebook(root: Path):
    from nbgrader.api import Gradebook

    return Gradebook(f"sqlite:///{root / 'assignments' / 'gradebook.db'}")


def autograded(root: Path, student: str):
    path = root / "assignments/autograded" / student / ASSIGNMENT / SOURCE.name
    return nbformat.read(path, as_version=4)


def cell_score(root: Path, student: str, grade_id: str) -> tuple[float, float]:
    with gradebook(root) as gb:
        grade = gb.find_grade(grade_id, SOURCE.stem, ASSIGNMENT, student)
        return grade.score, grade.max_score


@pytest.mark.slow
def test_student_version_has_no_solutions_and_no_hidden_tests(course):
    release = course["root"] / "assignments/release" / ASSIGNMENT / SOURCE.name
    text = release.read_text()
    source = nbformat.read(SOURCE, as_version=4)
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    student_nb = nbformat.reads(text, as_version=4)
    shown = "\n".join(cell.source for cell in student_nb.cells)
    for line in hidden_test_lines(source):
        assert line not in shown, f"hidden test in the student version: {line}"
    solutions = cells_by_id(source)
    for grade_id, cell in cells_by_id(student_nb).items():
        if nbgrader_meta(cell)["solution"]:
            body = strip_solution_markers(solutions[grade_id].source).splitlines()
            answer_lines = [line for line in body if line.strip() and line not in cell.source]
            assert answer_lines, f"cell {grade_id} still holds the solution"
            assert "YOUR CODE HERE" in cell.source or "YOUR ANSWER HERE" in cell.source


@pytest.mark.slow
def test_solution_gets_full_points_and_untouched_version_zero(course):
    with gradebook(course["root"]) as gb:
        alice = gb.find_submission(ASSIGNMENT, "alice")
        bob = gb.find_submission(ASSIGNMENT, "bob")
        scores = (alice.code_score, alice.max_code_score)
        assert scores == (AUTO_POINTS, AUTO_POINTS), log_tail(course)
        assert bob.code_score == 0.0 and bob.max_code_score == AUTO_POINTS
        assert (course["root"] / "assignments/autograded/bob").exists(), log_tail(course)
        assert alice.needs_manual_grade, "the written answers wait for a grader"
    graded = "\n".join(c.source for c in autograded(course["root"], "alice").cells)
    hidden = hidden_test_lines(nbformat.read(SOURCE, as_version=4))
    assert all(line in graded for line in hidden), "the hidden tests ran when grading"


@pytest.mark.slow
def test_infinite_loop_is_stopped_and_the_rest_is_graded(course):
    root = course["root"]
    assert re.search(r"carol: .*timeout \(1\)", course["log"]), log_tail(course)
    looping = cells_by_id(autograded(root, "carol"))["global_magnitude_prune"]
    assert "CellTimeoutError" in [o.ename for o in looping.outputs if o.output_type == "error"]
    assert cell_score(root, "carol", "test_structured_hidden") == (2.0, 2.0)
    with gradebook(root) as gb:
        assert gb.find_submission(ASSIGNMENT, "carol").code_score == EXPECTED_AUTO_SCORE["carol"]


@pytest.mark.slow
def test_deleted_or_edited_tests_are_graded_as_in_the_source(course):
    root = course["root"]
    source = cells_by_id(nbformat.read(SOURCE, as_version=4))
    cells = cells_by_id(autograded(root, "dave"))
    for grade_id in ("test_one_shot", "test_one_shot_accuracy", "test_iterative"):
        assert source[grade_id].source in cells[grade_id].source, f"{grade_id} not restored"
    assert "answer_unstructured" in cells, "a deleted written answer is put back (empty)"
    assert cell_score(root, "dave", "test_one_shot") == (1.0, 1.0), "restored test, passing"
    assert cell_score(root, "dave", "test_one_shot_accuracy") == (1.0, 1.0)
    assert cell_score(root, "dave", "test_iterative") == (0.0, 1.0), "original test, failing"
    assert cell_score(root, "dave", "test_structured") == (1.0, 1.0), "points from the source"


@pytest.mark.slow
def test_invalid_notebook_fails_alone_with_a_clear_error(course):
    root = course["root"]
    assert course["status"] == 1, "the run reports that a submission was not graded"
    assert "student 'erin'" in course["log"] and "(invalid JSON: " in course["log"]
    (bad,) = grader.check_submissions(root, ASSIGNMENT)
    assert bad.student == "erin" and "invalid JSON" in bad.problem
    erin = root / "assignments/submitted/erin" / ASSIGNMENT / SOURCE.name
    assert erin.read_text() == course["submitted"]["erin"], "the submission is left as it was"
    assert not (root / "assignments/autograded/erin").exists()
    with gradebook(root) as gb:
        for student in GRADED:
            score = gb.find_submission(ASSIGNMENT, student).code_score
            assert score == EXPECTED_AUTO_SCORE[student], student + log_tail(course)


def visible_text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page))


@pytest.mark.slow
def test_feedback_for_every_graded_student_without_hidden_tests(course):
    hidden = hidden_test_lines(nbformat.read(SOURCE, as_version=4))
    assert hidden
    for student in GRADED:
        path = course["root"] / "assignments/feedback" / student / ASSIGNMENT / "pruning.html"
        text = visible_text(path.read_text())
        assert "grading.check_sparsity(pruned, 0.5" in text, "visible tests are shown"
        assert "HIDDEN TESTS" not in text
        for line in hidden:  # in the cells and in the tracebacks of failed tests
            assert line not in text, f"{student}'s feedback shows hidden test code: {line}"


@pytest.mark.slow
def test_csv_has_one_row_per_student_with_the_expected_scores(course):
    with open(course["root"] / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(row["student_id"] for row in rows) == sorted(EXPECTED_AUTO_SCORE)
    for row in rows:
        assert float(row["score"]) == EXPECTED_AUTO_SCORE[row["student_id"]], str(row) + log_tail(
            course
        )
        assert float(row["max_score"]) == AUTO_POINTS + MANUAL_POINTS


def integrity_flags(root: Path, assignment: str) -> dict[str, set[str]]:
    """student -> the kinds of integrity flags the run raised for them."""
    records = integrity.records(root / "assignments" / "reports", assignment)
    return {r["student"]: set(integrity.flags(r)) for r in records}


@pytest.mark.slow
def test_honest_students_are_never_flagged_and_the_loop_is_reported(course):
    flags = integrity_flags(course["root"], ASSIGNMENT)
    assert sorted(flags) == sorted(GRADED), log_tail(course)
    assert flags["carol"] == {"timeout"}, flags
    for student in ("alice", "bob", "dave"):
        assert flags[student] == set(), (student, flags[student])


# --- the NAS assignment through the same pipeline ----------------------------------------

NAS = "nas"
#: alice: the solution; bob: the student version; frank forgot the "- 1" of eq. 8, which
#: fails the counts, the cost table (built from them) and the hidden cost tests (1 + 1 + 2).
NAS_EXPECTED = {"alice": 15.0, "bob": 0.0, "frank": 11.0}


def make_nas_submissions(course: Path) -> dict:
    frank = solved(course, NAS)
    counts = cells_by_id(frank)["counts"]
    assert "(k * k * d_in - 1) * w_out" in counts.source
    counts.source = counts.source.replace("(k * k * d_in - 1) * w_out", "k * k * d_in * w_out")
    for student, nb in {"alice": solved(course, NAS), "bob": released(course, NAS)}.items():
        write_submission(course, student, nbformat.writes(nb), NAS)
    write_submission(course, "frank", nbformat.writes(frank), NAS)
    return {}


@pytest.fixture(scope="module")
def nas_course(tmp_path_factory) -> dict:
    return graded_course(tmp_path_factory.mktemp("nas_course"), NAS, make_nas_submissions)


@pytest.mark.slow
def test_nas_assignment_is_graded_with_partial_credit(nas_course):
    root = nas_course["root"]
    assert nas_course["status"] == 0, log_tail(nas_course)
    with open(root / "grades.csv", newline="") as f:
        rows = {row["student_id"]: row for row in csv.DictReader(f)}
    assert sorted(rows) == sorted(NAS_EXPECTED)
    for student, score in NAS_EXPECTED.items():
        assert float(rows[student]["score"]) == score, student + log_tail(nas_course)
        assert float(rows[student]["max_score"]) == sum(POINTS[NAS])
    with gradebook(root) as gb:
        grade = gb.find_grade("test_counts", NAS, NAS, "frank")
        assert (grade.score, grade.max_score) == (0.0, 1.0)
        assert gb.find_grade("test_derive_hidden", NAS, NAS, "frank").score == 2.0


@pytest.mark.slow
def test_nas_students_are_not_flagged(nas_course):
    flags = integrity_flags(nas_course["root"], NAS)
    assert flags == {student: set() for student in NAS_EXPECTED}, flags


@pytest.mark.slow
def test_nas_feedback_explains_the_failure_without_hidden_tests(nas_course):
    hidden = hidden_test_lines(nbformat.read(source_of(NAS), as_version=4))
    assert hidden
    path = nas_course["root"] / "assignments/feedback/frank" / NAS / f"{NAS}.html"
    text = visible_text(path.read_text())
    assert "expected 212,992 (eq. 8)" in text or "AssertionError: 221184" in text
    assert "HIDDEN TESTS" not in text
    for line in hidden:
        assert line not in text, f"frank's feedback shows hidden test code: {line}"


def test_importing_the_checks_loads_no_runner():
    # a test cell imports the checks; the sandbox, the kernels and nbgrader stay unloaded
    code = (
        "import sys, course_lib.grading\n"
        "loaded = [m for m in sys.modules if m.startswith(('course_lib.grader', 'nbgrader'))]\n"
        "print(loaded)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_cli_has_the_grade_command():
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["grade", "--help"])
    assert exit_info.value.code == 0
    assert sys.modules["course_lib.grading"] is grading

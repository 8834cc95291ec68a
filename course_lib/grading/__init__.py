"""Checks and tolerances of the graded assignments, and a thin wrapper around nbgrader.

One source of truth: the test cells of ``assignments/source/*/`` and the pytest/papermill
tests call the same functions with the same constants, so a tolerance is changed here once.

- :mod:`.checks`: :class:`CheckFailed` and the accuracy band every assignment shares;
- :mod:`.pruning`: the pruning assignment's settings and checks;
- :mod:`.nas`: the NAS assignment's settings and checks;
- :mod:`.pipeline`: check the submissions, autograde in parallel, feedback, export
  (``course grade``);
- :mod:`.sandbox`, :mod:`.kernels`, :mod:`.remote`, :mod:`.plan`, :mod:`.refereed`: student
  code in a sandbox, the tests in a separate clean kernel (nbgrader's ``Execute`` step);
- :mod:`.integrity`: the integrity report of a grading run.

Instructors: ``course grade run <assignment>`` (or ``python -m course_lib.grading run
<assignment>``) does it all; see ``book/grading.md``.
"""

from .checks import CheckFailed, check_accuracy
from .nas import (
    NAS_HOMEWORK,
    NAS_MIN_ACCURACY,
    NasHomework,
    check_cost_formulas,
    check_cost_table,
    check_derive,
    check_derived,
    check_mixed_op,
    check_ops_loss,
    nas_homework,
)
from .pipeline import (
    BadSubmission,
    add_arguments,
    check_submissions,
    course_root,
    grade,
    main,
    nbgrader,
    notebook_problem,
    run_command,
)
from .pruning import (
    MAX_DROP,
    MIN_ACCURACY,
    PRUNING_HOMEWORK,
    SPARSITY_COUNT_TOLERANCE,
    PruningHomework,
    accuracy_floor,
    check_magnitude_criterion,
    check_schedule,
    check_sparsity,
    check_steps,
    check_structured,
    expected_structured,
    layer_shapes,
    prunable_weights,
    pruned_channels,
    pruning_homework,
    sparsity,
    zero_count,
)

__all__ = [
    "MAX_DROP",
    "MIN_ACCURACY",
    "NAS_HOMEWORK",
    "NAS_MIN_ACCURACY",
    "PRUNING_HOMEWORK",
    "SPARSITY_COUNT_TOLERANCE",
    "BadSubmission",
    "CheckFailed",
    "NasHomework",
    "PruningHomework",
    "accuracy_floor",
    "add_arguments",
    "check_accuracy",
    "check_cost_formulas",
    "check_cost_table",
    "check_derive",
    "check_derived",
    "check_magnitude_criterion",
    "check_mixed_op",
    "check_ops_loss",
    "check_schedule",
    "check_sparsity",
    "check_steps",
    "check_structured",
    "check_submissions",
    "course_root",
    "expected_structured",
    "grade",
    "layer_shapes",
    "main",
    "nas_homework",
    "nbgrader",
    "notebook_problem",
    "prunable_weights",
    "pruned_channels",
    "pruning_homework",
    "run_command",
    "sparsity",
    "zero_count",
]

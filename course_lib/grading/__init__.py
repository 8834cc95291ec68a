"""Checks and tolerances of the graded assignments, and a thin wrapper around nbgrader.

One source of truth: the test cells of ``assignments/source/*/`` and the pytest/papermill
tests call the same functions with the same constants, so a tolerance is changed here once.

- :mod:`.checks`: :class:`CheckFailed` and the accuracy band every assignment shares;
- :mod:`.pruning`: the pruning assignment's settings and checks;
- :mod:`.nas`: the NAS assignment's settings and checks;
- :mod:`.taylor`: the Taylor-pruning assignment's settings and checks;
- :mod:`.bnn`: the binary-network assignment's settings, checks and training;
- :mod:`.pipeline`: check the submissions, autograde in parallel, feedback, export
  (``course grade``);
- :mod:`.sandbox`, :mod:`.kernels`, :mod:`.remote`, :mod:`.plan`, :mod:`.refereed`: student
  code in a sandbox, the tests in a separate clean kernel (nbgrader's ``Execute`` step);
- :mod:`.integrity`: the integrity report of a grading run.

Instructors: ``course grade run <assignment>`` (or ``python -m course_lib.grading run
<assignment>``) does it all; see ``book/grading.md``.
"""

from .bnn import (
    BNN_HOMEWORK,
    BNN_MIN_ACCURACY,
    BnnHomework,
    bnn_homework,
    check_alpha,
    check_binary_dot,
    check_packing,
    check_quantization_error,
    check_recu,
    check_sign_ste,
    train_homework_network,
)
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
    check_sync_loss,
    check_sync_point,
    check_total_loss,
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
    check_sparse_training,
    check_sparsity,
    check_steps,
    check_structured,
    expected_structured,
    fine_tune,
    layer_shapes,
    prunable_weights,
    pruned_channels,
    pruning_homework,
    regularizes,
    sgd_finetune,
    sparsity,
    zero_count,
)
from .taylor import (
    TAYLOR_HOMEWORK,
    TAYLOR_MIN_ACCURACY,
    TaylorHomework,
    check_normalization,
    check_prune_round,
    check_taylor_criterion,
    fixed_batches,
    homework_network,
    other_network,
    taylor_homework,
)

__all__ = [
    "BNN_HOMEWORK",
    "BNN_MIN_ACCURACY",
    "BnnHomework",
    "bnn_homework",
    "check_alpha",
    "check_binary_dot",
    "check_packing",
    "check_quantization_error",
    "check_recu",
    "check_sign_ste",
    "train_homework_network",
    "MAX_DROP",
    "MIN_ACCURACY",
    "NAS_HOMEWORK",
    "NAS_MIN_ACCURACY",
    "PRUNING_HOMEWORK",
    "SPARSITY_COUNT_TOLERANCE",
    "TAYLOR_HOMEWORK",
    "TAYLOR_MIN_ACCURACY",
    "BadSubmission",
    "CheckFailed",
    "NasHomework",
    "PruningHomework",
    "TaylorHomework",
    "accuracy_floor",
    "add_arguments",
    "check_accuracy",
    "check_cost_formulas",
    "check_cost_table",
    "check_derive",
    "check_derived",
    "check_magnitude_criterion",
    "check_mixed_op",
    "check_normalization",
    "check_ops_loss",
    "check_sync_loss",
    "check_sync_point",
    "check_total_loss",
    "check_schedule",
    "check_sparse_training",
    "check_sparsity",
    "check_prune_round",
    "check_steps",
    "check_structured",
    "check_submissions",
    "check_taylor_criterion",
    "course_root",
    "expected_structured",
    "fine_tune",
    "fixed_batches",
    "grade",
    "homework_network",
    "layer_shapes",
    "main",
    "nas_homework",
    "nbgrader",
    "notebook_problem",
    "other_network",
    "prunable_weights",
    "pruned_channels",
    "pruning_homework",
    "regularizes",
    "run_command",
    "sgd_finetune",
    "sparsity",
    "taylor_homework",
    "zero_count",
]

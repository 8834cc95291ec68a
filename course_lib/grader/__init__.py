"""The runner that grades submissions (``course grade``); the checks it runs are in
:mod:`course_lib.grading`, which never imports this package.

- :mod:`.pipeline`: check the submissions, autograde in parallel, feedback, export
  (``course grade run <assignment>``, or ``python -m course_lib.grader run <assignment>``);
- :mod:`.refereed`: nbgrader's ``Execute`` step replaced: student code in a sandboxed
  kernel, the tests in a separate clean kernel;
- :mod:`.sandbox` (bubblewrap, cgroups, rlimits), :mod:`.kernels` (a sandboxed kernel with
  bounded outputs), :mod:`.remote` (what travels between the two kernels), :mod:`.plan`
  (which kernel runs which cell);
- :mod:`.integrity`: the integrity report of a grading run;
- :mod:`.nbgrader_plugins`: the two nbgrader preprocessors ``nbgrader_config.py`` plugs in.

Instructors: see ``book/grading.md``.
"""

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

__all__ = [
    "BadSubmission",
    "add_arguments",
    "check_submissions",
    "course_root",
    "grade",
    "main",
    "nbgrader",
    "notebook_problem",
    "run_command",
]

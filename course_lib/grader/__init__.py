"""The runner that grades submissions (``course grade``); the checks it runs are in
:mod:`course_lib.grading`, which never imports this package.

- :mod:`.pipeline`: check the submissions, autograde in parallel, feedback, export
  (``course grade run <assignment>``, or ``python -m course_lib.grader run <assignment>``);
- :mod:`.refereed`: nbgrader's ``Execute`` step replaced: student code in a sandboxed
  kernel, the tests in a separate clean kernel; its parts: :mod:`.kernel_pair` (the two
  kernels of a submission), :mod:`.passes` (the passes over the cells), :mod:`.restarts`,
  :mod:`.cell_outputs` (what the grader writes into the notebook), :mod:`.record`;
- :mod:`.sandbox` (bubblewrap, cgroups, rlimits), :mod:`.kernels` (a sandboxed kernel with
  bounded outputs), :mod:`.plan` (which kernel runs which cell);
- the link between the two kernels: :mod:`.agent` (each kernel's end, and the entry points
  the grader runs there by the name :mod:`.remote`), :mod:`.codec` (what travels, and
  how), :mod:`.session` (one connection), :mod:`.proxy` (the other kernel's objects and
  errors), :mod:`.audit` (what the student's kernel tries outside its sandbox);
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

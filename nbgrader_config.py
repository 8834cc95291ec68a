"""nbgrader configuration of the course (run nbgrader from this folder; see book/grading.md).

The course directory is ``assignments/`` next to this file: ``source/`` (instructor
notebooks with solutions and hidden tests, committed), and, never committed because they
hold student work and grades, ``release/``, ``submitted/``, ``autograded/``, ``feedback/``
and ``gradebook.db``. A copy of this file beside another ``assignments/`` folder (as the
tests make in a temporary folder) configures that one.
"""

import os

from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import (
    AssignLatePenalties,
    CheckCellMetadata,
    ClearHiddenTests,
    ClearOutput,
    DeduplicateIds,
    GetGrades,
    IgnorePattern,
    LimitOutput,
    OverwriteKernelspec,
    SaveAutoGrades,
)

from course_lib.grader.nbgrader_plugins import HideTestFrames, RestoreDeletedCells
from course_lib.grader.refereed import RefereedExecute

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)

HERE = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.root = os.path.join(HERE, "assignments")
c.CourseDirectory.course_id = "efficient-dl-embedded"

# --- autograding ---------------------------------------------------------------------------
# Every cell gets at most this many seconds (the quick profile needs under 30 s per cell on a
# laptop); then the kernel is interrupted (killed if it does not stop), the cell scores 0,
# and the notebook goes on.
c.Execute.timeout = 300
# Student code runs in a sandbox (course_lib/grader/sandbox.py: no access to the course
# directory, no network, bounded memory, processes, CPU time and output) and the tests run
# in a separate clean kernel that student code cannot reach (course_lib/grader/refereed.py).
# `course grade run` prints which protections this machine provides.
c.RefereedExecute.memory_limit = "4G"  # per kernel (two per submission)
# A student kernel that dies is restarted and grading goes on; a cell that stopped it scores
# nothing and is not re-run. Restarts are bounded by time, so a death costs only its cells.
c.RefereedExecute.restart_budget_s = 900  # restarts and re-runs of earlier cells, per submission
c.RefereedExecute.max_output_bytes = 100_000  # kept of one output; the rest becomes a note
c.RefereedExecute.max_notebook_output_bytes = 4_000_000
c.Autograde.autograde_preprocessors = [
    RefereedExecute,
    IgnorePattern,
    ClearMetadataPreprocessor,
    LimitOutput,
    SaveAutoGrades,
    AssignLatePenalties,
    CheckCellMetadata,
]
# Before running: outputs cleared, read-only cells (tests, setup) a student edited and
# points changed in the metadata restored from the source, and grade cells a student deleted
# put back (RestoreDeletedCells is nbgrader's OverwriteCells with add_missing_cells, fixed
# for deleted cells that follow a read-only cell; see course_lib/grader/nbgrader_plugins.py).
c.Autograde.sanitize_preprocessors = [
    ClearOutput,
    DeduplicateIds,
    OverwriteKernelspec,
    RestoreDeletedCells,
    CheckCellMetadata,
]
# A runaway print loop must not make a huge feedback page (bytes are bounded above).
c.LimitOutput.max_lines = 200
c.LimitOutput.max_traceback = 60


# --- feedback ------------------------------------------------------------------------------
# Students see their own notebook, the score of every test cell and the error each failing
# test raised, never the source of hidden tests.
c.GenerateFeedback.preprocessors = [
    GetGrades,
    ClearHiddenTests,
    HideTestFrames,
    CSSHTMLHeaderPreprocessor,
]

# --- exchange (JupyterHub); courses that hand out files by other means do not need it -------
c.Exchange.root = os.environ.get("NBGRADER_EXCHANGE", "/srv/nbgrader/exchange")

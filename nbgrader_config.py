"""nbgrader configuration of the course (run nbgrader from this folder; see book/grading.md).

The course directory is ``assignments/`` next to this file: ``source/`` (instructor
notebooks with solutions and hidden tests, committed), and, never committed because they
hold student work and grades, ``release/``, ``submitted/``, ``autograded/``, ``feedback/``
and ``gradebook.db``. A copy of this file beside another ``assignments/`` folder (as the
tests make in a temporary folder) configures that one.
"""

import os

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import (
    CheckCellMetadata,
    ClearHiddenTests,
    ClearOutput,
    DeduplicateIds,
    GetGrades,
    OverwriteKernelspec,
)

from course_lib.nbgrader_plugins import HideTestFrames, RestoreDeletedCells

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)

HERE = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.root = os.path.join(HERE, "assignments")
c.CourseDirectory.course_id = "efficient-dl-embedded"

# --- autograding ---------------------------------------------------------------------------
# Every cell gets at most this many seconds (the quick profile needs under 30 s per cell on a
# laptop); then the kernel is interrupted, the cell scores 0, and the notebook goes on.
c.Execute.timeout = 300
c.Execute.interrupt_on_timeout = True
# After a cell's reply, nbgrader waits this long for its last outputs and otherwise fails the
# whole submission (raise_on_iopub_timeout); nbclient's 4 s is short for a loaded machine.
c.Execute.iopub_timeout = 30
# Before running: outputs cleared, read-only cells (tests, setup) a student edited and
# points changed in the metadata restored from the source, and grade cells a student deleted
# put back (RestoreDeletedCells is nbgrader's OverwriteCells with add_missing_cells, fixed
# for deleted cells that follow a read-only cell; see course_lib/nbgrader_plugins.py).
c.Autograde.sanitize_preprocessors = [
    ClearOutput,
    DeduplicateIds,
    OverwriteKernelspec,
    RestoreDeletedCells,
    CheckCellMetadata,
]
# A runaway print loop must not make a huge feedback page.
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

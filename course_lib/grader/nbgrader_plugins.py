"""Two nbgrader preprocessors the course's ``nbgrader_config.py`` plugs in (nbgrader 0.9).

- :class:`RestoreDeletedCells`: ``OverwriteCells`` that puts back *every* grade cell a
  student deleted. nbgrader's own ``add_missing_cells`` raises ``KeyError`` (and the whole
  submission goes ungraded) when the deleted cell follows a read-only cell in the source,
  because it only looks for grade and solution cells as anchors; here any cell of the
  source that is still in the notebook is an anchor.
- :class:`HideTestFrames`: for feedback. IPython tracebacks print the source lines around
  the failing one, which in a test cell may be hidden tests; the frames of the test cell
  itself become a one-line note, the student's own frames and the error message stay.

Part of the runner (:mod:`course_lib.grader`), apart from the checks
(:mod:`course_lib.grading`), so that notebooks importing the checks do not import nbgrader.
"""

from __future__ import annotations

import re

from nbconvert.exporters.exporter import ResourcesDict
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor, OverwriteCells
from nbgrader.utils import is_grade, is_solution
from traitlets import Bool

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def _grade_id(cell: NotebookNode) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


class RestoreDeletedCells(OverwriteCells):
    """``OverwriteCells`` whose restoring of deleted grade cells never fails (see module)."""

    add_missing_cells = Bool(True, help="Put deleted grade cells back.").tag(config=True)

    def add_missing_grade_cells(
        self, nb: NotebookNode, resources: ResourcesDict
    ) -> tuple[NotebookNode, ResourcesDict]:
        source_nb = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
        source_cells = list(source_nb.source_cells)
        order = [cell.name for cell in source_cells]
        solutions = {cell.name for cell in source_nb.solution_cells}
        for grade_cell in source_nb.grade_cells:
            present = [_grade_id(cell) for cell in nb.cells]
            if grade_cell.name in present:
                continue
            self.log.warning("Grade cell %s was deleted: restoring it", grade_cell.name)
            index = order.index(grade_cell.name)
            restored = self.missing_cell_transform(
                source_cells[index], grade_cell.max_score, grade_cell.name in solutions
            )
            if nb.nbformat_minor >= 5:  # cell ids exist from nbformat 4.5 on
                restored["id"] = "restored-" + re.sub(r"[^A-Za-z0-9_-]", "-", grade_cell.name)[:55]
            anchors = [name for name in order[:index] if name in present]
            position = present.index(anchors[-1]) + 1 if anchors else 0
            nb.cells.insert(position, restored)
        return nb, resources


class HideTestFrames(NbGraderPreprocessor):
    """Replace the traceback frames of autograder test cells by a note (see module)."""

    def preprocess_cell(
        self, cell: NotebookNode, resources: ResourcesDict, index: int
    ) -> tuple[NotebookNode, ResourcesDict]:
        if cell.cell_type != "code" or not is_grade(cell) or is_solution(cell):
            return cell, resources
        marker = f"Cell In[{cell.execution_count}]"
        for output in cell.outputs:
            if output.output_type == "error":
                output.traceback = [
                    f"{marker}: (test code hidden)"
                    if marker in ANSI_ESCAPE.sub("", frame)
                    else frame
                    for frame in output.traceback
                ]
        return cell, resources

"""What happened while one submission was graded (see :mod:`.refereed`): events (tampering,
outside access attempts, kernel deaths, timeouts, truncated output), where the time went,
and each test's score in both kernels. :class:`~.refereed.RefereedExecute` writes it as
the submission's integrity record; :mod:`.integrity` gathers the records of a run.
"""

from __future__ import annotations

import time
from logging import Logger

from nbformat import NotebookNode
from nbgrader.utils import determine_grade

from .cell_outputs import verdict_note
from .kernels import Reply
from .plan import CellPlan, Plan

PROGRAM_EVENTS = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn")
#: Errors of a test in the grader's kernel that say a value could not cross the link.
UNVERIFIABLE_ERRORS = ("KernelUnavailable", "TransferError")


class GradingRecord:
    """The record of one submission, filled in while it is graded."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.timings: dict[str, float] = {}
        self.failures: dict[int, Reply] = {}  # cells that failed in the grader's kernel
        self.student_scores: dict[int, float] = {}  # tests re-run in the student's kernel
        self._last_lap = time.monotonic()

    def lap(self, what: str) -> None:
        """Seconds since the previous lap (kept in the record: where the time goes)."""
        now = time.monotonic()
        self.timings[what] = round(now - self._last_lap, 1)
        self._last_lap = now

    def event(self, kind: str, cell: CellPlan | None, detail: str) -> None:
        name = None if cell is None else (cell.grade_id or f"cell {cell.index}")
        self.events.append({"kind": kind, "cell": name, "detail": detail[:500]})

    def tests(self, nb: NotebookNode, plan: Plan, log: Logger) -> dict:
        """Each test's points and scores; a test that passed only in the student's kernel is
        flagged (an event, and a note under the cell)."""
        tests = {}
        for cell in plan.cells:
            if not cell.test:
                continue
            node = nb.cells[cell.index]
            score, _ = determine_grade(node, log)
            student = self.student_scores.get(cell.index)
            tests[cell.grade_id] = {
                "points": cell.points,
                "score": score,
                "student_kernel": student,
            }
            if student is not None and score is not None and student > score:
                self._flag(cell, node)
        return tests

    def _flag(self, cell: CellPlan, node: NotebookNode) -> None:
        failure = self.failures.get(cell.index)
        unverifiable = failure is not None and failure.ename in UNVERIFIABLE_ERRORS
        kind = "unverifiable" if unverifiable else "tampering"
        detail = (
            "passed in the student's kernel but failed in the grader's clean kernel"
            if kind == "tampering"
            else f"could not be checked: {failure.ename if failure else ''}"
        )
        self.event(kind, cell, detail)
        verdict_note(node, kind)

    def audit(self, items: list[dict]) -> None:
        """What the student's kernel tried outside its sandbox (its audit hook's lines)."""
        for item in items:
            kind = "outside-access" if _is_access(item) else "program"
            detail = f"{item.get('event')}: {item.get('detail')}"[:500]
            self.events.append({"kind": kind, "cell": None, "detail": detail})


def _is_access(item: dict) -> bool:
    """A file or network access (as opposed to starting a program)."""
    return str(item.get("event", "")) not in PROGRAM_EVENTS

"""nbgrader's ``Execute`` step, replaced: a submission runs in two sandboxed kernels and the
tests run where the student's code cannot reach them.

- the **referee** kernel runs the instructor's cells (setup, runs, tests; see
  :mod:`.plan`) and never any student code: rebinding or patching the checks, the grading
  module, builtins or ``sys.modules`` in the student's kernel changes nothing there;
- the **student** kernel runs the student's cells, and answers the referee's calls to the
  student's functions (:mod:`.agent`);
- afterwards the student kernel re-runs the tests for itself; a test that passes there but
  failed in the referee is reported as **tampering** (or as *unverifiable* when a value
  could not be sent between the kernels). Its outputs are thrown away, so nothing the
  student's code learns from the hidden tests reaches the feedback.

A student kernel that dies is restarted, its state rebuilt by re-running the preamble and
the student's cells before the crash, and grading goes on; the crashed cell says what
happened (and, when the kernel died in a call from a test, which function was running). A
death costs only the cells that die: a cell that stopped the kernel is not re-run, and
restarts are bounded by the time they take (``restart_budget_s`` per submission), not by a
count, so one function that runs out of memory each time it is called does not take the
points of the others. Every output is bounded while it arrives. What
happened to each submission (tampering, outside access attempts, kernel deaths, timeouts,
truncated output) is written to an integrity record, which ``course grade run`` gathers
into the run's report (:mod:`.integrity`).

The parts: the two kernels and their sandboxes (:mod:`.kernel_pair`), the passes over the
cells (:mod:`.passes`), restarts (:mod:`.restarts`), the outputs the grader writes into the
notebook (:mod:`.cell_outputs`) and the record (:mod:`.record`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import nbformat
from jupyter_core.utils import run_sync
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Bool, Float, Integer, Unicode

from .integrity import RECORD_SUFFIX
from .kernel_pair import KernelPair, PairSettings
from .kernels import OutputBudget
from .passes import CellPass, StudentCheck, Submission
from .plan import Plan, make_plan
from .record import GradingRecord
from .restarts import StudentRestarts
from .sandbox import Limits, Protections, detect, parse_bytes


class RefereedExecute(Execute):
    """Execute a submission in a sandboxed student kernel with the tests in a clean
    referee kernel (see the module docstring). Configure it as ``Execute`` (timeout) and
    as ``RefereedExecute`` (the rest)."""

    memory_limit = Unicode("4G", help="Memory of each kernel (e.g. 4G).").tag(config=True)
    restart_budget_s = Float(
        900.0,
        help="Seconds that restarting a student kernel and re-running its earlier cells may "
        "take in all, per submission (each cell that stops the kernel is restarted from once).",
    ).tag(config=True)
    max_restarts = Integer(
        0, help="Most restarts of a student kernel per submission (0: bounded by time only)."
    ).tag(config=True)
    max_output_bytes = Integer(100_000, help="Bytes kept of one output.").tag(config=True)
    max_cell_output_bytes = Integer(300_000, help="Bytes kept of one cell.").tag(config=True)
    max_notebook_output_bytes = Integer(4_000_000, help="Bytes kept in total.").tag(config=True)
    threads = Integer(0, help="Threads per kernel (0: $COURSE_GRADING_THREADS or all).").tag(
        config=True
    )
    require_sandbox = Bool(False, help="Refuse to grade without bubblewrap.").tag(config=True)
    student_check = Bool(True, help="Re-run the tests in the student kernel.").tag(config=True)
    work_dir = Unicode("", help="Folder for the kernels' scratch folders.").tag(config=True)
    record_dir = Unicode("", help="Where integrity records go (default: reports/).").tag(
        config=True
    )
    replay_dir = Unicode("", help="Take the outputs of an earlier run from here.").tag(config=True)
    watched = Unicode("", help="More folders whose access is reported (os.pathsep-separated).").tag(
        config=True
    )

    def preprocess(self, nb: NotebookNode, resources: Any) -> tuple[NotebookNode, Any]:
        info = resources["nbgrader"]
        if self.replay_dir:
            return self._replay(nb, resources, info)
        protections = detect()
        if self.require_sandbox and not protections.namespaces:
            raise RuntimeError(
                "no sandbox for student code on this machine: " + " ".join(protections.warnings())
            )
        plan = self._plan(nb, info)
        limits = Limits(memory_bytes=parse_bytes(self.memory_limit))
        run = Grading(self, nb, plan, resources, protections, limits)
        record = run_sync(run.grade)()
        self._write_record(info, record)
        return nb, resources

    # --- the parts --------------------------------------------------------------------

    def _plan(self, nb: NotebookNode, info: dict) -> Plan:
        from nbgrader.api import Gradebook

        with Gradebook(info["db_url"], info.get("course_id", "")) as gb:
            source = gb.find_notebook(info["notebook"], info["assignment"])
            trusted = {c.name: c.source for c in source.source_cells if c.cell_type == "code"}
            solutions = {c.name for c in source.solution_cells}
            points = {
                c.name: float(c.max_score)
                for c in source.grade_cells
                if c.cell_type == "code" and c.name not in solutions
            }
        return make_plan(nb, trusted, points, solutions)

    def course_root(self) -> Path:
        from nbgrader.coursedir import CourseDirectory

        return Path(CourseDirectory(config=self.config).root).resolve()

    def source_folder(self, assignment: str) -> Path:
        from nbgrader.coursedir import CourseDirectory

        coursedir = CourseDirectory(config=self.config)
        return Path(coursedir.format_path(coursedir.source_directory, ".", assignment))

    def record_path(self, info: dict) -> Path:
        root = Path(self.record_dir) if self.record_dir else self.course_root() / "reports"
        folder = root / info["assignment"] / info["student"]
        return folder / f"{info['notebook']}{RECORD_SUFFIX}"

    def _write_record(self, info: dict, record: dict) -> None:
        path = self.record_path(info)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1))

    def _replay(self, nb: NotebookNode, resources: Any, info: dict) -> tuple[NotebookNode, Any]:
        """Take the outputs of a run made elsewhere (a parallel worker) for this very
        notebook; refuse if the cells differ."""
        folder = Path(self.replay_dir) / info["student"]
        executed_path = folder / f"{info['notebook']}.ipynb"
        if not executed_path.exists():
            raise RuntimeError(f"no graded run of {info['student']}'s notebook in {folder}")
        executed = nbformat.read(executed_path, as_version=4)
        if [c.source for c in executed.cells] != [c.source for c in nb.cells]:
            raise RuntimeError(f"the graded run of {info['student']} is of another notebook")
        for cell, done in zip(nb.cells, executed.cells, strict=True):
            if cell.cell_type == "code":
                cell.outputs = done.outputs
                cell.execution_count = done.execution_count
        if executed.metadata.get("language_info"):
            nb.metadata["language_info"] = executed.metadata["language_info"]
        record = folder / f"{info['notebook']}{RECORD_SUFFIX}"
        if record.exists():
            self._write_record(info, json.loads(record.read_text()))
        return nb, resources


class Grading:
    """One submission graded by a :class:`RefereedExecute` (see the module docstring): its
    two kernels, the two passes over its cells, and its record."""

    def __init__(
        self,
        owner: RefereedExecute,
        nb: NotebookNode,
        plan: Plan,
        resources: Any,
        protections: Protections,
        limits: Limits,
    ) -> None:
        self.owner = owner
        self.log = owner.log
        self.nb = nb
        self.plan = plan
        self.info = resources["nbgrader"]
        self.folder = Path(resources.get("metadata", {}).get("path") or ".")
        self.protections = protections
        self.limits = limits
        self.timeout = owner._get_timeout(None)
        self.budget = OutputBudget(
            owner.max_output_bytes, owner.max_cell_output_bytes, owner.max_notebook_output_bytes
        )
        self.record = GradingRecord()

    def _settings(self) -> PairSettings:
        owner = self.owner
        threads = owner.threads or int(os.environ.get("COURSE_GRADING_THREADS", 0) or 0)
        return PairSettings(
            course_root=owner.course_root(),
            assignment=self.info["assignment"],
            source=owner.source_folder(self.info["assignment"]),
            submission=self.folder,
            work_dir=owner.work_dir,
            threads=threads or os.cpu_count() or 1,
            watched=[w for w in owner.watched.split(os.pathsep) if w],
            protections=self.protections,
            limits=self.limits,
        )

    async def grade(self) -> dict:
        started = time.monotonic()
        owner, record = self.owner, self.record
        pair = KernelPair(self._settings(), self.log, self.budget)
        restarts = StudentRestarts(
            pair,
            self.plan,
            record,
            self.timeout,
            owner.max_restarts,
            owner.restart_budget_s,
            self.log,
        )
        work = Submission(self.nb, self.plan, pair, restarts, record, self.timeout)
        try:
            await pair.start()
            record.lap("kernels started")
            await pair.start_agents()
            record.lap("agents started")
            await CellPass(work, self.budget, owner.student_check).run()
            record.lap("cells run")
            if owner.student_check:
                await StudentCheck(work).run()
                record.lap("tests re-run in the student kernel")
        finally:
            await pair.close()
        return self._record(pair, restarts, time.monotonic() - started)

    def _record(self, pair: KernelPair, restarts: StudentRestarts, wall_s: float) -> dict:
        tests = self.record.tests(self.nb, self.plan, self.log)
        self.record.audit(pair.student.audit)
        return {
            "student": self.info["student"],
            "assignment": self.info["assignment"],
            "notebook": self.info["notebook"],
            "protections": self.protections.describe(self.limits, self.timeout),
            "warnings": self.protections.warnings(),
            "events": self.record.events,
            "tests": tests,
            "restarts": restarts.count,
            "restart_s": round(restarts.seconds, 1),
            "wall_s": round(wall_s, 1),
            "timings_s": self.record.timings,
        }

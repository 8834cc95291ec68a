"""nbgrader's ``Execute`` step, replaced: a submission runs in two sandboxed kernels and the
tests run where the student's code cannot reach them.

- the **referee** kernel runs the instructor's cells (setup, runs, tests; see
  :mod:`.plan`) and never any student code: rebinding or patching the checks, the grading
  module, builtins or ``sys.modules`` in the student's kernel changes nothing there;
- the **student** kernel runs the student's cells, and answers the referee's calls to the
  student's functions (:mod:`.remote`);
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
into the run's report (:mod:`.report`).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
from jupyter_core.utils import run_sync
from nbformat import NotebookNode
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute
from nbgrader.utils import determine_grade
from traitlets import Bool, Float, Integer, Unicode

from .integrity import RECORD_SUFFIX
from .kernels import KernelRunner, OutputBudget, Reply
from .plan import CellPlan, Plan, make_plan
from .remote import REFEREE, STUDENT, function_stopped_in
from .sandbox import Limits, Sandbox, detect, kernel_uid, parse_bytes, python_environment

AGENT = "__import__('course_lib.grader.remote', fromlist=['remote'])"
#: Seconds the agent's own steps may take (connecting, sending names).
AGENT_TIMEOUT_S = 300
#: What the student kernel may read, besides the Python environment (reported by its
#: audit hook when it tries anything else).
SYSTEM_FOLDERS = ["/usr", "/etc", "/lib", "/lib64", "/bin", "/sbin"]


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
    """One submission graded by a :class:`RefereedExecute` (see the module docstring)."""

    def __init__(self, owner: RefereedExecute, nb, plan: Plan, resources, protections, limits):
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
        self.events: list[dict] = []
        self.restarts = 0
        self.restart_s = 0.0  # time spent restarting the student kernel and re-running cells
        self.fatal: set[int] = set()  # student cells that killed or hung their kernel
        self.stopped: set[int] = set()  # cells (any) during which the student kernel died
        self.failures: dict[int, Reply] = {}
        self.student_scores: dict[int, float] = {}
        self.student_gone: str | None = None
        self.referee_gone: str | None = None
        self.position = 0
        self.timings: dict[str, float] = {}
        self._last_lap = time.monotonic()

    def _lap(self, what: str) -> None:
        """Seconds since the previous lap (kept in the record: where the time goes)."""
        now = time.monotonic()
        self.timings[what] = round(now - self._last_lap, 1)
        self._last_lap = now

    def event(self, kind: str, cell: CellPlan | None, detail: str) -> None:
        name = None if cell is None else (cell.grade_id or f"cell {cell.index}")
        self.events.append({"kind": kind, "cell": name, "detail": detail[:500]})

    # --- setting up ---------------------------------------------------------------------

    def _readable(self) -> list[Path]:
        from .. import paths
        from ..data import data_dir

        course = self.owner.course_root()
        forbidden = {course, paths.REPO_ROOT}
        environment = [
            p for p in python_environment() if not any(f.is_relative_to(p) for f in forbidden)
        ]
        course_lib = Path(__file__).resolve().parents[1]
        return [*environment, course_lib, paths.CHECKPOINT_DIR, paths.RESULTS_DIR, data_dir()]

    def _sandbox(self, session: Path, role: str, slot: int) -> Sandbox:
        from ..data import DATA_DIR_ENV, data_dir

        threads = self.owner.threads or int(os.environ.get("COURSE_GRADING_THREADS", 0) or 0)
        threads = threads or os.cpu_count() or 1
        env = {
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
            # resolved, like the folder bound into the sandbox: a data folder reached
            # through a symbolic link under /tmp would not exist in its private /tmp
            DATA_DIR_ENV: str(data_dir().resolve()),
            "NBGRADER_EXECUTION": "autograde",
            "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads),
            "OPENBLAS_NUM_THREADS": str(threads),
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        }
        uid = kernel_uid(slot) if self.protections.own_user else None
        return Sandbox(
            work=session / f"{role}-work",
            tmp=session / f"{role}-tmp",
            readable=self._readable(),
            shared=[session / "channel"],
            hidden=[self.owner.course_root()],
            env=env,
            limits=self.limits,
            uid=uid,
            name=self.info["assignment"],
            protections=self.protections,
        )

    def _fill(self, box: Sandbox, source: Path) -> None:
        """Copy the regular files of ``source`` (never notebooks: the autograded copy holds
        the hidden tests) into the kernel's working folder."""
        for path in sorted(source.rglob("*")) if source.is_dir() else []:
            if path.is_symlink() or not path.is_file() or path.suffix == ".ipynb":
                continue
            target = box.work / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            for made in [target, *target.relative_to(box.work).parents]:
                box.give(box.work / made)

    async def _start_agents(self) -> None:
        address = str(self.channel / "referee.sock")
        await asyncio.gather(
            self._agent(self.referee, f"start({REFEREE!r}, {address!r})"),
            self._agent(self.student, self._student_start(address)),
        )

    def _student_start(self, address: str) -> str:
        from .. import paths

        allowed = [str(p) for p in self._readable()] + SYSTEM_FOLDERS
        watched = [w for w in self.owner.watched.split(os.pathsep) if w]
        forbidden = [str(self.owner.course_root()), str(paths.REPO_ROOT), *watched]
        scratch = "/tmp" if self.protections.namespaces else str(self.student.sandbox.tmp)
        return (
            f"start({STUDENT!r}, {address!r}, allowed={allowed!r}, forbidden={forbidden!r}, "
            f"scratch={scratch!r})"
        )

    async def _agent(self, runner: KernelRunner, call: str, timeout: float = AGENT_TIMEOUT_S):
        reply = await runner.run(f"{AGENT}.{call}", silent=True, timeout=timeout)
        if not reply.ok and reply.status != "timeout":
            self.log.warning(
                "%s kernel: %s failed: %s %s", runner.role, call[:40], reply.ename, reply.evalue
            )
        return reply

    # --- the run --------------------------------------------------------------------------

    async def grade(self) -> dict:
        started = time.monotonic()
        base = Path(
            self.owner.work_dir or ("/tmp" if Path("/tmp").is_dir() else tempfile.gettempdir())
        )
        session = Path(tempfile.mkdtemp(prefix="course-grading-", dir=base))
        os.chmod(session, 0o711)
        self.channel = session / "channel"
        referee_box = self._sandbox(session, "referee", 1)
        student_box = self._sandbox(session, "student", 0)
        self.channel.mkdir()
        if referee_box.uid is not None:
            os.chown(self.channel, referee_box.uid, referee_box.uid)
        self.referee = KernelRunner(
            "referee", referee_box, session / "referee-run", self.log, self.budget
        )
        self.student = KernelRunner(
            "student", student_box, session / "student-run", self.log, self.budget
        )
        try:
            referee_box.prepare(f"course-grading-{session.name}-r")
            student_box.prepare(f"course-grading-{session.name}-s")
            self._fill(referee_box, self.owner.source_folder(self.info["assignment"]))
            self._fill(student_box, self.folder)
            await asyncio.gather(self.referee.start(), self.student.start())
            self._lap("kernels started")
            await self._start_agents()
            self._lap("agents started")
            await self._run_cells()
            self._lap("cells run")
            if self.owner.student_check:
                await self._student_pass()
                self._lap("tests re-run in the student kernel")
        finally:
            await asyncio.gather(self.referee.shutdown(), self.student.shutdown())
            shutil.rmtree(session, ignore_errors=True)
        return self._record(time.monotonic() - started)

    async def _run_cells(self) -> None:
        armed = False
        for cell in self.plan.cells:
            node = self.nb.cells[cell.index]
            node.outputs = []
            self.position = cell.index
            if not cell.preamble and not armed:
                await self._agent(self.student, "arm()")
                armed = True
            if cell.preamble:
                await self._preamble(cell, node)
            elif cell.trusted:
                await self._referee_cell(cell, node)
            else:
                await self._student_cell(cell, node)
            self.plan.ran(cell)
            note = self.budget.note(cell.index)
            if note is not None:
                node.outputs.append(note)
                self.event(
                    "output-truncated", cell, f"{self.budget.dropped[cell.index]:,} bytes cut"
                )

    async def _preamble(self, cell: CellPlan, node: NotebookNode) -> None:
        referee, student = await asyncio.gather(
            self.referee.run(cell.code, node.outputs, cell.index, self.timeout),
            self.student.run(cell.code, None, cell.index, self.timeout),
        )
        node.execution_count = referee.execution_count
        self._referee_ended(cell, node, referee)
        if not student.ok:
            self.event("student-setup-failed", cell, f"{student.ename}: {student.evalue}")
            if student.status in ("died", "timeout"):
                await self._student_died(cell, student, node=None)

    async def _referee_cell(self, cell: CellPlan, node: NotebookNode) -> None:
        if self.referee_gone:
            self._not_run(node, f"the grader's kernel stopped earlier ({self.referee_gone})")
            return
        fetch, shadowed = self.plan.for_referee(cell)
        for name, by in shadowed:
            by_cell = self.plan.cells_by_index[by]
            self.event(
                "rebinds", cell, f"{name!r} rebound by {by_cell.grade_id or f'cell {by}'}; ignored"
            )
        serving = None
        if await self._student_ready():
            serving = asyncio.ensure_future(
                self.student.run(f"{AGENT}.serve()", node.outputs, cell.index, keep_errors=False)
            )
            fetching = asyncio.ensure_future(self._agent(self.referee, f"fetch({fetch!r})"))
            done, _ = await asyncio.wait({serving, fetching}, return_when=asyncio.FIRST_COMPLETED)
            if fetching not in done:  # the student's kernel stopped serving before it began
                await self.referee.interrupt()
                await fetching
        else:
            await self._agent(self.referee, f"offline({self.student_gone!r})")
        if cell.test and self.owner.student_check:
            key, names = str(cell.index), self.plan.snapshot_names(cell)
            await self._agent(self.referee, f"snapshot({key!r}, {names!r})")
        reply = await self.referee.run(
            cell.code, node.outputs, cell.index, self.timeout, on_timeout=self._stop_both
        )
        node.execution_count = reply.execution_count
        if not self.referee.dead:
            await self._agent(self.referee, "release()", timeout=60)
        if serving is not None:
            served = await self._finish(serving, self.student)
            if served.status == "died":
                during = function_stopped_in(reply.evalue)
                await self._student_died(cell, served, node, during)
        self._referee_ended(cell, node, reply)

    async def _student_cell(self, cell: CellPlan, node: NotebookNode) -> None:
        if not await self._student_ready():
            self._not_run(node, f"your kernel could not be restarted ({self.student_gone})")
            self.event("not-run", cell, self.student_gone or "")
            return
        serving = None
        names = self.plan.for_student(cell)
        if not self.referee_gone:
            serving = asyncio.ensure_future(
                self.referee.run(
                    f"{AGENT}.serve(names={names!r})", node.outputs, cell.index, keep_errors=False
                )
            )
        await self._agent(self.student, f"pull({names!r})")
        reply = await self.student.run(cell.code, node.outputs, cell.index, self.timeout)
        node.execution_count = reply.execution_count
        _record_error(node, reply)
        if reply.status not in ("died",) and not self.student.dead:
            await self._agent(self.student, "release()", timeout=60)
        if serving is not None:  # ends at once unless the student's kernel skipped release()
            await self._finish(serving, self.referee, grace=5)
        if reply.status == "timeout":
            self._timeout_output(node)
            self.event("timeout", cell, f"no reply within {self.timeout} s")
            self.fatal.add(cell.index)  # not re-run if the kernel has to be rebuilt
            if self.student.dead:
                await self._student_died(cell, reply, node)
        elif reply.status == "died":
            self.fatal.add(cell.index)
            await self._student_died(cell, reply, node)
        elif reply.ename == "MemoryError":
            self.event("memory", cell, "MemoryError: the cell asked for more memory than allowed")

    # --- endings ------------------------------------------------------------------------

    def _referee_ended(self, cell: CellPlan, node: NotebookNode, reply: Reply) -> None:
        if not reply.ok:
            self.failures[cell.index] = reply
        _record_error(node, reply)
        if reply.status == "timeout":
            self._timeout_output(node)
            self.event("timeout", cell, f"no reply within {self.timeout} s")
            if self.referee.dead:
                self.referee_gone = "it did not stop after a timeout"
        elif reply.status == "died":
            self.referee_gone = self.referee.death_reason(reply.exit_status)
            self._error_output(
                node, "GraderKernelDied", f"the grader's kernel died: {self.referee_gone}"
            )
            self.event("grader-kernel-died", cell, self.referee_gone)
        if reply.ename == "MemoryError" and not self.referee_gone:
            self.event("memory", cell, "MemoryError while running the student's code")

    async def _finish(self, task: asyncio.Future, runner: KernelRunner, grace: float = 30) -> Reply:
        """The other kernel's ``serve`` after the cell: it ends when the session does."""
        try:
            return await asyncio.wait_for(asyncio.shield(task), grace)
        except TimeoutError:
            await runner.interrupt()
        try:
            return await asyncio.wait_for(task, 30)
        except TimeoutError:
            self.log.error("the %s kernel did not stop serving: killing it", runner.role)
            await runner.kill()
            task.cancel()
            return Reply("died", "KernelDied", "did not stop serving")

    async def _stop_both(self) -> None:
        """A referee cell ran too long: stop the student's code first (usually the cause)."""
        await self.student.interrupt()
        await asyncio.sleep(5)
        await self.referee.interrupt()

    async def _student_ready(self) -> bool:
        if self.student_gone:
            return False
        if await self.student.alive():
            return True
        return await self._restart()

    async def _student_died(
        self, cell: CellPlan, reply: Reply, node: NotebookNode | None, during: str | None = None
    ) -> None:
        """The student kernel died (or hung) in ``cell``; ``during``: the student's function
        that a test was calling then, when known."""
        reason = (
            self.student.death_reason(reply.exit_status)
            if reply.status == "died"
            else ("it did not stop after the timeout")
        )
        where = f" in a call of {during}()" if during else ""
        self.stopped.add(cell.index)
        if self.student.memory_hit:
            self.event("memory", cell, f"{reason}{where}")
        self.event("kernel-died", cell, f"{reason}{where}")
        if node is not None:
            self._error_output(
                node,
                "KernelDied",
                f"The kernel running your code died during this cell{where}: {reason}. This "
                f"cell scores nothing; the grader restarts the kernel, re-runs your earlier "
                f"cells (except those that stopped it) and grades the rest of the notebook.",
            )
        await self._restart()

    async def _restart(self) -> bool:
        """Restart the student kernel and rebuild its state, within the submission's restart
        budget (time, and ``max_restarts`` where set). False when it is spent or fails."""
        owner = self.owner
        if owner.max_restarts and self.restarts >= owner.max_restarts:
            self.student_gone = f"it died {self.restarts + 1} times (at most {owner.max_restarts})"
            return False
        if self.restart_s >= owner.restart_budget_s:
            self.student_gone = (
                f"it died {self.restarts + 1} times, and restarting it had taken "
                f"{self.restart_s:.0f} s, the grader's budget of {owner.restart_budget_s:.0f} s"
            )
            return False
        started = time.monotonic()
        try:
            return await self._rebuild()
        finally:
            self.restart_s += time.monotonic() - started

    async def _rebuild(self) -> bool:
        self.restarts += 1
        self.log.warning(
            "restarting the student kernel (restart %d, %.0f of %.0f s spent)",
            self.restarts,
            self.restart_s,
            self.owner.restart_budget_s,
        )
        await self.student.shutdown()
        try:
            await self.student.start()
        except RuntimeError as error:
            self.student_gone = str(error)
            return False
        await self._start_agents_student_only()
        self.plan.pulled.clear()
        for cell in self.plan.cells:
            if cell.index >= self.position:
                break
            if cell.preamble:
                await self.student.run(cell.code, None, cell.index, self.timeout)
            elif not cell.trusted and cell.index not in self.fatal:
                await self._replay_student_cell(cell)
            if self.student.dead:
                self.student_gone = "it died again while its earlier cells were re-run"
                return False
        await self._agent(self.student, "arm()")
        return True

    async def _start_agents_student_only(self) -> None:
        await self._agent(self.student, self._student_start(str(self.channel / "referee.sock")))

    async def _replay_student_cell(self, cell: CellPlan) -> None:
        serving = None
        names = sorted(n for n in cell.read if n in self.plan.trusted_by)
        if not self.referee_gone:
            serving = asyncio.ensure_future(
                self.referee.run(f"{AGENT}.serve(names={names!r})", None, cell.index)
            )
        await self._agent(self.student, f"pull({names!r})")
        await self.student.run(cell.code, None, cell.index, self.timeout)
        if not self.student.dead:
            await self._agent(self.student, "release()", timeout=60)
        if serving is not None:
            await self._finish(serving, self.referee)

    # --- the student kernel re-runs the tests -------------------------------------------

    async def _student_pass(self) -> None:
        for cell in self.plan.cells:
            if not cell.test or cell.index in self.fatal or cell.index in self.stopped:
                continue  # a test that stopped the student kernel once would stop it again
            failure = self.failures.get(cell.index)
            if failure is not None and failure.status == "timeout":
                continue
            if self.referee_gone or not await self._student_ready():
                return
            key = str(cell.index)
            serving = asyncio.ensure_future(
                self.referee.run(f"{AGENT}.serve(snapshot={key!r})", None, cell.index)
            )
            await self._agent(self.student, f"pull([], snapshot={key!r})")
            outputs: list = []
            scratch = OutputBudget()
            saved, self.student.budget = self.student.budget, scratch
            try:
                reply = await self.student.run(cell.code, outputs, cell.index, self.timeout)
            finally:
                self.student.budget = saved
            if not self.student.dead:
                await self._agent(self.student, "release()", timeout=60)
            await self._finish(serving, self.referee)
            if reply.status in ("died", "timeout"):
                return
            self.student_scores[cell.index] = _score(self.nb.cells[cell.index], outputs, reply)

    # --- outputs and the record ---------------------------------------------------------

    def _timeout_output(self, node: NotebookNode) -> None:
        self._error_output(
            node, "CellTimeoutError", f"No reply from kernel before timeout ({self.timeout} s)"
        )

    def _error_output(self, node: NotebookNode, name: str, text: str) -> None:
        node.outputs.append(
            new_output(
                "error", ename=name, evalue=text, traceback=[f"\x1b[0;31m{name}\x1b[0m: {text}"]
            )
        )

    def _not_run(self, node: NotebookNode, why: str) -> None:
        self._error_output(node, "NotRun", f"This cell was not run: {why}.")

    def _record(self, wall_s: float) -> dict:
        tests = {}
        for cell in self.plan.cells:
            if not cell.test:
                continue
            node = self.nb.cells[cell.index]
            score, _ = determine_grade(node, self.log)
            student = self.student_scores.get(cell.index)
            tests[cell.grade_id] = {
                "points": cell.points,
                "score": score,
                "student_kernel": student,
            }
            if student is not None and score is not None and student > score:
                failure = self.failures.get(cell.index)
                unverifiable = failure is not None and failure.ename in (
                    "KernelUnavailable",
                    "TransferError",
                )
                kind = "unverifiable" if unverifiable else "tampering"
                detail = (
                    "passed in the student's kernel but failed in the grader's clean kernel"
                    if kind == "tampering"
                    else f"could not be checked: {failure.ename if failure else ''}"
                )
                self.event(kind, cell, detail)
                node.outputs.append(
                    new_output(
                        "stream",
                        name="stdout",
                        text=(
                            "\n[grader] This test passed when your notebook ran it in its own "
                            "kernel, but failed when the grader ran it in a separate, clean "
                            "kernel. Your notebook changes what the tests see.\n"
                            if kind == "tampering"
                            else "\n[grader] This test could not be checked: a value could not "
                            "be sent between your kernel and the grader's.\n"
                        ),
                    )
                )
        for item in self.student.audit:
            kind = "outside-access" if _is_access(item) else "program"
            self.events.append(
                {
                    "kind": kind,
                    "cell": None,
                    "detail": f"{item.get('event')}: {item.get('detail')}"[:500],
                }
            )
        return {
            "student": self.info["student"],
            "assignment": self.info["assignment"],
            "notebook": self.info["notebook"],
            "protections": self.protections.describe(self.limits, self.timeout),
            "warnings": self.protections.warnings(),
            "events": self.events,
            "tests": tests,
            "restarts": self.restarts,
            "restart_s": round(self.restart_s, 1),
            "wall_s": round(wall_s, 1),
            "timings_s": self.timings,
        }


PROGRAM_EVENTS = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn")


def _is_access(item: dict) -> bool:
    """A file or network access (as opposed to starting a program)."""
    return str(item.get("event", "")) not in PROGRAM_EVENTS


def _record_error(node: NotebookNode, reply: Reply) -> None:
    """Like nbgrader's ``Execute``: an error reply whose error is not among the outputs (its
    traceback was hidden) becomes an error output, so that the cell cannot pass."""
    if reply.status != "error":
        return
    if not any(
        o.get("output_type") == "error" and o.get("ename") == reply.ename for o in node.outputs
    ):
        text = reply.evalue or "an error whose traceback was not shown"
        node.outputs.append(new_output("error", ename=reply.ename, evalue=text, traceback=[text]))


def _score(node: NotebookNode, outputs: list, reply: Reply) -> float:
    """nbgrader's score of a test cell from its outputs; like nbgrader's ``Execute``, an
    error reply without an error output (a hidden traceback) counts as an error."""
    outputs = list(outputs)
    recorded = any(
        o.get("output_type") == "error" and o.get("ename") == reply.ename for o in outputs
    )
    if reply.status != "ok" and not recorded:
        outputs.append(
            new_output("error", ename=reply.ename or "Error", evalue=reply.evalue, traceback=[])
        )
    probe = nbformat.from_dict(
        {"cell_type": "code", "metadata": node.metadata, "source": node.source, "outputs": outputs}
    )
    score, _ = determine_grade(probe)
    return float(score or 0.0)

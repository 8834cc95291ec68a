"""The two passes over a submission's cells (see :mod:`.refereed`): :class:`CellPass` runs
each cell in its kernel (the preamble in both, the instructor's cells in the referee with
the student's names fetched first, the student's cells in the student's kernel with the
referee's names pulled first); :class:`StudentCheck` then re-runs the tests in the
student's kernel, outputs thrown away, scores kept for the record.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from nbformat import NotebookNode

from .cell_outputs import error_output, not_run, record_error, score, timeout_output
from .kernel_pair import AGENT, KernelPair
from .kernels import OutputBudget, Reply
from .plan import CellPlan, Plan
from .proxy import function_stopped_in
from .record import GradingRecord
from .restarts import StudentRestarts


@dataclass
class Submission:
    """One submission being graded: its notebook, plan, kernels and record."""

    nb: NotebookNode
    plan: Plan
    pair: KernelPair
    restarts: StudentRestarts
    record: GradingRecord
    timeout: float | None


class CellPass:
    """Run every cell of a submission in its kernel, writing the outputs into the notebook."""

    def __init__(self, work: Submission, budget: OutputBudget, student_check: bool) -> None:
        self.work = work
        self.pair, self.plan, self.record = work.pair, work.plan, work.record
        self.restarts, self.timeout = work.restarts, work.timeout
        self.budget = budget
        self.student_check = student_check  # the referee keeps snapshots for StudentCheck

    async def run(self) -> None:
        armed = False
        for cell in self.plan.cells:
            node = self.work.nb.cells[cell.index]
            node.outputs = []
            self.restarts.position = cell.index
            if not cell.preamble and not armed:
                await self.pair.agent(self.pair.student, "arm()")
                armed = True
            if cell.preamble:
                await self._preamble(cell, node)
            elif cell.trusted:
                await self._referee_cell(cell, node)
            else:
                await self._student_cell(cell, node)
            self.plan.ran(cell)
            self._note_truncated(cell, node)

    def _note_truncated(self, cell: CellPlan, node: NotebookNode) -> None:
        note = self.budget.note(cell.index)
        if note is not None:
            node.outputs.append(note)
            detail = f"{self.budget.dropped[cell.index]:,} bytes cut"
            self.record.event("output-truncated", cell, detail)

    async def _preamble(self, cell: CellPlan, node: NotebookNode) -> None:
        referee, student = await asyncio.gather(
            self.pair.referee.run(cell.code, node.outputs, cell.index, self.timeout),
            self.pair.student.run(cell.code, None, cell.index, self.timeout),
        )
        node.execution_count = referee.execution_count
        self._referee_ended(cell, node, referee)
        if not student.ok:
            self.record.event("student-setup-failed", cell, f"{student.ename}: {student.evalue}")
            if student.status in ("died", "timeout"):
                await self.restarts.died(cell, student, node=None)

    # --- an instructor's cell: in the referee ------------------------------------------

    async def _referee_cell(self, cell: CellPlan, node: NotebookNode) -> None:
        pair = self.pair
        if pair.referee_gone:
            not_run(node, f"the grader's kernel stopped earlier ({pair.referee_gone})")
            return
        fetch = self._names_for_referee(cell)
        serving = await self._fetch(cell, node, fetch)
        if cell.test and self.student_check:
            key, names = str(cell.index), self.plan.snapshot_names(cell)
            await pair.agent(pair.referee, f"snapshot({key!r}, {names!r})")
        reply = await pair.referee.run(
            cell.code, node.outputs, cell.index, self.timeout, on_timeout=pair.stop_both
        )
        node.execution_count = reply.execution_count
        if not pair.referee.dead:
            await pair.agent(pair.referee, "release()", timeout=60)
        if serving is not None:
            served = await pair.finish(serving, pair.student)
            if served.status == "died":
                during = function_stopped_in(reply.evalue)
                await self.restarts.died(cell, served, node, during)
        self._referee_ended(cell, node, reply)

    def _names_for_referee(self, cell: CellPlan) -> list[str]:
        """The student's names the referee fetches for ``cell`` (rebindings of the
        instructor's names are ignored, and recorded)."""
        fetch, shadowed = self.plan.for_referee(cell)
        for name, by in shadowed:
            by_cell = self.plan.cells_by_index[by]
            detail = f"{name!r} rebound by {by_cell.grade_id or f'cell {by}'}; ignored"
            self.record.event("rebinds", cell, detail)
        return fetch

    async def _fetch(
        self, cell: CellPlan, node: NotebookNode, fetch: list[str]
    ) -> asyncio.Future | None:
        """Open the session for ``cell`` (the student's kernel serves while it runs) and
        define ``fetch`` in the referee; the serving task, or None when the student's
        kernel is gone for good (calls into it fail)."""
        pair = self.pair
        if not await self.restarts.ready():
            await pair.agent(pair.referee, f"offline({pair.student_gone!r})")
            return None
        serving = asyncio.ensure_future(
            pair.student.run(f"{AGENT}.serve()", node.outputs, cell.index, keep_errors=False)
        )
        fetching = asyncio.ensure_future(pair.agent(pair.referee, f"fetch({fetch!r})"))
        done, _ = await asyncio.wait({serving, fetching}, return_when=asyncio.FIRST_COMPLETED)
        if fetching not in done:  # the student's kernel stopped serving before it began
            await pair.referee.interrupt()
            await fetching
        return serving

    def _referee_ended(self, cell: CellPlan, node: NotebookNode, reply: Reply) -> None:
        pair = self.pair
        if not reply.ok:
            self.record.failures[cell.index] = reply
        record_error(node, reply)
        if reply.status == "timeout":
            timeout_output(node, self.timeout)
            self.record.event("timeout", cell, f"no reply within {self.timeout} s")
            if pair.referee.dead:
                pair.referee_gone = "it did not stop after a timeout"
        elif reply.status == "died":
            pair.referee_gone = pair.referee.death_reason(reply.exit_status)
            text = f"the grader's kernel died: {pair.referee_gone}"
            error_output(node, "GraderKernelDied", text)
            self.record.event("grader-kernel-died", cell, pair.referee_gone)
        if reply.ename == "MemoryError" and not pair.referee_gone:
            self.record.event("memory", cell, "MemoryError while running the student's code")

    # --- a student's cell: in the student's kernel ----------------------------------------

    async def _student_cell(self, cell: CellPlan, node: NotebookNode) -> None:
        pair = self.pair
        if not await self.restarts.ready():
            not_run(node, f"your kernel could not be restarted ({pair.student_gone})")
            self.record.event("not-run", cell, pair.student_gone or "")
            return
        serving = None
        names = self.plan.for_student(cell)
        if not pair.referee_gone:
            serving = asyncio.ensure_future(
                pair.referee.run(
                    f"{AGENT}.serve(names={names!r})", node.outputs, cell.index, keep_errors=False
                )
            )
        await pair.agent(pair.student, f"pull({names!r})")
        reply = await pair.student.run(cell.code, node.outputs, cell.index, self.timeout)
        node.execution_count = reply.execution_count
        record_error(node, reply)
        if reply.status not in ("died",) and not pair.student.dead:
            await pair.agent(pair.student, "release()", timeout=60)
        if serving is not None:  # ends at once unless the student's kernel skipped release()
            await pair.finish(serving, pair.referee, grace=5)
        await self._student_ended(cell, node, reply)

    async def _student_ended(self, cell: CellPlan, node: NotebookNode, reply: Reply) -> None:
        if reply.status == "timeout":
            timeout_output(node, self.timeout)
            self.record.event("timeout", cell, f"no reply within {self.timeout} s")
            self.restarts.fatal.add(cell.index)  # not re-run if the kernel has to be rebuilt
            if self.pair.student.dead:
                await self.restarts.died(cell, reply, node)
        elif reply.status == "died":
            self.restarts.fatal.add(cell.index)
            await self.restarts.died(cell, reply, node)
        elif reply.ename == "MemoryError":
            detail = "MemoryError: the cell asked for more memory than allowed"
            self.record.event("memory", cell, detail)


class StudentCheck:
    """Re-run the tests in the student's kernel (outputs thrown away) and keep their scores:
    a test that passes there but failed in the referee is flagged by the record."""

    def __init__(self, work: Submission) -> None:
        self.work = work
        self.pair, self.restarts = work.pair, work.restarts

    async def run(self) -> None:
        for cell in self.work.plan.cells:
            if not self._to_check(cell):
                continue
            if self.pair.referee_gone or not await self.restarts.ready():
                return
            reply, outputs = await self._rerun(cell)
            if reply.status in ("died", "timeout"):
                return
            node = self.work.nb.cells[cell.index]
            self.work.record.student_scores[cell.index] = score(node, outputs, reply)

    def _to_check(self, cell: CellPlan) -> bool:
        """A test that stopped the student kernel once would stop it again; one that timed
        out in the referee is not re-run."""
        if (
            not cell.test
            or cell.index in self.restarts.fatal
            or cell.index in self.restarts.stopped
        ):
            return False
        failure = self.work.record.failures.get(cell.index)
        return failure is None or failure.status != "timeout"

    async def _rerun(self, cell: CellPlan) -> tuple[Reply, list]:
        pair, key = self.pair, str(cell.index)
        serving = asyncio.ensure_future(
            pair.referee.run(f"{AGENT}.serve(snapshot={key!r})", None, cell.index)
        )
        await pair.agent(pair.student, f"pull([], snapshot={key!r})")
        outputs: list = []
        saved, pair.student.budget = pair.student.budget, OutputBudget()
        try:
            reply = await pair.student.run(cell.code, outputs, cell.index, self.work.timeout)
        finally:
            pair.student.budget = saved
        if not pair.student.dead:
            await pair.agent(pair.student, "release()", timeout=60)
        await pair.finish(serving, pair.referee)
        return reply, outputs

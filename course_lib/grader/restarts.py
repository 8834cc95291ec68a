"""The student's kernel across its deaths (see :mod:`.refereed`): a kernel that dies is
restarted and its state rebuilt by re-running the preamble and the student's cells before
the crash, except those that stopped it. Restarts are bounded by the time they take per
submission (and by a count where one is set), so one function that runs out of memory each
time it is called does not take the points of the others.
"""

from __future__ import annotations

import asyncio
import time
from logging import Logger

from nbformat import NotebookNode

from .cell_outputs import error_output
from .kernel_pair import AGENT, KernelPair
from .kernels import Reply
from .plan import CellPlan, Plan
from .record import GradingRecord


class StudentRestarts:
    """Restarts of one submission's student kernel, and the cells that cost them."""

    def __init__(
        self,
        pair: KernelPair,
        plan: Plan,
        record: GradingRecord,
        timeout: float | None,
        max_restarts: int,
        budget_s: float,
        log: Logger,
    ) -> None:
        self.pair = pair
        self.plan = plan
        self.record = record
        self.timeout = timeout
        self.max_restarts = max_restarts  # 0: bounded by time only
        self.budget_s = budget_s
        self.log = log
        self.count = 0
        self.seconds = 0.0  # time spent restarting the student kernel and re-running cells
        self.fatal: set[int] = set()  # student cells that killed or hung their kernel
        self.stopped: set[int] = set()  # cells (any) during which the student kernel died
        self.position = 0  # the cell being graded: the cells before it are re-run

    async def ready(self) -> bool:
        """Whether the student kernel runs (restarted if it had died)."""
        if self.pair.student_gone:
            return False
        if await self.pair.student.alive():
            return True
        return await self.restart()

    async def died(
        self, cell: CellPlan, reply: Reply, node: NotebookNode | None, during: str | None = None
    ) -> None:
        """The student kernel died (or hung) in ``cell``; ``during``: the student's function
        that a test was calling then, when known."""
        student = self.pair.student
        reason = (
            student.death_reason(reply.exit_status)
            if reply.status == "died"
            else ("it did not stop after the timeout")
        )
        where = f" in a call of {during}()" if during else ""
        self.stopped.add(cell.index)
        if student.memory_hit:
            self.record.event("memory", cell, f"{reason}{where}")
        self.record.event("kernel-died", cell, f"{reason}{where}")
        if node is not None:
            error_output(
                node,
                "KernelDied",
                f"The kernel running your code died during this cell{where}: {reason}. This "
                f"cell scores nothing; the grader restarts the kernel, re-runs your earlier "
                f"cells (except those that stopped it) and grades the rest of the notebook.",
            )
        await self.restart()

    async def restart(self) -> bool:
        """Restart the student kernel and rebuild its state, within the submission's restart
        budget (time, and ``max_restarts`` where set). False when it is spent or fails."""
        if self.max_restarts and self.count >= self.max_restarts:
            self.pair.student_gone = f"it died {self.count + 1} times (at most {self.max_restarts})"
            return False
        if self.seconds >= self.budget_s:
            self.pair.student_gone = (
                f"it died {self.count + 1} times, and restarting it had taken "
                f"{self.seconds:.0f} s, the grader's budget of {self.budget_s:.0f} s"
            )
            return False
        started = time.monotonic()
        try:
            return await self._rebuild()
        finally:
            self.seconds += time.monotonic() - started

    async def _rebuild(self) -> bool:
        self.count += 1
        self.log.warning(
            "restarting the student kernel (restart %d, %.0f of %.0f s spent)",
            self.count,
            self.seconds,
            self.budget_s,
        )
        student = self.pair.student
        await student.shutdown()
        try:
            await student.start()
        except RuntimeError as error:
            self.pair.student_gone = str(error)
            return False
        await self.pair.start_student_agent()
        self.plan.pulled.clear()
        for cell in self.plan.cells:
            if cell.index >= self.position:
                break
            if cell.preamble:
                await student.run(cell.code, None, cell.index, self.timeout)
            elif not cell.trusted and cell.index not in self.fatal:
                await self._replay(cell)
            if student.dead:
                self.pair.student_gone = "it died again while its earlier cells were re-run"
                return False
        await self.pair.agent(student, "arm()")
        return True

    async def _replay(self, cell: CellPlan) -> None:
        """Re-run a student's cell, with the names it reads from the referee."""
        pair = self.pair
        serving = None
        names = sorted(n for n in cell.read if n in self.plan.trusted_by)
        if not pair.referee_gone:
            serving = asyncio.ensure_future(
                pair.referee.run(f"{AGENT}.serve(names={names!r})", None, cell.index)
            )
        await pair.agent(pair.student, f"pull({names!r})")
        await pair.student.run(cell.code, None, cell.index, self.timeout)
        if not pair.student.dead:
            await pair.agent(pair.student, "release()", timeout=60)
        if serving is not None:
            await pair.finish(serving, pair.referee)

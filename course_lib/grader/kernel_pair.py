"""The two kernels one submission is graded in (see :mod:`.refereed`): their scratch folders
and sandboxes, the files copied into them, and the silent cells of the link between them
(:mod:`.agent`, run by the name :mod:`.remote`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from dataclasses import dataclass
from logging import Logger
from pathlib import Path

from .codec import REFEREE, STUDENT
from .kernels import KernelRunner, OutputBudget, Reply
from .sandbox import Limits, Protections, Sandbox, kernel_uid, python_environment

AGENT = "__import__('course_lib.grader.remote', fromlist=['remote'])"
#: Seconds the agent's own steps may take (connecting, sending names).
AGENT_TIMEOUT_S = 300
#: What the student kernel may read, besides the Python environment (reported by its
#: audit hook when it tries anything else).
SYSTEM_FOLDERS = ["/usr", "/etc", "/lib", "/lib64", "/bin", "/sbin"]


@dataclass
class PairSettings:
    """Where and how the two kernels of one submission run."""

    course_root: Path  # hidden from both kernels
    assignment: str
    source: Path  # the referee's files: the assignment's source folder
    submission: Path  # the student's files
    work_dir: str  # where the scratch folders go ("": the system's temporary folder)
    threads: int
    watched: list[str]  # more folders whose access is reported
    protections: Protections
    limits: Limits


class KernelPair:
    """The referee's and the student's kernels of one submission, each in its sandbox
    under one scratch folder (made here, removed by :meth:`close`)."""

    def __init__(self, settings: PairSettings, log: Logger, budget: OutputBudget) -> None:
        self.settings = settings
        self.log = log
        work_dir = settings.work_dir
        base = Path(work_dir or ("/tmp" if Path("/tmp").is_dir() else tempfile.gettempdir()))
        self.folder = Path(tempfile.mkdtemp(prefix="course-grading-", dir=base))
        os.chmod(self.folder, 0o711)
        self.channel = self.folder / "channel"
        referee_box = self._sandbox("referee", 1)
        student_box = self._sandbox("student", 0)
        self.channel.mkdir()
        if referee_box.uid is not None:
            os.chown(self.channel, referee_box.uid, referee_box.uid)
        self.referee = KernelRunner(
            "referee", referee_box, self.folder / "referee-run", log, budget
        )
        self.student = KernelRunner(
            "student", student_box, self.folder / "student-run", log, budget
        )
        self.referee_gone: str | None = None  # why the grader's kernel stopped for good
        self.student_gone: str | None = None  # why the student's could not be restarted

    # --- the sandboxes --------------------------------------------------------------------

    def readable(self) -> list[Path]:
        """What both kernels may read: the Python environment, course_lib, checkpoints,
        results and data (never the course's own folders)."""
        from .. import paths
        from ..data import data_dir

        forbidden = {self.settings.course_root, paths.REPO_ROOT}
        environment = [
            p for p in python_environment() if not any(f.is_relative_to(p) for f in forbidden)
        ]
        course_lib = Path(__file__).resolve().parents[1]
        return [*environment, course_lib, paths.CHECKPOINT_DIR, paths.RESULTS_DIR, data_dir()]

    def _sandbox(self, role: str, slot: int) -> Sandbox:
        from ..data import DATA_DIR_ENV, data_dir

        settings = self.settings
        threads = str(settings.threads)
        env = {
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
            # resolved, like the folder bound into the sandbox: a data folder reached
            # through a symbolic link under /tmp would not exist in its private /tmp
            DATA_DIR_ENV: str(data_dir().resolve()),
            "NBGRADER_EXECUTION": "autograde",
            "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
            "OPENBLAS_NUM_THREADS": threads,
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        }
        uid = kernel_uid(slot) if settings.protections.own_user else None
        return Sandbox(
            work=self.folder / f"{role}-work",
            tmp=self.folder / f"{role}-tmp",
            readable=self.readable(),
            shared=[self.channel],
            hidden=[settings.course_root],
            env=env,
            limits=settings.limits,
            uid=uid,
            name=settings.assignment,
            protections=settings.protections,
        )

    async def start(self) -> None:
        """Prepare both sandboxes, copy in their files and start both kernels."""
        self.referee.sandbox.prepare(f"course-grading-{self.folder.name}-r")
        self.student.sandbox.prepare(f"course-grading-{self.folder.name}-s")
        _fill(self.referee.sandbox, self.settings.source)
        _fill(self.student.sandbox, self.settings.submission)
        await asyncio.gather(self.referee.start(), self.student.start())

    async def close(self) -> None:
        """Shut both kernels down and remove the scratch folder."""
        await asyncio.gather(self.referee.shutdown(), self.student.shutdown())
        shutil.rmtree(self.folder, ignore_errors=True)

    # --- the link between them --------------------------------------------------------------

    async def start_agents(self) -> None:
        await asyncio.gather(
            self.agent(self.referee, f"start({REFEREE!r}, {self._address()!r})"),
            self.start_student_agent(),
        )

    async def start_student_agent(self) -> None:
        """Start the student kernel's end of the link (again, after a restart)."""
        await self.agent(self.student, self._student_start())

    def _address(self) -> str:
        return str(self.channel / "referee.sock")

    def _student_start(self) -> str:
        from .. import paths

        settings = self.settings
        allowed = [str(p) for p in self.readable()] + SYSTEM_FOLDERS
        forbidden = [str(settings.course_root), str(paths.REPO_ROOT), *settings.watched]
        scratch = "/tmp" if settings.protections.namespaces else str(self.student.sandbox.tmp)
        return (
            f"start({STUDENT!r}, {self._address()!r}, allowed={allowed!r}, "
            f"forbidden={forbidden!r}, scratch={scratch!r})"
        )

    async def agent(
        self, runner: KernelRunner, call: str, timeout: float = AGENT_TIMEOUT_S
    ) -> Reply:
        """Run ``call`` of the link (:mod:`.agent`) in ``runner``'s kernel, silently."""
        reply = await runner.run(f"{AGENT}.{call}", silent=True, timeout=timeout)
        if not reply.ok and reply.status != "timeout":
            self.log.warning(
                "%s kernel: %s failed: %s %s", runner.role, call[:40], reply.ename, reply.evalue
            )
        return reply

    async def finish(self, task: asyncio.Future, runner: KernelRunner, grace: float = 30) -> Reply:
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

    async def stop_both(self) -> None:
        """A referee cell ran too long: stop the student's code first (usually the cause)."""
        await self.student.interrupt()
        await asyncio.sleep(5)
        await self.referee.interrupt()


def _fill(box: Sandbox, source: Path) -> None:
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

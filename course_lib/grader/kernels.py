"""A Jupyter kernel in the grader's :class:`~.sandbox.Sandbox`, and the one way the grader
runs code in it: bounded outputs, a timeout that escalates from interrupt to kill, and a
clear account of a kernel that died.

Outputs are bounded while they arrive (:class:`OutputBudget`): a cell that prints 50 MB
keeps its first bytes and a visible "[output truncated ...]" note, whatever it prints.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
from jupyter_client.manager import AsyncKernelManager
from nbformat import NotebookNode
from nbformat.v4 import new_output, output_from_msg

from .audit import AUDIT_PREFIX
from .sandbox import Sandbox

#: Seconds between liveness checks while waiting for a kernel.
POLL_S = 0.5
#: Seconds a kernel gets to stop after an interrupt before it is killed.
INTERRUPT_GRACE_S = 10.0
#: Largest message the grader accepts from a kernel (bytes): a bigger one (one print of
#: hundreds of MB) is dropped by the connection before it can fill the grader's memory.
MAX_MESSAGE_BYTES = 256 * 1024**2


class SandboxedKernelManager(AsyncKernelManager):
    """An IPython kernel started inside ``sandbox`` (set before :meth:`start_kernel`),
    talking over unix sockets (``ipc``) so that it needs no network, and interrupted by a
    message on its control channel (a signal would not cross the sandbox)."""

    sandbox: Sandbox | None = None
    runtime: Path | None = None
    stderr_reader: StderrReader | None = None

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", self.connection_file]
        argv += ["--HistoryManager.hist_file=:memory:", *(extra_arguments or [])]
        assert self.sandbox is not None
        return self.sandbox.command(argv)

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        assert self.sandbox is not None and self.runtime is not None
        self.sandbox.give(Path(self.connection_file))
        kw.update(env=_launcher_env(), cwd=str(self.runtime))
        kw.update(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        await super()._async_launch_kernel(kernel_cmd, **kw)
        process = getattr(self.provisioner, "process", None)
        if process is not None and process.stderr is not None:
            self.stderr_reader = StderrReader(process.stderr)

    async def _async_interrupt_kernel(self) -> None:
        if not self.has_kernel:
            return
        message = self.session.msg("interrupt_request", content={})
        self._connect_control_socket()
        self.session.send(self._control_socket, message)

    # AsyncKernelManager binds the base class's method to this name: rebind ours
    interrupt_kernel = _async_interrupt_kernel

    def exit_status(self) -> int | None:
        process = getattr(self.provisioner, "process", None)
        return None if process is None else process.poll()


def _launcher_env() -> dict[str, str]:
    """The environment of the launcher step (it builds the kernel's own from scratch)."""
    import os

    keep = ("PATH", "PYTHONPATH", "LANG", "HOME")
    return {key: os.environ[key] for key in keep if key in os.environ}


class StderrReader:
    """Reads a kernel's stderr in a thread and keeps the audit reports (bounded, whatever
    the kernel writes); other lines are dropped."""

    MAX_LINE = 2000

    def __init__(self, stream: Any) -> None:
        self.audit: list[dict] = []
        self.closed_early = False
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            line = raw[: self.MAX_LINE].decode("utf-8", "replace").rstrip("\n")
            if line.startswith(AUDIT_PREFIX):
                try:
                    record = json.loads(line[len(AUDIT_PREFIX) :])
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict) and len(self.audit) < 500:
                    self.audit.append({k: str(v)[:300] for k, v in record.items()})


# --- outputs -------------------------------------------------------------------------------


@dataclass
class OutputBudget:
    """Bytes of output one notebook may keep: per output, per cell, per notebook. What is
    cut is counted, and the cell gets a visible note (:meth:`notes`)."""

    per_output: int = 100_000
    per_cell: int = 300_000
    per_notebook: int = 4_000_000
    used: int = 0
    dropped: dict[int, int] = field(default_factory=dict)
    cell_used: dict[int, int] = field(default_factory=dict)

    def admit(self, cell: int, output: NotebookNode) -> NotebookNode | None:
        """``output`` as it may be kept (cut if too large), or ``None`` to drop it."""
        size = _size(output)
        room = min(
            self.per_output,
            self.per_cell - self.cell_used.get(cell, 0),
            self.per_notebook - self.used,
        )
        if size <= room:
            self._use(cell, size)
            return output
        self.dropped[cell] = self.dropped.get(cell, 0) + size - max(room, 0)
        if room <= 200 or output.output_type not in ("stream", "error"):
            return None
        if output.output_type == "stream":
            overhead = size - len(output.text.encode("utf-8"))
            output.text = _cut(output.text, room - overhead)
        else:
            output.evalue = _cut(output.evalue, room // 2)
            output.traceback = [_cut("\n".join(output.traceback), room // 2)]
        self._use(cell, _size(output))
        return output

    def _use(self, cell: int, size: int) -> None:
        self.used += size
        self.cell_used[cell] = self.cell_used.get(cell, 0) + size

    def note(self, cell: int) -> NotebookNode | None:
        """The "truncated" note for ``cell``, if anything of it was cut."""
        if not self.dropped.get(cell):
            return None
        text = (
            f"\n[output truncated: {self.dropped[cell]:,} bytes not shown; the grader keeps "
            f"at most {self.per_output:,} bytes per output, {self.per_cell:,} per cell and "
            f"{self.per_notebook:,} per notebook]\n"
        )
        return new_output("stream", name="stdout", text=text)


def _size(output: NotebookNode) -> int:
    return len(json.dumps(output, default=str))


def _cut(text: str, keep: int) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= keep:
        return text
    return encoded[: max(keep, 0)].decode("utf-8", "ignore")


# --- running code ------------------------------------------------------------------------


@dataclass
class Reply:
    """How one execution ended."""

    status: str  # "ok", "error", "timeout", "died"
    ename: str = ""
    evalue: str = ""
    execution_count: int | None = None
    exit_status: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class KernelRunner:
    """One sandboxed kernel: start it, run code in it with bounded outputs and a timeout,
    interrupt or kill it, and say how it ended."""

    def __init__(
        self,
        role: str,
        sandbox: Sandbox,
        runtime: Path,
        log: logging.Logger,
        budget: OutputBudget,
        startup_timeout: float = 120.0,
        iopub_timeout: float = 30.0,
    ) -> None:
        self.role = role
        self.sandbox = sandbox
        self.runtime = runtime
        self.log = log
        self.budget = budget
        self.startup_timeout = startup_timeout
        self.iopub_timeout = iopub_timeout
        self.km: SandboxedKernelManager | None = None
        self.kc: Any = None
        self.dead = False
        self.memory_hit = False
        self.starts = 0
        self.past_audit: list[dict] = []

    async def start(self) -> None:
        self.runtime.mkdir(parents=True, exist_ok=True)
        if self.runtime not in self.sandbox.writable:
            self.sandbox.writable.append(self.runtime)
        self.sandbox.prepare(f"course-grading-{self.runtime.parent.name}-{self.role}")
        km = SandboxedKernelManager(kernel_name="python3", transport="ipc")
        km.sandbox, km.runtime = self.sandbox, self.runtime
        km.connection_file = str(self.runtime / "kernel.json")
        km.ip = str(self.runtime / "ipc")
        previous, self.km = self.km, km
        self.starts += 1
        self.memory_hit = False  # of this kernel: a restarted one has not run out of memory yet
        if previous is not None and previous.stderr_reader is not None:
            self.past_audit += previous.stderr_reader.audit
        await km.start_kernel()
        km.context.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)  # for the client's sockets
        self.kc = km.client()
        self.kc.start_channels()
        try:
            await self.kc.wait_for_ready(timeout=self.startup_timeout)
        except RuntimeError as error:
            await self.kill()
            raise RuntimeError(f"the {self.role} kernel did not start: {error}") from error
        self.dead = False

    async def alive(self) -> bool:
        return self.km is not None and not self.dead and await self.km.is_alive()

    async def run(
        self,
        code: str,
        outputs: list | None = None,
        cell: int = -1,
        timeout: float | None = None,
        silent: bool = False,
        keep_errors: bool = True,
        on_timeout: Any = None,
    ) -> Reply:
        """Execute ``code``; its outputs go to ``outputs`` (bounded) unless ``None``.
        ``silent``: no history, no execution count. After ``timeout`` seconds
        ``on_timeout()`` (default: interrupt this kernel), then a kill if it does not stop."""
        if self.km is None or self.dead:
            return Reply("died", "KernelDied", f"the {self.role} kernel is not running")
        msg_id = self.kc.execute(
            code, silent=False, store_history=not silent, allow_stdin=False, stop_on_error=False
        )
        reply: dict | None = None
        reply_at = 0.0
        idle = False
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        interrupted_at: float | None = None
        clear_pending = False
        last_poll = started
        while reply is None or not idle:
            now = time.monotonic()
            if reply is not None and now - reply_at > self.iopub_timeout:
                self.log.warning("%s kernel: outputs did not finish; going on", self.role)
                break
            if deadline is not None and now > deadline and interrupted_at is None:
                self.log.error("Timeout waiting for execute reply (%is).", timeout or 0)
                interrupted_at = now
                await (on_timeout() if on_timeout is not None else self.interrupt())
            if interrupted_at is not None and now - interrupted_at > INTERRUPT_GRACE_S:
                self.log.error("%s kernel did not stop after an interrupt: killing it", self.role)
                await self.kill()
                return Reply("timeout", "CellTimeoutError", "killed after the timeout")
            if now - last_poll > POLL_S:
                last_poll = now
                if not await self.km.is_alive():
                    return await self._died()
            message = await self._next(self.kc.get_iopub_msg)
            if message is not None and message["parent_header"].get("msg_id") == msg_id:
                kind = message["msg_type"]
                if kind == "status":
                    idle = message["content"]["execution_state"] == "idle"
                elif kind == "clear_output":
                    clear_pending = bool(message["content"].get("wait"))
                    if not clear_pending and outputs is not None:
                        outputs.clear()
                elif outputs is not None and kind in (
                    "stream",
                    "display_data",
                    "execute_result",
                    "error",
                ):
                    if clear_pending:
                        outputs.clear()
                        clear_pending = False
                    if kind == "error" and not keep_errors:
                        continue
                    self._keep(outputs, cell, message)
            if reply is None:
                shell = await self._next(self.kc.get_shell_msg, 0.01)
                if shell is not None and shell["parent_header"].get("msg_id") == msg_id:
                    reply, reply_at = shell, time.monotonic()
        content = reply["content"]
        if interrupted_at is not None:
            return Reply("timeout", "CellTimeoutError", "", content.get("execution_count"))
        if content["status"] == "ok":
            return Reply("ok", execution_count=content.get("execution_count"))
        return Reply(
            "error",
            content.get("ename", ""),
            content.get("evalue", ""),
            content.get("execution_count"),
        )

    async def _next(self, getter: Any, timeout: float = 0.05) -> dict | None:
        try:
            return await getter(timeout=timeout)
        except Exception:  # queue.Empty, or a message that could not be decoded
            return None

    def _keep(self, outputs: list, cell: int, message: dict) -> None:
        try:
            output = output_from_msg(message)
        except ValueError:
            return
        if output.output_type == "stream" and outputs and outputs[-1].output_type == "stream":
            last = outputs[-1]
            if last.name == output.name:
                admitted = self.budget.admit(cell, output)
                if admitted is not None:
                    last.text += admitted.text
                return
        admitted = self.budget.admit(cell, output)
        if admitted is not None:
            outputs.append(admitted)

    async def _died(self) -> Reply:
        self.dead = True
        status = self.km.exit_status() if self.km else None
        self.memory_hit = self.sandbox.release() or self.memory_hit
        return Reply("died", "KernelDied", self.death_reason(status), exit_status=status)

    def death_reason(self, status: int | None) -> str:
        if self.memory_hit:
            return "it ran out of memory (the memory limit of the sandbox)"
        if status is not None and status < 0:
            return f"it was killed by signal {-status}"
        if status is not None:
            return f"its process exited with status {status}"
        return "it stopped responding"

    async def interrupt(self) -> None:
        if self.km is not None and not self.dead:
            try:
                await self.km.interrupt_kernel()
            except Exception as error:  # a dead control channel: the kill follows
                self.log.warning("could not interrupt the %s kernel: %s", self.role, error)

    async def kill(self) -> None:
        if self.km is None:
            return
        self.dead = True
        try:
            await self.km.shutdown_kernel(now=True)
        except Exception as error:
            self.log.warning("shutting down the %s kernel: %s", self.role, error)
        self.memory_hit = self.sandbox.release() or self.memory_hit

    async def shutdown(self) -> None:
        if self.kc is not None:
            self.kc.stop_channels()
        await self.kill()

    @property
    def audit(self) -> list[dict]:
        reader = self.km.stderr_reader if self.km else None
        return self.past_audit + (reader.audit if reader else [])

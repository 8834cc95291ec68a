"""How the grader's clean kernel and the student's kernel talk while a notebook is graded:
each kernel's end of the link (:class:`Agent`) and the entry points the grader runs there.

A submission runs in **two** kernels (see :mod:`.refereed`): the *referee* runs the
instructor's cells (setup, runs, tests) and never any code of the student's; the
*student* kernel runs the student's cells. When a test cell calls a student's function,
the referee sends the arguments to the student kernel **by value** and gets the result
back by value (:mod:`.codec`, over a :mod:`.session`); functions and objects that cannot
travel by value stay where they are and are called through proxies (:mod:`.proxy`).

Semantics kept across the boundary:

- a function that changes its arguments in place (pruning a model, training it) changes
  the caller's objects: the new state of every mutable argument comes back and is copied
  into the caller's object, keeping the identity of modules and parameters;
- a result that *is* one of the arguments comes back as that argument;
- gradients flow back through a student's function (``backward`` is forwarded);
- exceptions come back with their type when it is a built-in one (``ValueError``, ...)
  and the student's traceback in the message.

The grader runs :func:`start`, :func:`arm`, :func:`serve`, :func:`fetch`, :func:`offline`,
:func:`pull`, :func:`snapshot`, :func:`release` in the kernels as silent cells, by the name
:mod:`.remote`.
"""

from __future__ import annotations

import functools
import os
import socket
import sys
from typing import Any

from .audit import AuditHook
from .codec import REFEREE, ArgRef, Codec, Missing, Registry, sync_into
from .proxy import Handle, KernelUnavailable, TransferError, stopped_during
from .session import Session

#: Names IPython defines itself: never copied between the kernels.
IPYTHON_NAMES = frozenset({"_", "__", "___", "_i", "_ii", "_iii", "_oh", "_dh", "In", "Out"})
IPYTHON_NAMES |= {"exit", "quit", "get_ipython", "__builtins__", "__name__", "__doc__"}


# --- the agent: one per kernel ----------------------------------------------------------


class Agent:
    """This kernel's end of the link: its registry, its codec and the current session."""

    def __init__(self, side: str, address: str) -> None:
        self.side = side
        self.address = address
        self.registry = Registry(side)
        self.codec = Codec(side, self.registry, agent)
        self.session: Session | None = None
        self.listener: socket.socket | None = None
        self.snapshots: dict[str, bytes] = {}
        self.offline_reason: str | None = None
        self.audit: AuditHook | None = None
        self.allowed_names: frozenset[str] = frozenset()
        self.allowed_snapshot: str | None = None

    def namespace(self) -> dict:
        shell = _shell()
        return shell.user_ns if shell is not None else sys.modules["__main__"].__dict__

    # sessions
    def listen(self) -> None:
        if os.path.exists(self.address):
            os.unlink(self.address)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.address)
        os.chmod(self.address, 0o666)
        self.listener.listen(8)

    def accept(self, timeout: float) -> Session:
        assert self.listener is not None, "the referee listens, the student kernel connects"
        self.listener.settimeout(timeout)
        try:
            sock, _ = self.listener.accept()
        except TimeoutError:
            raise KernelUnavailable("the student's kernel did not answer") from None
        sock.settimeout(None)
        return self.open(sock)

    def connect(self) -> Session:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.address)
        return self.open(sock)

    def open(self, sock: socket.socket) -> Session:
        self.end()
        self.offline_reason = None
        self.session = Session(sock, self)
        return self.session

    def end(self, send_done: bool = True) -> None:
        if self.session is not None:
            self.session.close(send_done)
        self.session = None

    def current(self) -> Session:
        if self.session is None or self.session.closed:
            reason = self.offline_reason or "no connection to the other kernel"
            raise KernelUnavailable(reason)
        return self.session

    # requests
    def call(self, handle: Handle, args: tuple, kwargs: dict) -> Any:
        import torch

        grad = []
        if torch.is_grad_enabled():
            grad = [
                i
                for i, a in enumerate(args)
                if isinstance(a, torch.Tensor) and a.requires_grad and a.is_floating_point()
            ]
        payload = self.codec.dumps((handle, args, kwargs))
        try:
            reply, data = self.current().request("call", {"grad": grad}, payload)
        except KernelUnavailable as error:
            raise KernelUnavailable(f"{error}, {stopped_during(handle.name)}") from None
        outcome, (post_args, post_kwargs) = self.codec.loads(data)
        for target, source in zip(args, post_args, strict=False):
            sync_into(target, source)
        for key, source in post_kwargs.items():
            sync_into(kwargs.get(key), source)
        if isinstance(outcome, ArgRef):
            return args[outcome.index] if isinstance(outcome.index, int) else kwargs[outcome.index]
        if reply.get("graph"):
            inputs, positions = [args[i] for i in grad], reply.get("outputs")
            if positions is None and isinstance(outcome, torch.Tensor):
                return _attach_gradient(self, reply["graph"], inputs, [outcome])[0]
            if positions and type(outcome) in (list, tuple):  # e.g. one tensor per path
                items = list(outcome)
                attached = _attach_gradient(
                    self, reply["graph"], inputs, [items[i] for i in positions]
                )
                for i, tensor in zip(positions, attached, strict=True):
                    items[i] = tensor
                return type(outcome)(items)
        return outcome

    def getattr(self, handle: Handle, name: str) -> Any:
        reply, data = self.current().request("getattr", {"name": name}, self.codec.dumps(handle))
        return self.codec.loads(data)

    def backward(self, graph: int, grads: list) -> list:
        _, data = self.current().request("backward", {"graph": graph}, self.codec.dumps(grads))
        return self.codec.loads(data)

    def fetch_names(self, names: list[str], snapshot: str | None = None) -> dict:
        header = {"names": list(names), "snapshot": snapshot}
        _, data = self.current().request("fetch", header)
        values = self.codec.loads(data)
        if not isinstance(values, dict):
            raise TransferError("the other kernel sent something that is not a set of names")
        return values


# --- gradients through a call into the other kernel ---------------------------------------


def _attach_gradient(agent: Agent, graph: int, inputs: list, outputs: list) -> tuple:
    """``outputs`` (computed in the other kernel) as tensors whose backward pass asks that
    kernel for the gradients of ``inputs``."""
    attached = _remote_backward().apply((agent, graph, outputs), *inputs)
    return attached if isinstance(attached, tuple) else (attached,)


@functools.cache
def _remote_backward() -> type:
    """One autograd Function for every remote call (a class made per call is only freed by
    the cyclic garbage collector, and with it the outputs it holds: memory grows)."""
    import torch

    class RemoteBackward(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, link: tuple, *tensors: Any) -> Any:
            agent, graph, outputs = link
            ctx.agent, ctx.graph = agent, graph
            return tuple(o.clone() for o in outputs)

        @staticmethod
        def backward(ctx: Any, *grads: Any) -> tuple:
            got = ctx.agent.backward(ctx.graph, list(grads))
            saved = ctx.needs_input_grad[1:]
            return (None, *(g if need else None for g, need in zip(got, saved, strict=True)))

    return RemoteBackward


# --- this process's agent ------------------------------------------------------------------

_AGENT: Agent | None = None


def _agent() -> Agent:
    if _AGENT is None:
        raise KernelUnavailable("this kernel is not connected to a grader")
    return _AGENT


def agent() -> Agent:
    """This process's end of the link (after :func:`start`)."""
    return _agent()


def stop() -> None:
    """Close this process's end of the link."""
    global _AGENT
    if _AGENT is not None:
        _AGENT.end(send_done=False)
        if _AGENT.listener is not None:
            _AGENT.listener.close()
    _AGENT = None


def _shell() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _define(values: dict) -> None:
    namespace = _agent().namespace()
    for name, value in values.items():
        if isinstance(value, Missing):
            namespace.pop(name, None)
        elif name not in IPYTHON_NAMES:
            namespace[name] = value


# --- the entry points the grader runs in each kernel (as silent cells) ---------------------


def start(
    side: str,
    address: str,
    seed: int = 0,
    allowed: list[str] | None = None,
    forbidden: list[str] | None = None,
    scratch: str = "/tmp",
) -> None:
    """Make this kernel the ``side`` end of the link at the unix socket ``address``: the
    referee listens there; the student kernel connects to it and reports what it tries
    outside its sandbox (an audit hook; ``allowed``: folders it may read, ``scratch``: its
    temporary folder, ``forbidden``: the course's folders, reported even where they look like
    its own)."""
    global _AGENT
    import random

    _AGENT = Agent(side, address)
    random.seed(seed)
    try:
        import numpy as np
        import torch

        np.random.seed(seed)
        torch.manual_seed(seed)
    except ImportError:
        pass
    if side == REFEREE:
        _AGENT.listen()
    else:
        _AGENT.audit = AuditHook(allowed or [], address, forbidden or [], scratch)
        sys.addaudithook(_AGENT.audit)


def arm() -> None:
    """(student) Start reporting: what the instructor's setup cells do is not reported."""
    audit = getattr(_agent(), "audit", None)
    if audit is not None:
        audit.armed = True


def serve(timeout: float = 60.0, names: list[str] = (), snapshot: str | None = None) -> None:
    """Answer the other kernel's requests until it says it is done. The referee hands out
    only ``names`` and the ``snapshot`` the grader's plan allows for this session."""
    agent = _agent()
    agent.allowed_names = frozenset(n for n in names if n not in IPYTHON_NAMES)
    agent.allowed_snapshot = snapshot
    session = agent.accept(timeout) if agent.side == REFEREE else agent.connect()
    try:
        session.serve_until_done()
    finally:
        agent.end(send_done=False)


def fetch(names: list[str], timeout: float = 60.0) -> None:
    """(referee) Open the session with the student kernel (which is serving) and define
    ``names`` from it here."""
    agent = _agent()
    agent.accept(timeout)
    if names:
        _define(agent.fetch_names(names))


def offline(reason: str) -> None:
    """(referee) The student kernel is not running: calls into it fail with ``reason``."""
    agent = _agent()
    agent.end(send_done=False)
    agent.offline_reason = reason


def pull(names: list[str], snapshot: str | None = None) -> None:
    """(student) Open the session with the referee (which is serving) and define ``names``
    from it here (or everything of a ``snapshot`` the referee took)."""
    agent = _agent()
    agent.connect()
    if names or snapshot is not None:
        _define(agent.fetch_names(names, snapshot))


def snapshot(key: str, names: list[str]) -> None:
    """(referee) Keep the current values of ``names`` for the student kernel to pull later."""
    agent = _agent()
    namespace = agent.namespace()
    values = {name: namespace.get(name, Missing()) for name in names}
    agent.snapshots[key] = agent.codec.dumps(values)


def release() -> None:
    """End the current session (the other kernel's :func:`serve` returns)."""
    _agent().end(send_done=True)

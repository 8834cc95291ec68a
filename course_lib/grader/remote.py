"""How the grader's clean kernel and the student's kernel talk while a notebook is graded.

A submission runs in **two** kernels (see :mod:`.refereed`): the *referee* runs the
instructor's cells (setup, runs, tests) and never any code of the student's; the
*student* kernel runs the student's cells. When a test cell calls a student's function,
the referee sends the arguments to the student kernel **by value** and gets the result
back by value; functions, lambdas and objects that cannot travel by value stay where they
are and travel as handles (a call on a handle is a call back into the kernel that owns
it). Nothing the student kernel sends can run code in the referee: the referee unpickles
with ``torch.load(weights_only=True)``, which accepts only tensors, containers and the
classes of PyTorch, torch-pruning and ``course_lib`` (:func:`allowed_class`), rebuilt
without calling their ``__init__``.

Semantics kept across the boundary:

- a function that changes its arguments in place (pruning a model, training it) changes
  the caller's objects: the new state of every mutable argument comes back and is copied
  into the caller's object, keeping the identity of modules and parameters;
- a result that *is* one of the arguments comes back as that argument;
- gradients flow back through a student's function (``backward`` is forwarded);
- exceptions come back with their type when it is a built-in one (``ValueError``, ...)
  and the student's traceback in the message.

The module is also the in-kernel agent: the grader runs :func:`start`, :func:`serve`,
:func:`fetch`, :func:`pull`, :func:`snapshot`, :func:`release` as silent cells.
"""

from __future__ import annotations

import builtins
import functools
import importlib
import io
import json
import os
import re
import socket
import struct
import sys
import traceback
import types
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

#: Largest message the referee accepts from the student kernel (bytes).
MAX_MESSAGE_BYTES = 512 * 1024**2
#: Longest student traceback kept in an error message (characters).
MAX_TRACEBACK_CHARS = 6000
REFEREE, STUDENT = "referee", "student"
#: Names IPython defines itself: never copied between the kernels.
IPYTHON_NAMES = frozenset({"_", "__", "___", "_i", "_ii", "_iii", "_oh", "_dh", "In", "Out"})
IPYTHON_NAMES |= {"exit", "quit", "get_ipython", "__builtins__", "__name__", "__doc__"}
AUDIT_PREFIX = "COURSE-GRADER-AUDIT "


class RemoteError(Exception):
    """An exception raised in the other kernel (its type name and traceback in the message)."""

    remote_type = "Exception"
    interrupted = False


class KernelUnavailable(RemoteError):
    """The other kernel died, was stopped, or never answered."""


class TransferError(RemoteError):
    """A value could not be sent between the kernels."""


# --- what travels: markers for handles, modules and arguments ----------------------------


class Handle:
    """A reference to an object that stays in the kernel ``owner``."""

    def __init__(self, owner: str, key: int, kind: str, name: str) -> None:
        self.owner, self.key, self.kind, self.name = owner, key, kind, name


class ModuleRef:
    """A module, imported by name on arrival."""

    def __init__(self, name: str) -> None:
        self.name = name


class ArgRef:
    """ "The result is the caller's argument number ``index`` (a keyword when a string)."""

    def __init__(self, index: int | str) -> None:
        self.index = index


class Missing:
    """A name the other kernel does not define."""


class Registry:
    """The objects of this kernel that the other kernel holds handles to."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.objects: dict[int, Any] = {}
        self.keys: dict[int, int] = {}

    def handle(self, value: Any) -> Handle:
        key = self.keys.get(id(value))
        if key is None or self.objects.get(key) is not value:
            key = len(self.objects) + 1
            self.objects[key] = value
            self.keys[id(value)] = key
        kind = "function" if callable(value) else "object"
        name = getattr(value, "__qualname__", None) or type(value).__name__
        return Handle(self.owner, key, kind, str(name)[:200])

    def get(self, handle: Handle) -> Any:
        if handle.key not in self.objects:
            raise KernelUnavailable(
                f"{handle.name} no longer exists in the {self.owner} kernel (it was restarted)"
            )
        return self.objects[handle.key]


# --- the classes the referee accepts by value ---------------------------------------------

#: Packages whose classes may arrive in the referee by value (instances are rebuilt without
#: running their ``__init__``; no function of them is ever called by unpickling).
ALLOWED_PACKAGES = ("torch.nn", "course_lib", "torch_pruning")
#: Parts of those packages that are never needed as values.
EXCLUDED_MODULES = (
    "course_lib.grading",
    "course_lib.grader",
    "course_lib.cli",
    "course_lib.paths",
    "course_lib.results",
)


#: numpy globals an array or a numpy scalar needs (a function that only rebuilds arrays).
NUMPY_GLOBALS = frozenset(
    {
        "numpy.core.multiarray._reconstruct",
        "numpy._core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray.scalar",
        "numpy.ndarray",
        "numpy.dtype",
    }
)


def allowed_class(module: str, name: str) -> Any | None:
    """The class ``module.name`` if the referee may rebuild it from a message, else None:
    a class (never a function) of :data:`ALLOWED_PACKAGES`, or what numpy arrays need."""
    full = f"{module}.{name}"
    if full.startswith("numpy.dtypes.") or full in NUMPY_GLOBALS:
        pass
    elif not module.startswith(tuple(p + "." for p in ALLOWED_PACKAGES) + ALLOWED_PACKAGES):
        return None
    elif module.startswith(EXCLUDED_MODULES) and module != __name__:
        return None
    try:
        value: Any = importlib.import_module(module)
        for part in name.split("."):
            value = getattr(value, part)
    except (ImportError, AttributeError):
        return None
    if module == __name__ and value not in (Handle, ModuleRef, ArgRef, Missing):
        return None
    if full in NUMPY_GLOBALS or full.startswith("numpy.dtypes."):
        return value
    return value if isinstance(value, type) else None


def _allowed_globals(data: bytes) -> list[Any]:
    """The globals a message needs beyond torch's own, if all of them are allowed."""
    import torch

    needed = torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(data))
    found = []
    for full in needed:
        module, _, name = full.rpartition(".")
        value = None
        while module and value is None:  # a nested class: module.Outer.Inner
            value = allowed_class(module, name)
            if value is None:
                module, _, outer = module.rpartition(".")
                name = f"{outer}.{name}"
        if value is None:
            raise TransferError(
                f"the student's kernel sent an object of type {full}, which the grader does "
                f"not accept (only PyTorch, numpy and course_lib types travel by value)"
            )
        found.append((value, full))
    return found


def _by_reference_ok(value: type) -> bool:
    """Whether a class can be sent by name to the referee."""
    return allowed_class(value.__module__, value.__qualname__) is value


# --- encoding and decoding -----------------------------------------------------------------

CONTAINERS = (list, tuple, dict, set, frozenset, OrderedDict)


def _is_function(value: Any) -> bool:
    return isinstance(
        value,
        types.FunctionType
        | types.BuiltinFunctionType
        | types.MethodType
        | functools.partial
        | types.BuiltinMethodType,
    )


def _importable(value: Any) -> bool:
    module, name = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
    if not module or not name or module == "__main__" or "<" in name:
        return False
    try:
        target = importlib.import_module(module)
        for part in name.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError):
        return False
    return target is value


class Codec:
    """Turns values into messages and back, for one side (``REFEREE`` or ``STUDENT``)."""

    def __init__(self, side: str, registry: Registry) -> None:
        self.side = side
        self.registry = registry

    # sending
    def dumps(self, value: Any) -> bytes:
        prepared = self._prepare(value)
        try:
            return self._save(prepared)
        except Exception:
            # something inside cannot be pickled (or the referee would refuse it): keep
            # every top-level part that can travel, send the others as handles
            return self._save(self._prepare(value, strict=True))

    def _save(self, prepared: Any) -> bytes:
        import torch

        buffer = io.BytesIO()
        torch.save(prepared, buffer)
        data = buffer.getvalue()
        if self.side == STUDENT:
            _restricted_load(data)  # what the referee would refuse must not be sent
        return data

    def _prepare(self, value: Any, strict: bool = False) -> Any:
        import torch

        if value is None or isinstance(value, bool | int | float | complex | str | bytes):
            return value
        if isinstance(value, Handle | ModuleRef | ArgRef | Missing):
            return value
        if isinstance(value, Proxy):
            return value._handle  # back to the kernel that owns it
        if isinstance(value, types.ModuleType):
            return ModuleRef(value.__name__)
        if type(value) in CONTAINERS:
            if isinstance(value, dict):
                items = {k: self._prepare(v, strict) for k, v in value.items()}
                return OrderedDict(items) if type(value) is OrderedDict else items
            return type(value)(self._prepare(v, strict) for v in value)
        if isinstance(value, torch.Tensor):
            return _tensor_payload(value, keep_grad=self.side == REFEREE)
        if isinstance(value, type):
            by_name = _importable(value) and (self.side == REFEREE or _by_reference_ok(value))
            return value if by_name else self.registry.handle(value)
        if _is_function(value):
            if self.side == REFEREE and _importable(value):
                return value  # a library function: the student kernel imports its own
            return self.registry.handle(value)
        if strict and not self._travels(value):
            return self.registry.handle(value)
        return value

    def _travels(self, value: Any) -> bool:
        try:
            self._save(value)
        except Exception:
            return False
        return True

    # receiving
    def loads(self, data: bytes) -> Any:
        import torch

        if self.side == REFEREE:
            value = _restricted_load(data)
        else:
            value = torch.load(io.BytesIO(data), weights_only=False)
        return self._restore(value)

    def _restore(self, value: Any) -> Any:
        if isinstance(value, Handle):
            if value.owner == self.side:
                return self.registry.get(value)
            return Proxy(value)
        if isinstance(value, ModuleRef):
            return importlib.import_module(value.name)
        if type(value) in CONTAINERS:
            if isinstance(value, dict):
                restored = {k: self._restore(v) for k, v in value.items()}
                return OrderedDict(restored) if type(value) is OrderedDict else restored
            return type(value)(self._restore(v) for v in value)
        return value


def _tensor_payload(tensor: Any, keep_grad: bool) -> Any:
    import torch

    detached = tensor.detach()
    # a view travels as its own values: not its base's whole storage, and never as an
    # expanded tensor whose elements share memory (the receiver may write into it)
    exact = detached.numel() * detached.element_size()
    if exact > MAX_MESSAGE_BYTES:
        # refused before it is copied: an expanded 4-byte view of 3 GB would otherwise be
        # materialized here and kill the student's kernel for memory (issue 21)
        raise TransferError(
            f"a tensor of {exact / 1e9:.1f} GB (shape {tuple(detached.shape)}) cannot be sent "
            f"between the kernels (at most {MAX_MESSAGE_BYTES / 1e6:.0f} MB): return smaller "
            "objects"
        )
    if not detached.is_contiguous() or detached.untyped_storage().nbytes() != exact:
        detached = detached.clone(memory_format=torch.contiguous_format)
    if keep_grad and tensor.requires_grad and detached.is_floating_point():
        return detached.clone().requires_grad_(True)
    return detached


def _restricted_load(data: bytes) -> Any:
    """Unpickle a message without running any code from it: only tensors, containers and
    the classes :func:`allowed_class` accepts (rebuilt without calling ``__init__``)."""
    import torch

    with torch.serialization.safe_globals(_allowed_globals(data)):
        return torch.load(io.BytesIO(data), weights_only=True)


# --- copying the new state of an argument into the caller's object -------------------------

MODULE_STORES = ("_parameters", "_buffers", "_modules")


def sync_into(target: Any, source: Any) -> None:
    """Make ``target`` equal to ``source`` in place (modules keep the identity of their
    submodules and parameters wherever the structure allows it)."""
    import torch

    if target is source or source is None:
        return
    if isinstance(target, torch.nn.Module) and type(target) is type(source):
        _sync_module(target, source)
    elif isinstance(target, torch.Tensor) and isinstance(source, torch.Tensor):
        with torch.no_grad():
            if target.shape == source.shape and target.dtype == source.dtype:
                target.copy_(source)
            else:
                target.data = source.data
    elif isinstance(target, list) and isinstance(source, list):
        target[:] = source
    elif isinstance(target, dict) and isinstance(source, dict):
        target.clear()
        target.update(source)
    elif isinstance(target, set) and isinstance(source, set):
        target.clear()
        target.update(source)


def _sync_module(target: Any, source: Any) -> None:
    import torch

    old_children, new_children = target._modules, source._modules
    for name, child in new_children.items():
        old = old_children.get(name)
        if old is not None and child is not None and type(old) is type(child):
            _sync_module(old, child)
        else:
            old_children[name] = child
    for name in [n for n in old_children if n not in new_children]:
        del old_children[name]
    for store in ("_parameters", "_buffers"):
        old_values, new_values = getattr(target, store), getattr(source, store)
        for name, value in new_values.items():
            old = old_values.get(name)
            same = old is not None and value is not None
            if same and old.shape == value.shape and old.dtype == value.dtype:
                with torch.no_grad():
                    old.data = value.data
                if isinstance(old, torch.nn.Parameter):
                    old.requires_grad_(value.requires_grad)
            else:
                old_values[name] = value
        for name in [n for n in old_values if n not in new_values]:
            del old_values[name]
    for key, value in source.__dict__.items():
        if key not in MODULE_STORES:
            target.__dict__[key] = value
    for key in [k for k in target.__dict__ if k not in source.__dict__]:
        del target.__dict__[key]


def _mutable(value: Any) -> bool:
    import torch

    return isinstance(value, torch.nn.Module | torch.Tensor | list | dict | set)


# --- the connection ------------------------------------------------------------------------


def _send(sock: socket.socket, header: dict, payload: bytes = b"") -> None:
    head = json.dumps({**header, "size": len(payload)}).encode()
    sock.sendall(struct.pack("!I", len(head)) + head + payload)


def _receive_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise KernelUnavailable("the other kernel closed the connection (it died or stopped)")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _receive(sock: socket.socket, limit: int) -> tuple[dict, bytes]:
    (size,) = struct.unpack("!I", _receive_exactly(sock, 4))
    if size > 1 << 20:
        raise TransferError("malformed message header from the other kernel")
    header = json.loads(_receive_exactly(sock, size))
    if not isinstance(header, dict) or not isinstance(header.get("size"), int):
        raise TransferError("malformed message header from the other kernel")
    if header["size"] > limit:
        raise TransferError(
            f"the other kernel sent {header['size']:,} bytes, more than the limit of "
            f"{limit:,}: return smaller objects"
        )
    return header, _receive_exactly(sock, header["size"])


class Session:
    """One connection between the kernels, with requests in both directions (a call from
    the referee may call back into the referee before it returns)."""

    def __init__(self, sock: socket.socket, agent: Agent) -> None:
        self.sock = sock
        self.agent = agent
        self.next_id = 0
        self.graphs: dict[int, tuple[list, list]] = {}
        self.closed = False
        self.limit = MAX_MESSAGE_BYTES if agent.side == REFEREE else 1 << 40

    def request(self, kind: str, header: dict, payload: bytes = b"") -> tuple[dict, bytes]:
        if self.closed:
            raise KernelUnavailable("the connection to the other kernel is closed")
        self.next_id += 1
        request_id = f"{self.agent.side}-{self.next_id}"
        _send(self.sock, {**header, "kind": kind, "id": request_id}, payload)
        while True:
            reply, data = _receive(self.sock, self.limit)
            if reply.get("reply_to") == request_id:
                if reply["kind"] == "error":
                    raise _remote_exception(reply)
                return reply, data
            if reply.get("kind") in ("ok", "error"):
                raise TransferError("the other kernel answered a request it was not asked")
            if reply.get("kind") == "done":
                self.closed = True
                raise KernelUnavailable("the other kernel ended the session during a call")
            self._answer(reply, data)

    def serve_until_done(self) -> None:
        while not self.closed:
            header, data = _receive(self.sock, self.limit)
            if header.get("kind") == "done":
                self.closed = True
                return
            self._answer(header, data)

    def _answer(self, header: dict, data: bytes) -> None:
        try:
            handler = getattr(self, "_on_" + str(header.get("kind")), None)
            if handler is None:
                raise TransferError(f"unknown request {header.get('kind')!r}")
            reply, payload = handler(header, data)
            _send(self.sock, {**reply, "kind": "ok", "reply_to": header.get("id")}, payload)
        except BaseException as error:  # reported to the caller, whatever it is
            described = _describe(error, with_traceback=self.agent.side == STUDENT)
            _send(self.sock, {**described, "kind": "error", "reply_to": header.get("id")})
            if isinstance(error, KeyboardInterrupt | SystemExit):
                raise

    def close(self, send_done: bool = True) -> None:
        if not self.closed and send_done:
            try:
                _send(self.sock, {"kind": "done"})
            except OSError:
                pass
        self.closed = True
        self.graphs.clear()
        try:
            self.sock.close()
        except OSError:
            pass

    # requests from the other kernel
    def _on_call(self, header: dict, data: bytes) -> tuple[dict, bytes]:
        import torch

        codec = self.agent.codec
        target, args, kwargs = codec.loads(data)
        grad_inputs = [args[i] for i in header.get("grad", [])]
        result = target(*args, **kwargs)
        same = _argument_index(result, args, kwargs)
        reply: dict = {}
        positions = _grad_outputs(result) if header.get("grad") else []
        if positions:  # keep the graph: the caller's backward pass comes back here
            outputs = (
                [result] if isinstance(result, torch.Tensor) else [result[i] for i in positions]
            )
            self.graphs[len(self.graphs) + 1] = (outputs, grad_inputs)
            reply["graph"] = len(self.graphs)
            reply["outputs"] = None if isinstance(result, torch.Tensor) else positions
        post = (
            [a if _mutable(a) else None for a in args],
            {k: v for k, v in kwargs.items() if _mutable(v)},
        )
        outcome = ArgRef(same) if same is not None else result
        try:
            return reply, codec.dumps((outcome, post))
        except TransferError as error:
            name = getattr(target, "__qualname__", None) or type(target).__name__
            raise TransferError(f"the result of {name}(): {error}") from None

    def _on_getattr(self, header: dict, data: bytes) -> tuple[dict, bytes]:
        name = str(header.get("name", ""))
        if self.agent.side == REFEREE and name.startswith("_"):
            raise AttributeError(f"{name!r} is not available from the grader's kernel")
        target = self.agent.codec.loads(data)
        return {}, self.agent.codec.dumps(getattr(target, name))

    def _on_fetch(self, header: dict, data: bytes) -> tuple[dict, bytes]:
        agent = self.agent
        key, names = header.get("snapshot"), list(header.get("names") or [])
        if agent.side == REFEREE:  # only what the grader's plan hands out (see serve)
            refused = [n for n in names if n not in agent.allowed_names]
            if refused or (key is not None and key != agent.allowed_snapshot):
                raise PermissionError(f"the grader does not hand out {refused or key!r}")
        if key is not None:
            return {}, agent.snapshots.get(key, agent.codec.dumps({}))
        namespace = agent.namespace()
        values = {name: namespace.get(name, Missing()) for name in names}
        return {}, agent.codec.dumps(values)

    def _on_backward(self, header: dict, data: bytes) -> tuple[dict, bytes]:
        import torch

        outputs, inputs = self.graphs.pop(header["graph"])
        grads = self.agent.codec.loads(data)
        got = torch.autograd.grad(outputs, inputs, grads, allow_unused=True)
        return {}, self.agent.codec.dumps([None if g is None else g.detach() for g in got])


def _grad_outputs(result: Any) -> list[int]:
    """Where gradients can flow back through ``result``: ``[0]`` for a tensor that requires
    grad, the positions of such tensors in a list or tuple, else ``[]``."""
    import torch

    if isinstance(result, torch.Tensor):
        return [0] if result.requires_grad else []
    if type(result) in (list, tuple):
        return [i for i, r in enumerate(result) if isinstance(r, torch.Tensor) and r.requires_grad]
    return []


def _argument_index(result: Any, args: tuple, kwargs: dict) -> int | str | None:
    if result is None or isinstance(result, bool | int | float | str):
        return None
    for index, value in enumerate(args):
        if value is result:
            return index
    for key, value in kwargs.items():
        if value is result:
            return key
    return None


def _describe(error: BaseException, with_traceback: bool) -> dict:
    """An exception as a message. The referee never sends a traceback: its frames would
    show the source lines of the (hidden) tests."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename != __file__]
    if not with_traceback:
        frames = []
    lines = traceback.format_list(frames) + traceback.format_exception_only(error)
    text = ("Traceback (most recent call last):\n" if frames else "") + "".join(lines)
    if len(text) > MAX_TRACEBACK_CHARS:
        text = text[: MAX_TRACEBACK_CHARS // 2] + "\n...\n" + text[-MAX_TRACEBACK_CHARS // 2 :]
    name, module = type(error).__name__, type(error).__module__
    if isinstance(error, RemoteError):  # passed on: keep the original type
        name = error.remote_type
        module = "builtins" if isinstance(getattr(builtins, name, None), type) else "remote"
    return {
        "type": name,
        "module": module,
        "message": str(error)[:MAX_TRACEBACK_CHARS],
        "traceback": text,
        "interrupted": isinstance(error, KeyboardInterrupt),
        "unavailable": isinstance(error, KernelUnavailable),
    }


@functools.cache
def _remote_class(name: str) -> type:
    base = getattr(builtins, name, None)
    if name == "RemoteError" or not (isinstance(base, type) and issubclass(base, Exception)):
        return RemoteError
    return type(name, (RemoteError, base), {"__module__": "remote"})


def _remote_exception(reply: dict) -> RemoteError:
    if reply.get("unavailable"):
        error: RemoteError = KernelUnavailable(str(reply.get("message", "")))
    else:
        name = str(reply.get("type", "Exception"))
        cls = _remote_class(name if reply.get("module") == "builtins" else "RemoteError")
        detail = str(reply.get("traceback", "")).rstrip()
        error = cls(f"{name}: {reply.get('message', '')}\n\n{detail}" if detail else name)
    error.remote_type = str(reply.get("type", "Exception"))
    error.interrupted = bool(reply.get("interrupted"))
    return error


# --- proxies for the other kernel's objects ------------------------------------------------


class Proxy:
    """An object that lives in the other kernel: calling it calls it there."""

    __slots__ = ("_handle",)

    def __init__(self, handle: Handle) -> None:
        object.__setattr__(self, "_handle", handle)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _agent().call(self._handle, args, kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _agent().getattr(self._handle, name)

    def __repr__(self) -> str:
        return f"<{self._handle.name} (in the {self._handle.owner}'s kernel)>"

    def __reduce__(self) -> tuple:
        return (
            Handle,
            (self._handle.owner, self._handle.key, self._handle.kind, self._handle.name),
        )


#: How a call that lost the other kernel names the function it was running (read back by
#: :func:`function_stopped_in`, so that the grader's feedback can name it).
STOPPED_DURING = "during a call of {name}()"


def stopped_during(name: str) -> str:
    """The words :class:`Agent` adds to the error of a call that lost the other kernel."""
    return STOPPED_DURING.format(name=name)


def function_stopped_in(message: str | None) -> str | None:
    """The function named by :func:`stopped_during` in an error message, if any."""
    head, _, tail = STOPPED_DURING.partition("{name}")
    found = re.search(re.escape(head) + r"([\w.<>]+)" + re.escape(tail), message or "")
    return found.group(1) if found else None


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


# --- the agent: one per kernel ----------------------------------------------------------


class Agent:
    """This kernel's end of the link: its registry, its codec and the current session."""

    def __init__(self, side: str, address: str) -> None:
        self.side = side
        self.address = address
        self.registry = Registry(side)
        self.codec = Codec(side, self.registry)
        self.session: Session | None = None
        self.listener: socket.socket | None = None
        self.snapshots: dict[str, bytes] = {}
        self.offline_reason: str | None = None
        self.audit: _AuditHook | None = None
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
        _AGENT.audit = _AuditHook(allowed or [], address, forbidden or [], scratch)
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


# --- what the student kernel tries outside its sandbox ----------------------------------

WATCHED_EVENTS = frozenset(
    {
        "open",
        "os.remove",
        "os.rename",
        "os.rmdir",
        "os.mkdir",
        "os.symlink",
        "os.link",
        "os.chmod",
        "os.chown",
        "os.truncate",
        "shutil.rmtree",
        "socket.connect",
        "socket.bind",
        "socket.sendto",
        "socket.getaddrinfo",
        "sqlite3.connect",
        "subprocess.Popen",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
    }
)
PATH_EVENTS = frozenset({"open", "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.symlink"})
PATH_EVENTS |= {"os.link", "os.chmod", "os.chown", "os.truncate", "shutil.rmtree"}
PATH_EVENTS |= {"sqlite3.connect"}
MAX_AUDIT_EVENTS = 200


class _AuditHook:
    """Reports (on the kernel's stderr, read by the grader) every attempt to touch a path
    outside the sandbox's folders, to use the network, to start a program or to signal a
    process. The sandbox is what stops them; this says who tried."""

    def __init__(
        self, allowed: list[str], address: str, forbidden: list[str] = (), scratch: str = "/tmp"
    ) -> None:
        self.bound = tuple(os.path.abspath(a) for a in allowed)
        self.scratch = (os.getcwd(), os.path.abspath(scratch))
        self.allowed = (*self.bound, *self.scratch)
        self.forbidden = tuple(os.path.abspath(f) for f in forbidden)
        self.address = address
        self.count = 0
        self.busy = False
        self.armed = False
        self.fd = int(os.environ.get("COURSE_GRADER_AUDIT_FD", "2"))

    def __call__(self, event: str, args: tuple) -> None:
        if not self.armed or event not in WATCHED_EVENTS or self.busy:
            return
        if self.count >= MAX_AUDIT_EVENTS:
            return
        self.busy = True
        try:
            detail = self._detail(event, args)
            if detail is not None:
                self.count += 1
                record = {"event": event, "detail": detail[:300]}
                os.write(self.fd, (AUDIT_PREFIX + json.dumps(record) + "\n").encode())
        except Exception:
            pass
        finally:
            self.busy = False

    def _detail(self, event: str, args: tuple) -> str | None:
        if event in PATH_EVENTS:
            path = args[0] if args else None
            if isinstance(path, bytes):
                path = os.fsdecode(path)
            if not isinstance(path, str):
                return None
            full = os.path.abspath(path)
            writing = event != "open" or _opens_for_writing(args)
            if full.startswith(self.forbidden) and not full.startswith(self.bound):
                return f"{'write' if writing else 'read'} {full}"  # the course, wherever it is
            inside = full.startswith(self.allowed) or full.startswith(("/proc/", "/dev/", "/sys/"))
            writable = full.startswith(self.scratch)
            if (writing and not writable) or not inside:
                mode = "write" if writing else "read"
                return f"{mode} {full}"
            return None
        if event.startswith("socket."):
            address = args[1] if len(args) > 1 else None
            if event == "socket.getaddrinfo":
                address = args[0] if args else None
            if _local(address, self.address):
                return None
            return f"{event} {address!r}"
        return f"{event} {args[0]!r}"[:300] if args else event


def _local(address: Any, own_socket: str) -> bool:
    """A loopback address (only the sandbox itself is there) or the grader's own socket."""
    if isinstance(address, tuple) and address:
        address = address[0]
    if isinstance(address, bytes):
        address = address.decode(errors="replace")
    if not isinstance(address, str):
        return address is None
    loopback = address.startswith("127.") or address in ("", "::1", "localhost", "0.0.0.0", "::")
    return loopback or address == own_socket


def _opens_for_writing(args: tuple) -> bool:
    mode = args[1] if len(args) > 1 else "r"
    flags = args[2] if len(args) > 2 else 0
    if isinstance(mode, str) and any(c in mode for c in "wax+"):
        return True
    return isinstance(flags, int) and bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))


CallableT = Callable[..., Any]

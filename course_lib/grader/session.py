"""One connection between the grader's two kernels (see :mod:`.agent`): length-prefixed
messages on a unix socket, with requests in both directions (a call from the referee may
call back into the referee before it returns).

A request is a JSON header (``kind``: ``call``, ``getattr``, ``fetch``, ``backward``) and a
payload made by the :class:`~.codec.Codec`; the answer is ``ok`` or ``error`` (an exception
as :func:`~.proxy.describe` writes it); ``done`` ends the session.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any, Protocol

from .codec import MAX_MESSAGE_BYTES, REFEREE, STUDENT, ArgRef, Codec, Missing, mutable
from .proxy import KernelUnavailable, TransferError, describe, remote_exception


class Endpoint(Protocol):
    """What a session needs of its kernel's end of the link (an :class:`~.agent.Agent`)."""

    side: str
    codec: Codec
    snapshots: dict[str, bytes]
    allowed_names: frozenset[str]
    allowed_snapshot: str | None

    def namespace(self) -> dict: ...


# --- framing -----------------------------------------------------------------------------


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

    def __init__(self, sock: socket.socket, agent: Endpoint) -> None:
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
                    raise remote_exception(reply)
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
            described = describe(error, with_traceback=self.agent.side == STUDENT)
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
            [a if mutable(a) else None for a in args],
            {k: v for k, v in kwargs.items() if mutable(v)},
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

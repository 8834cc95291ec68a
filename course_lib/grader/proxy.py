"""The other kernel's objects and errors as this kernel sees them (see :mod:`.agent`).

An object that cannot travel by value stays in its kernel and travels as a :class:`Handle`;
on arrival it becomes a :class:`Proxy`, and calling the proxy calls the object where it
lives. An exception raised over there comes back as a :class:`RemoteError`, with its
built-in type (``ValueError``, ...) when it has one and the student's traceback in the
message (the referee never sends its own: it would show the hidden tests).
"""

from __future__ import annotations

import builtins
import functools
import os
import re
import traceback
from collections.abc import Callable
from typing import Any, Protocol

#: Longest student traceback kept in an error message (characters).
MAX_TRACEBACK_CHARS = 6000
#: The link's own code: its frames are left out of the tracebacks it sends.
LINK_FOLDER = os.path.dirname(os.path.abspath(__file__))


class RemoteError(Exception):
    """An exception raised in the other kernel (its type name and traceback in the message)."""

    remote_type = "Exception"
    interrupted = False


class KernelUnavailable(RemoteError):
    """The other kernel died, was stopped, or never answered."""


class TransferError(RemoteError):
    """A value could not be sent between the kernels."""


class Handle:
    """A reference to an object that stays in the kernel ``owner``."""

    def __init__(self, owner: str, key: int, kind: str, name: str) -> None:
        self.owner, self.key, self.kind, self.name = owner, key, kind, name


class Link(Protocol):
    """What a proxy asks of this kernel's end of the link (an :class:`~.agent.Agent`)."""

    def call(self, handle: Handle, args: tuple, kwargs: dict) -> Any: ...

    def getattr(self, handle: Handle, name: str) -> Any: ...


def not_connected() -> Link:
    """The link of a kernel that no grader started."""
    raise KernelUnavailable("this kernel is not connected to a grader")


class Proxy:
    """An object that lives in the other kernel: calling it calls it there, through the
    link that ``link()`` returns at the time of the call."""

    __slots__ = ("_handle", "_link")

    def __init__(self, handle: Handle, link: Callable[[], Link] = not_connected) -> None:
        object.__setattr__(self, "_handle", handle)
        object.__setattr__(self, "_link", link)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._link().call(self._handle, args, kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._link().getattr(self._handle, name)

    def __repr__(self) -> str:
        return f"<{self._handle.name} (in the {self._handle.owner}'s kernel)>"

    def __reduce__(self) -> tuple:
        return (
            Handle,
            (self._handle.owner, self._handle.key, self._handle.kind, self._handle.name),
        )


def handle_of(proxy: Proxy) -> Handle:
    """The handle a proxy stands for (sent back to the kernel that owns the object)."""
    return proxy._handle


# --- exceptions between the kernels ------------------------------------------------------


def describe(error: BaseException, with_traceback: bool) -> dict:
    """An exception as a message. The referee never sends a traceback: its frames would
    show the source lines of the (hidden) tests."""
    frames = traceback.extract_tb(error.__traceback__)
    frames = [f for f in frames if os.path.dirname(os.path.abspath(f.filename)) != LINK_FOLDER]
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


def remote_exception(reply: dict) -> RemoteError:
    """The exception a message from :func:`describe` stands for, raised here."""
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


#: How a call that lost the other kernel names the function it was running (read back by
#: :func:`function_stopped_in`, so that the grader's feedback can name it).
STOPPED_DURING = "during a call of {name}()"


def stopped_during(name: str) -> str:
    """The words :class:`~.agent.Agent` adds to the error of a call that lost the other
    kernel."""
    return STOPPED_DURING.format(name=name)


def function_stopped_in(message: str | None) -> str | None:
    """The function named by :func:`stopped_during` in an error message, if any."""
    head, _, tail = STOPPED_DURING.partition("{name}")
    found = re.search(re.escape(head) + r"([\w.<>]+)" + re.escape(tail), message or "")
    return found.group(1) if found else None

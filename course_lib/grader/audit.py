"""What the student's kernel tries outside its sandbox: an audit hook (``sys.addaudithook``)
that the link (:func:`~.agent.start`) installs there writes one line per attempt, prefixed
with :data:`AUDIT_PREFIX`, to a file descriptor the grader reads (:mod:`.kernels`).
"""

from __future__ import annotations

import json
import os
from typing import Any

AUDIT_PREFIX = "COURSE-GRADER-AUDIT "

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


class AuditHook:
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

"""The operating-system sandbox that student code runs in while it is graded.

What this machine offers is detected once (:func:`detect`), the strongest of it is used,
and :meth:`Protections.describe` says at the start of every run which protections are
active. From strongest to weakest:

- **bubblewrap** (``bwrap``): private mount, PID, network, IPC and UTS namespaces. The
  kernel sees the Python environment, ``course_lib``, the checkpoints, results and data
  (all read-only) and its own working folder (read-write) and nothing else: not the
  course directory (``source/``, ``gradebook.db``, other students), not the instructor's
  home; no network at all (a private namespace with only loopback);
- **an unprivileged user** per kernel (when the grader runs as root): ``setpriv`` drops to
  a uid of its own, so the kernel cannot write a file it does not own, and the process
  limit counts only its own processes;
- **cgroups** (v2, or v1 ``memory``/``pids``) when writable: memory (resident, page cache
  and tmpfs included) and process limits per kernel, and the grader learns that a kernel
  was killed for memory;
- **resource limits** (``setrlimit``, always on Linux and macOS): CPU seconds, address
  space (when no memory cgroup), processes, size of one file, open files.

The kernel command is wrapped as ``python -m course_lib.grader.sandbox <spec> -- bwrap ...
-- setpriv ... -- python -m ipykernel_launcher ...``: the first step joins the cgroups, sets
the limits and closes every inherited file descriptor before anything of the student's
runs.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: First uid of the unprivileged users that kernels run as (when the grader is root); each
#: kernel gets its own (see :func:`kernel_uid`). Far above ordinary and container uids.
UID_BASE = 1_800_000_000
#: Where a kernel's working folder appears inside the sandbox.
INSIDE_HOME = "/home/student"
GIB = 1024**3
#: ``COURSE_GRADING_SANDBOX=none`` switches bubblewrap off (to try the fallback).
SWITCH_ENV = "COURSE_GRADING_SANDBOX"
#: The resource limits the launcher sets, when the platform lets it.
RLIMITS = ("RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_AS", "RLIMIT_NPROC")
#: What of the system a kernel sees (read-only): programs and libraries, the loader's cache,
#: the fonts' configuration (matplotlib), the time zone. Not the rest of /etc.
SYSTEM_FILES = (
    "usr",
    "etc/alternatives",
    "etc/ld.so.cache",
    "etc/ld.so.conf",
    "etc/ld.so.conf.d",
    "etc/fonts",
    "etc/localtime",
)
#: The descriptor on which the kernel reports to the grader (its stderr pipe): fd 1 and 2
#: are captured into cell outputs by ipykernel.
AUDIT_FD = 3


@dataclass(frozen=True)
class Limits:
    """Resources of one kernel. Memory in bytes (resident memory with a memory cgroup, else
    address space), CPU time in seconds (all cells together), file size in bytes."""

    memory_bytes: int = 4 * GIB
    processes: int = 512
    cpu_seconds: int = 4 * 3600
    file_bytes: int = 1 * GIB
    open_files: int = 1024


def parse_bytes(text: str) -> int:
    """``"4G"``, ``"512M"``, ``"1.5GiB"`` or a plain number of bytes -> bytes."""
    value = text.strip().upper().removesuffix("IB").removesuffix("B")
    units = {"K": 1024, "M": 1024**2, "G": GIB, "T": 1024**4}
    try:
        if value and value[-1] in units:
            return int(float(value[:-1]) * units[value[-1]])
        return int(value)
    except ValueError:
        raise ValueError(f"not a size: {text!r} (use e.g. 4G, 512M or a number of bytes)") from None


# --- detection ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Cgroups:
    """Writable cgroup folders under which a kernel's own cgroup can be made."""

    version: int
    memory: str | None  # parent folder of the memory cgroups (v1), or the v2 parent
    pids: str | None

    def make(self, name: str, limits: Limits) -> list[str]:
        """Create the cgroups of one kernel with ``limits``; returns their folders."""
        if self.version == 2:
            folder = Path(self.memory or self.pids or "") / name
            folder.mkdir(exist_ok=True)
            _write_all(folder, {"memory.max": limits.memory_bytes, "memory.swap.max": 0})
            _write_all(folder, {"pids.max": limits.processes})
            return [str(folder)]
        folders = []
        if self.memory:
            folder = Path(self.memory) / name
            folder.mkdir(exist_ok=True)
            # v1 needs the memory limit first, then memory+swap (at least as large)
            _write_all(folder, {"memory.limit_in_bytes": limits.memory_bytes})
            _write_all(folder, {"memory.memsw.limit_in_bytes": limits.memory_bytes})
            folders.append(str(folder))
        if self.pids:
            folder = Path(self.pids) / name
            folder.mkdir(exist_ok=True)
            _write_all(folder, {"pids.max": limits.processes})
            folders.append(str(folder))
        return folders


def _write_all(folder: Path, files: dict[str, int]) -> None:
    """Write each limit that this kernel's cgroup version has (others are skipped)."""
    for name, value in files.items():
        path = folder / name
        if path.exists():
            try:
                path.write_text(str(value))
            except OSError:  # e.g. memsw accounting switched off in the running kernel
                if name.startswith(("memory.limit", "memory.max", "pids")):
                    raise


def memory_limit_hit(folders: Sequence[str]) -> bool:
    """Whether a kernel's memory cgroup killed a process for memory (v2 ``memory.events``,
    v1 ``memory.oom_control``)."""
    for folder in folders:
        for name in ("memory.events", "memory.oom_control"):
            path = Path(folder) / name
            if path.exists():
                counts = dict(line.split()[:2] for line in path.read_text().splitlines() if line)
                if int(counts.get("oom_kill", 0)):
                    return True
    return False


def remove_cgroups(folders: Sequence[str]) -> None:
    for folder in folders:
        try:
            os.rmdir(folder)
        except OSError:
            pass


def _own_cgroup_folders() -> dict[str, Path]:
    """controller -> the folder of this process's cgroup ("memory", "pids" of cgroup v1,
    and "" for the v2 hierarchy), from ``/proc/self/mountinfo`` and ``/proc/self/cgroup``."""
    mounts: dict[str, tuple[Path, str]] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, described = left.split(), right.split()
        if len(fields) < 5 or len(described) < 3:
            continue
        root, mount_point, fstype, options = fields[3], fields[4], described[0], described[2]
        if fstype == "cgroup2":
            mounts.setdefault("", (Path(mount_point), root))
        elif fstype == "cgroup":
            for controller in ("memory", "pids"):
                if controller in options.split(","):
                    mounts[controller] = (Path(mount_point), root)
    folders = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            if controller in mounts:
                mount_point, root = mounts[controller]
                relative = os.path.relpath(path, root) if path.startswith(root) else path
                folders[controller] = (mount_point / relative.lstrip("/")).resolve()
    return folders


def _probe_cgroups() -> Cgroups | None:
    """The cgroups this process may create and limit, found by trying."""
    if platform.system() != "Linux":
        return None
    try:
        folders = _own_cgroup_folders()
    except (OSError, ValueError):
        return None
    probe = f"course-grading-probe-{os.getpid()}"
    v2 = folders.get("")
    if v2 is not None:
        controllers = (
            (v2 / "cgroup.subtree_control").read_text().split()
            if (v2 / "cgroup.subtree_control").exists()
            else []
        )
        if {"memory", "pids"} <= set(controllers) and _try_make(v2 / probe, "memory.max"):
            return Cgroups(2, str(v2), str(v2))
    memory = folders.get("memory")
    pids = folders.get("pids")
    memory_ok = memory is not None and _try_make(memory / probe, "memory.limit_in_bytes")
    pids_ok = pids is not None and _try_make(pids / probe, "pids.max")
    if memory_ok or pids_ok:
        return Cgroups(1, str(memory) if memory_ok else None, str(pids) if pids_ok else None)
    return None


def _try_make(folder: Path, limit_file: str) -> bool:
    try:
        folder.mkdir()
    except OSError:
        return False
    try:
        (folder / limit_file).write_text("100" if limit_file == "pids.max" else str(GIB))
        return True
    except OSError:
        return False
    finally:
        try:
            folder.rmdir()
        except OSError:
            pass


@dataclass(frozen=True)
class Protections:
    """What this machine lets the grader use (see the module docstring)."""

    system: str
    bwrap: str | None
    bwrap_version: str | None
    setpriv: str | None
    root: bool
    cgroups: Cgroups | None
    rlimits: tuple[str, ...]  # the resource limits a child process can set here
    problems: tuple[str, ...] = ()

    @property
    def namespaces(self) -> bool:
        return self.bwrap is not None

    @property
    def own_user(self) -> bool:
        return self.root and self.setpriv is not None

    def describe(self, limits: Limits, timeout: int | None = None) -> list[str]:
        """One line per protection, active or not, for the start of a grading run."""
        gib = limits.memory_bytes / GIB
        lines = []
        if self.namespaces:
            lines.append(
                f"filesystem: isolated ({self.bwrap_version}); student code reads only the "
                f"Python environment, course_lib, checkpoints, results and data, and writes "
                f"only its own working folder"
            )
            lines.append("network: none (a private network namespace)")
            lines.append("processes: a private PID namespace (cannot see or signal the grader)")
        else:
            lines.append(
                "filesystem: NOT isolated (no bubblewrap): student code runs with the "
                "grader's view of the disk"
            )
            lines.append("network: NOT isolated (no bubblewrap)")
        if self.own_user:
            lines.append("user: one unprivileged uid per kernel (setpriv)")
        elif self.root:
            lines.append("user: NOT separated (setpriv missing): kernels run as root")
        if self.cgroups and self.cgroups.memory:
            lines.append(f"memory: {gib:.1f} GiB per kernel (cgroup v{self.cgroups.version})")
        elif "RLIMIT_AS" in self.rlimits:
            lines.append(f"memory: {gib:.1f} GiB of address space per kernel (RLIMIT_AS)")
        else:
            lines.append("memory: NOT limited (no memory cgroup, RLIMIT_AS not settable)")
        processes = (
            f"cgroup v{self.cgroups.version}"
            if self.cgroups and self.cgroups.pids
            else "RLIMIT_NPROC"
            if self.own_user and "RLIMIT_NPROC" in self.rlimits
            else None
        )
        if processes:
            lines.append(f"processes: at most {limits.processes} per kernel ({processes})")
        cpu = (
            f"{limits.cpu_seconds} s per kernel (RLIMIT_CPU)"
            if "RLIMIT_CPU" in self.rlimits
            else ""
        )
        cell = f"{timeout} s per cell (timeout)" if timeout else ""
        files = (
            f"files: {limits.file_bytes / GIB:.1f} GiB each (RLIMIT_FSIZE)"
            if "RLIMIT_FSIZE" in self.rlimits
            else ""
        )
        if cpu or cell:
            lines.append(
                "cpu: " + ", ".join(x for x in (cpu, cell) if x) + (f"; {files}" if files else "")
            )
        return lines

    def warnings(self) -> list[str]:
        """What is missing, and how to get it."""
        missing = []
        if not self.namespaces:
            how = (
                "install bubblewrap (apt-get install bubblewrap)"
                if self.system == "Linux"
                else "grade on Linux with bubblewrap, or in a container"
            )
            missing.append(
                "student code is NOT isolated from the course directory, the network or "
                f"other students' files: {how}."
            )
        if self.root and not self.setpriv:
            missing.append("kernels run as root: install util-linux (setpriv).")
        return missing + list(self.problems)


@functools.cache
def detect() -> Protections:
    """The protections of this machine (probed once per process)."""
    system = platform.system()
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    problems = []
    bwrap = shutil.which("bwrap") if system == "Linux" else None
    version = None
    if bwrap:
        version, problem = _probe_bwrap(bwrap, root)
        if problem:
            problems.append(f"bubblewrap is installed but cannot make a sandbox here: {problem}")
            bwrap = None
    if bwrap and os.environ.get(SWITCH_ENV) == "none":
        problems.append(f"bubblewrap is switched off ({SWITCH_ENV}=none)")
        bwrap = None
    setpriv = shutil.which("setpriv") if root and system == "Linux" else None
    cgroups = _probe_cgroups() if root else None
    rlimits = _probe_rlimits()
    return Protections(system, bwrap, version, setpriv, root, cgroups, rlimits, tuple(problems))


def _probe_rlimits() -> tuple[str, ...]:
    """The resource limits a child process manages to set here (macOS refuses some)."""
    probe = (
        "import json, resource\n"
        "ok = []\n"
        f"for name in {list(RLIMITS)!r}:\n"
        "    which = getattr(resource, name, None)\n"
        "    try:\n"
        "        soft, hard = resource.getrlimit(which)\n"
        "        value = 1 << 40 if hard == resource.RLIM_INFINITY else hard\n"
        "        resource.setrlimit(which, (value, value))\n"
        "        ok.append(name)\n"
        "    except (TypeError, ValueError, OSError):\n"
        "        pass\n"
        "print(json.dumps(ok))\n"
    )
    try:
        run = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30
        )
        return tuple(json.loads(run.stdout))
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return ()


def _probe_bwrap(bwrap: str, root: bool) -> tuple[str | None, str | None]:
    """(version, None) when bwrap can build the sandbox used for kernels, else (None, why)."""
    try:
        version = subprocess.run(
            [bwrap, "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        probe = [bwrap, *_namespace_flags(root), "--ro-bind", "/", "/", "--proc", "/proc"]
        run = subprocess.run(
            [*probe, "--dev", "/dev", "true"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return None, str(error)
    if run.returncode != 0:
        return None, (run.stderr.strip() or f"exit status {run.returncode}")[:300]
    return version or "bubblewrap", None


def _namespace_flags(root: bool) -> list[str]:
    flags = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts"]
    flags += ["--unshare-cgroup-try", "--die-with-parent", "--new-session"]
    if not root:  # an unprivileged bwrap needs a user namespace
        flags.append("--unshare-user")
    return flags


# --- one kernel's sandbox ----------------------------------------------------------------


def kernel_uid(slot: int) -> int:
    """A uid of its own for kernel ``slot`` of this process (root only)."""
    return UID_BASE + (os.getpid() % 100_000) * 8 + slot


@dataclass
class Sandbox:
    """How one kernel runs: its folders, what it may read, its limits and its user.

    ``work`` (its working folder) and ``writable`` folders (given to the kernel's user) and
    ``shared`` ones (left to their owner) are bound read-write at the same path, except
    ``work``, which appears as ``INSIDE_HOME/<name>``; ``readable`` folders are bound
    read-only; ``hidden`` folders are covered by an empty one (the course
    directory, in case a readable folder contains it).
    """

    work: Path
    tmp: Path
    readable: list[Path]
    writable: list[Path] = field(default_factory=list)
    shared: list[Path] = field(default_factory=list)
    hidden: list[Path] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    uid: int | None = None
    name: str = "work"
    protections: Protections = field(default_factory=detect)
    cgroup_folders: list[str] = field(default_factory=list)

    @property
    def cwd(self) -> str:
        """The kernel's working folder as the kernel sees it."""
        return f"{INSIDE_HOME}/{self.name}" if self.protections.namespaces else str(self.work)

    def prepare(self, cgroup_name: str) -> None:
        """Create the folders (owned by the kernel's user) and the cgroups."""
        for folder in (self.work, self.tmp, *self.writable):
            folder.mkdir(parents=True, exist_ok=True)
            if self.uid is not None:
                os.chown(folder, self.uid, self.uid)
        if self.protections.cgroups and not self.cgroup_folders:
            self.cgroup_folders = self.protections.cgroups.make(cgroup_name, self.limits)

    def give(self, path: Path) -> None:
        """Let the kernel's user read ``path`` (a file the grader wrote for it)."""
        if self.uid is not None:
            os.chown(path, self.uid, self.uid)

    def release(self) -> bool:
        """Remove the cgroups; returns whether the memory limit was hit."""
        hit = memory_limit_hit(self.cgroup_folders)
        remove_cgroups(self.cgroup_folders)
        self.cgroup_folders = []
        return hit

    def inside_env(self) -> dict[str, str]:
        home = "/tmp" if self.protections.namespaces else str(self.tmp)
        env = {
            "HOME": home,
            "USER": "student",
            "LANG": "C.UTF-8",
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "MPLCONFIGDIR": f"{home}/matplotlib",
            "IPYTHONDIR": f"{home}/ipython",
            "JUPYTER_RUNTIME_DIR": f"{home}/jupyter",
            "TMPDIR": home,
            "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
            "COURSE_GRADER_AUDIT_FD": str(AUDIT_FD),
        }
        env.update(self.env)
        return env

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` wrapped: limits, then the namespaces, then the kernel's own user."""
        inner = list(argv)
        if self.uid is not None and self.protections.setpriv:
            inner = [
                self.protections.setpriv,
                f"--reuid={self.uid}",
                f"--regid={self.uid}",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--no-new-privs",
                "--",
                *inner,
            ]
        if self.protections.namespaces:
            inner = [self.protections.bwrap, *self._bwrap_arguments(), "--", *inner]
        spec = {
            "limits": asdict(self.limits),
            "cgroups": self.cgroup_folders,
            "address_space": not (self.protections.cgroups and self.protections.cgroups.memory),
            "count_processes": self.uid is not None,
            "rlimits": list(self.protections.rlimits),
            "env": None if self.protections.namespaces else self.inside_env(),
            "cwd": None if self.protections.namespaces else str(self.work),
        }
        return [sys.executable, "-m", "course_lib.grader.sandbox", json.dumps(spec), "--", *inner]

    def _bwrap_arguments(self) -> list[str]:
        arguments = _namespace_flags(self.protections.root)
        if self.uid is not None and self.protections.setpriv:
            arguments += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        made: set[str] = set()

        def parents(target: str) -> list[str]:
            steps = []
            for parent in reversed(Path(target).parents):
                text = str(parent)
                if text != "/" and text not in made and not Path(text).is_symlink():
                    made.add(text)
                    steps += ["--perms", "0755", "--dir", text]
            return steps

        for name in SYSTEM_FILES:
            if Path("/", name).exists():
                arguments += [*parents("/" + name), "--ro-bind", "/" + name, "/" + name]
        for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            path = Path("/", name)
            if path.is_symlink():
                arguments += ["--symlink", os.readlink(path), str(path)]
            elif path.is_dir():
                arguments += ["--ro-bind", str(path), str(path)]
        # the private /tmp first: a course or Python environment that lives under /tmp is
        # then bound on top of it (bubblewrap applies the mounts in order)
        arguments += ["--bind", str(self.tmp), "/tmp"]
        for folder in _outermost(self.readable):
            arguments += [*parents(str(folder)), "--ro-bind", str(folder), str(folder)]
        for folder in self.hidden:
            if any(folder.is_relative_to(r) for r in self.readable):
                arguments += ["--tmpfs", str(folder)]
        arguments += ["--proc", "/proc", "--dev", "/dev"]
        for folder in [*self.writable, *self.shared]:
            arguments += [*parents(str(folder)), "--bind", str(folder), str(folder)]
        arguments += [*parents(self.cwd), "--bind", str(self.work), self.cwd, "--chdir", self.cwd]
        arguments += ["--clearenv"]
        for key, value in self.inside_env().items():
            arguments += ["--setenv", key, value]
        return arguments


def _outermost(folders: Sequence[Path]) -> list[Path]:
    """``folders`` that exist, without those inside another one of them."""
    existing = sorted({Path(f).resolve() for f in folders if Path(f).exists()}, key=str)
    kept: list[Path] = []
    for folder in existing:
        if not any(folder.is_relative_to(k) for k in kept):
            kept.append(folder)
    return kept


def python_environment() -> list[Path]:
    """What a kernel needs to start Python and import the course's packages: the prefixes
    and every folder on ``sys.path`` (except the current one)."""
    folders = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix)}
    folders |= {Path(entry) for entry in sys.path if entry and Path(entry).is_dir()}
    folders.discard(Path.cwd())
    return sorted(folders, key=str)


# --- the launcher: runs before the sandbox, in the kernel's process ------------------------


def _apply_limits(spec: dict) -> None:
    import resource

    limits = Limits(**spec["limits"])
    pid = str(os.getpid())
    for folder in spec["cgroups"]:
        Path(folder, "cgroup.procs").write_text(pid)
    values = {
        "RLIMIT_CPU": limits.cpu_seconds,
        "RLIMIT_FSIZE": limits.file_bytes,
        "RLIMIT_NOFILE": limits.open_files,
        "RLIMIT_AS": limits.memory_bytes if spec["address_space"] else None,
        "RLIMIT_NPROC": limits.processes if spec["count_processes"] else None,
    }
    for name in spec["rlimits"]:
        which, value = getattr(resource, name, None), values.get(name)
        if which is None or value is None:
            continue
        _, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))


def launch(argv: Sequence[str]) -> None:
    """``python -m course_lib.grader.sandbox <spec json> -- command...``: join the cgroups,
    set the limits, close inherited descriptors, then become ``command``."""
    if len(argv) < 3 or argv[1] != "--":
        raise SystemExit("usage: python -m course_lib.grader.sandbox SPEC -- COMMAND...")
    spec = json.loads(argv[0])
    command = list(argv[2:])
    _apply_limits(spec)
    os.dup2(2, AUDIT_FD)  # the grader's pipe, which the kernel does not capture
    os.closerange(AUDIT_FD + 1, 65536)
    if spec["cwd"]:
        os.chdir(spec["cwd"])
    env = spec["env"] if spec["env"] is not None else dict(os.environ)
    os.execvpe(command[0], command, env)


if __name__ == "__main__":
    launch(sys.argv[1:])

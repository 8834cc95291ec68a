"""The results contract: full-profile runs write ``results/<chapter>.json`` with provenance.

Top-level keys: ``profile``, ``command`` (the exact command that regenerates the file),
``commit``, ``date`` (UTC, ISO 8601), ``wall_time_s``, ``machine`` (CPU model, cores,
torch version, ...) and ``metrics``. Quick-profile runs never write here.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path

import torch

from . import paths

COMMAND_ENV = "COURSE_COMMAND"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """What the numbers were measured on."""
    import numpy as np
    import onnxruntime

    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "onnxruntime": onnxruntime.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import torch_pruning

        info["torch_pruning"] = torch_pruning.__version__
    except ImportError:
        pass
    return info


def git_commit() -> str:
    """The checked-out commit, with ``-dirty`` when tracked files have changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=paths.REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=paths.REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def default_command(notebook: str) -> str:
    """The command recorded in results: ``$COURSE_COMMAND`` (set by ``course run``) or the
    equivalent ``course run`` call."""
    return os.environ.get(COMMAND_ENV) or f"course run {notebook} --profile full"


def save_results(
    chapter: str,
    profile: str,
    metrics: dict,
    wall_time_s: float,
    command: str,
    commit: str | None = None,
) -> Path | None:
    """Write ``results/<chapter>.json`` for a full-profile run; do nothing for ``quick``.
    ``commit``: the code the run started from (default: :func:`git_commit` now, which a run
    that rewrites tracked files, e.g. its checkpoints, marks ``-dirty``).

    Returns the path written, or ``None`` when the profile is not ``full``.
    """
    if profile != "full":
        return None
    record = {
        "profile": profile,
        "command": command,
        "commit": commit or git_commit(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "wall_time_s": round(wall_time_s, 1),
        "machine": machine_info(),
        "metrics": metrics,
    }
    path = paths.RESULTS_DIR / f"{chapter}.json"
    with paths.atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=False) + "\n")
    return path


def load_results(chapter: str, folder: Path | None = None) -> dict | None:
    """The saved full-profile results of ``chapter`` (in ``folder``, default
    ``results/``), or ``None`` if there are none yet."""
    path = Path(folder or paths.RESULTS_DIR) / f"{chapter}.json"
    return json.loads(path.read_text()) if path.exists() else None

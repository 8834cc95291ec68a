"""Where the course keeps things, and the one way it writes a file safely.

- ``results/<chapter>.json``: full-profile results with provenance (:mod:`.results`);
- ``checkpoints/<name>``: small committed checkpoints the course trained itself;
- ``runs/<profile>/``: scratch output (executed notebooks, quick-run checkpoints, caches).

Quick runs write only under ``runs/``, so they can never overwrite committed files.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "results"
CHECKPOINT_DIR = REPO_ROOT / "checkpoints"
RUNS_DIR = REPO_ROOT / "runs"
NOTEBOOK_DIR = REPO_ROOT / "notebooks"

BASELINE_CHECKPOINT = "baseline_cnn.pt"
"""Chapter 1's trained BaselineCNN: the starting point of the pruning chapters."""


def output_dir(profile: str) -> Path:
    """Where a run of ``profile`` writes checkpoints: the committed ``checkpoints/`` for
    ``full``, the scratch ``runs/<profile>/`` otherwise (created if missing)."""
    folder = CHECKPOINT_DIR if profile == "full" else RUNS_DIR / profile
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def checkpoint(name: str, profile: str) -> Path:
    """The checkpoint ``name`` as a run of ``profile`` should read it: the committed
    ``checkpoints/<name>``; a quick run without it falls back to ``runs/quick/<name>``
    (written by a quick run of the chapter that makes it)."""
    committed = CHECKPOINT_DIR / name
    if profile == "full" or committed.exists():
        return committed
    return RUNS_DIR / profile / name


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Write to a temporary sibling of ``path`` inside the block, then rename it over
    ``path``: readers see the old file or the new one, never a half-written one. On an
    exception the temporary file is removed and ``path`` is untouched.

    >>> with atomic_path("results/x.json") as tmp:  # doctest: +SKIP
    ...     tmp.write_text("{}")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

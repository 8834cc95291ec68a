"""The points of each nbgrader assignment, read from its source notebook (never typed in)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nbformat

from ..paths import REPO_ROOT

SOURCE_DIR = REPO_ROOT / "assignments" / "source"


@dataclass(frozen=True)
class Points:
    name: str
    auto: float  # test cells, scored by the autograder
    manual: float  # written answers, scored by the instructor

    @property
    def total(self) -> float:
        return self.auto + self.manual


def points(notebook: Path) -> Points:
    """Split the graded cells of an nbgrader source notebook: a graded cell that is not a
    solution is a test (auto-graded); a graded markdown solution or a task is written work
    (graded by hand); a graded code solution is auto-graded."""
    nb = nbformat.read(notebook, as_version=4)
    auto = manual = 0.0
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not (meta.get("grade") or meta.get("task")):
            continue
        written = meta.get("task") or (meta.get("solution") and cell.cell_type == "markdown")
        if written:
            manual += float(meta.get("points", 0))
        else:
            auto += float(meta.get("points", 0))
    return Points(Path(notebook).stem, auto, manual)


def all_points(folder: Path = SOURCE_DIR) -> list[Points]:
    """Every assignment ``<folder>/<name>/<name>.ipynb``, by name."""
    found = sorted(p for p in Path(folder).glob("*/*.ipynb") if p.stem == p.parent.name)
    if not found:
        raise FileNotFoundError(f"no nbgrader assignment in {folder} (<name>/<name>.ipynb)")
    return [points(p) for p in found]

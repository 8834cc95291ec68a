"""Grading through Ray on one machine: what the cluster path costs, and what a class costs.

The same six submissions of an assignment (three with the instructor's solutions, three
untouched student versions) are graded twice in fresh copies of one course, with the same
two CPUs: by ``course grade run`` with two local workers, and by ``course grade run --ray``
on a local Ray cluster of two one-CPU nodes (``ray start``, started before the timing and
stopped at the end). It prints both wall times, their ratio (the cluster path's overhead;
target: at most 1.15), the mean time per submission from the progress lines, and the cost
model for a class: students x minutes per submission / workers.

    python benchmarks/bench_cluster.py [--assignment pruning] [--students 200]
                                       [--workers 2 8 32 100]

Needs the cluster extra (``pip install -e ".[cluster]"``) and bubblewrap for the sandbox.
Run it on a quiet machine: on shared cores both times grow, and not equally.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from course_lib import cluster, grader
from course_lib.paths import REPO_ROOT

TIMEOUT_S = 300  # seconds per cell, as generous as the tests'


def solved(source: Path, release: Path) -> nbformat.NotebookNode:
    """The student version with the instructor's solutions (markers removed)."""
    solutions = {
        c.metadata["nbgrader"]["grade_id"]: c.source
        for c in nbformat.read(source, 4).cells
        if c.metadata.get("nbgrader", {}).get("solution")
    }
    nb = nbformat.read(release, 4)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in solutions:
            lines = solutions[grade_id].splitlines()
            cell.source = "\n".join(line for line in lines if "### " not in line)
    return nb


def course_of_six(root: Path, assignment: str) -> Path:
    """A course in ``root`` with ``assignment`` generated and six students' submissions."""
    source = REPO_ROOT / "assignments" / "source" / assignment
    root.mkdir(parents=True)
    shutil.copy(REPO_ROOT / "nbgrader_config.py", root)
    shutil.copytree(source, root / "assignments" / "source" / assignment)
    if grader.nbgrader(root, "generate_assignment", assignment, quiet=True):
        raise RuntimeError(f"nbgrader generate_assignment {assignment} failed in {root}")
    release = root / "assignments" / "release" / assignment / f"{assignment}.ipynb"
    answer = solved(source / f"{assignment}.ipynb", release)
    for i in range(6):
        folder = root / "assignments" / "submitted" / f"student{i}" / assignment
        folder.mkdir(parents=True)
        nb = answer if i % 2 == 0 else nbformat.read(release, 4)
        nbformat.write(nb, folder / f"{assignment}.ipynb")
    return root


def grade(root: Path, assignment: str, options: list[str]) -> tuple[float, list[float], str]:
    """Wall seconds of ``course grade run``, each submission's seconds, and its output."""
    command = [sys.executable, "-m", "course_lib.grader", "run", assignment]
    command += ["--course-dir", str(root), "--timeout", str(TIMEOUT_S), *options]
    start = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    log = run.stdout + run.stderr
    if run.returncode:
        raise RuntimeError(f"grading failed:\n{log[-3000:]}")
    took = re.findall(r"^\[\d+/\d+\] .*\((?:(\d+) min )?(\d+) s\)$", log, flags=re.M)
    return wall, [60 * int(m or 0) + int(s) for m, s in took], log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", default="pruning")
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 8, 32, 100])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        local_course = course_of_six(Path(tmp) / "local", args.assignment)
        ray_course = course_of_six(Path(tmp) / "ray", args.assignment)
        print(f"six submissions of {args.assignment}, two CPUs each way")
        local, local_each, _ = grade(local_course, args.assignment, ["--workers", "2"])
        print(f"local, 2 workers:            {local:6.1f} s")
        with cluster.local_cluster(nodes=2, cpus_per_node=1) as address:
            remote, remote_each, _ = grade(ray_course, args.assignment, ["--ray", address])
        print(f"Ray, 2 nodes of 1 CPU:       {remote:6.1f} s")
        ratio = remote / local
        verdict = "met" if ratio <= 1.15 else "missed"
        print(f"overhead: {ratio:.2f}x the local run (target <= 1.15x, {verdict})")
    each = local_each + remote_each
    per_submission = sum(each) / len(each) / 60
    print(
        f"per submission: {per_submission:.2f} min (mean of {len(each)} runs; local "
        f"{sum(local_each) / len(local_each):.0f} s, Ray {sum(remote_each) / len(remote_each):.0f} s)"
    )
    print(f"a class of {args.students}: students x minutes per submission / workers")
    for workers in args.workers:
        minutes = cluster.estimate_minutes([per_submission * 60] * args.students, workers)
        print(f"  {workers:4d} workers: {minutes:7.1f} min ({minutes / 60:.1f} h)")


if __name__ == "__main__":
    main()

"""The instructors' wrapper around nbgrader: check the submissions, autograde, write the
feedback and export the grades in one command.

``course grade run <assignment>`` (or ``python -m course_lib.grading run <assignment>``);
see ``book/grading.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..paths import REPO_ROOT


@dataclass(frozen=True)
class BadSubmission:
    """A submitted notebook nbgrader cannot read."""

    student: str
    path: Path
    problem: str

    def __str__(self) -> str:
        return (
            f"student {self.student!r}: {self.path} is not a readable notebook ({self.problem}). "
            f"It is not graded and scores 0 until fixed; the file is left as submitted. Ask "
            f"the student to resubmit (or repair the JSON), then rerun with --student "
            f"{self.student}."
        )


def course_root(course_dir: Path) -> Path:
    """The nbgrader course root configured in ``course_dir/nbgrader_config.py``."""
    return Path(course_dir) / "assignments"


def notebook_problem(path: Path) -> str | None:
    """Why ``path`` is not a valid Jupyter notebook, or ``None`` if it is one."""
    import nbformat

    try:
        text = Path(path).read_text(encoding="utf-8")
        json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return f"invalid JSON: {error}"
    try:
        nbformat.validate(nbformat.reads(text, as_version=4))
    except Exception as error:  # nbformat raises several types for a malformed notebook
        return f"not a notebook: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
    return None


def check_submissions(course_dir: Path, assignment: str) -> list[BadSubmission]:
    """Every submitted notebook of ``assignment`` that nbgrader could not read."""
    submitted = course_root(course_dir) / "submitted"
    bad = []
    for path in sorted(submitted.glob(f"*/{assignment}/*.ipynb")):
        problem = notebook_problem(path)
        if problem is not None:
            bad.append(BadSubmission(path.parts[-3], path, problem))
    return bad


def nbgrader(course_dir: Path, *args: str) -> int:
    """Run ``nbgrader *args`` in ``course_dir`` (where ``nbgrader_config.py`` is); returns
    its exit status (nbgrader exits 1 when any one submission failed)."""
    command = [sys.executable, "-m", "nbgrader", *args]
    print("$ nbgrader " + " ".join(args), flush=True)
    return subprocess.run(command, cwd=course_dir, check=False).returncode


def grade(
    course_dir: Path,
    assignment: str,
    csv: Path | None = None,
    timeout: int | None = None,
    student: str | None = None,
    force: bool = False,
) -> int:
    """Check the submissions, then ``nbgrader autograde``, ``generate_feedback`` and
    ``export`` to ``csv``. Returns 0 when every submission was graded, else 1."""
    course_dir = Path(course_dir).resolve()
    bad = check_submissions(course_dir, assignment)
    for problem in bad:
        print(f"WARNING: {problem}", file=sys.stderr)
    options = [f"--Execute.timeout={timeout}"] if timeout else []
    options += [f"--student={student}"] if student else []
    options += ["--force"] if force else []
    status = nbgrader(course_dir, "autograde", assignment, *options)
    feedback_options = [o for o in options if not o.startswith("--Execute")]
    status |= nbgrader(course_dir, "generate_feedback", assignment, *feedback_options)
    csv = Path(csv or course_dir / "grades.csv").resolve()
    status |= nbgrader(course_dir, "export", f"--to={csv}")
    if status:
        print(
            "Some submissions were not graded: see the errors above (a bad notebook, or a "
            "kernel that could not be interrupted). The others are graded and exported.",
            file=sys.stderr,
        )
    print(f"grades: {csv}\nfeedback: {course_root(course_dir) / 'feedback'}")
    return 1 if status or bad else 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``grade`` command line (shared by ``course grade`` and ``python -m``)."""
    sub = parser.add_subparsers(dest="grade_command", required=True)
    check = sub.add_parser("check", help="list submitted notebooks that are not valid notebooks")
    run = sub.add_parser("run", help="check, autograde, generate feedback, export grades to CSV")
    for p in (check, run):
        p.add_argument("assignment", help="assignment name, e.g. pruning")
        p.add_argument(
            "--course-dir", type=Path, default=REPO_ROOT, help="holds nbgrader_config.py"
        )
    run.add_argument("--csv", type=Path, default=None, help="default: <course-dir>/grades.csv")
    run.add_argument("--timeout", type=int, default=None, help="seconds per cell (config default)")
    run.add_argument("--student", default=None, help="grade only this student")
    run.add_argument("--force", action="store_true", help="regrade already graded submissions")


def run_command(args: argparse.Namespace) -> int:
    """Execute a parsed ``grade`` command line."""
    if args.grade_command == "check":
        bad = check_submissions(args.course_dir, args.assignment)
        for problem in bad:
            print(problem)
        return 1 if bad else 0
    return grade(args.course_dir, args.assignment, args.csv, args.timeout, args.student, args.force)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.grading", description=__doc__)
    add_arguments(parser)
    return run_command(parser.parse_args(argv))

"""The instructors' wrapper around nbgrader: check the submissions, autograde them in
parallel, write the feedback, export the grades and the integrity report in one command.

``course grade run <assignment>`` (or ``python -m course_lib.grading run <assignment>``);
see ``book/grading.md``. How a class is graded at once:

1. every submission is executed by its own worker (default: one per core), in a private
   copy of the course that holds only the assignment's source, a copy of the gradebook and
   that one submission (so no run can touch another student's files or grades); the
   student's code runs sandboxed, the tests in a separate clean kernel (:mod:`.refereed`);
2. one ``nbgrader autograde`` in the course itself then takes each executed notebook as it
   is (``RefereedExecute.replay_dir``) and records the grades: the same scores as a
   sequential run, one writer for the gradebook;
3. ``nbgrader generate_feedback`` and ``nbgrader export``, and the integrity report.

With ``--ray [ADDRESS]`` step 1 runs as one Ray task per submission instead
(:mod:`course_lib.cluster`): the task gets that private course packed, grades it on its
worker with that worker's sandbox, and sends back the executed notebooks and the integrity
record; steps 2 and 3 are the same.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from functools import partial
from io import BytesIO
from pathlib import Path

from .. import cluster
from ..paths import REPO_ROOT
from . import integrity
from .integrity import RECORD_SUFFIX
from .sandbox import Limits, detect, parse_bytes


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


def nbgrader(course_dir: Path, *args: str, quiet: bool = False) -> int:
    """Run ``nbgrader *args`` in ``course_dir`` (where ``nbgrader_config.py`` is); returns
    its exit status (nbgrader exits 1 when any one submission failed). ``quiet``: its
    output is shown only if it fails."""
    command = [sys.executable, "-m", "nbgrader", *args]
    if not quiet:
        print("$ nbgrader " + " ".join(args), flush=True)
        return subprocess.run(command, cwd=course_dir, check=False).returncode
    run = subprocess.run(command, cwd=course_dir, check=False, capture_output=True, text=True)
    if run.returncode:
        print("\n".join((run.stdout + run.stderr).splitlines()[-30:]), file=sys.stderr)
    return run.returncode


def students_to_grade(
    course_dir: Path, assignment: str, student: str | None, force: bool, bad: list[BadSubmission]
) -> list[str]:
    """Students with a readable submission of ``assignment`` (only ``student`` if given),
    without those already autograded unless ``force``."""
    root = course_root(course_dir)
    unreadable = {b.student for b in bad}
    found = []
    for folder in sorted((root / "submitted").glob(f"*/{assignment}")):
        name = folder.parent.name
        if student is not None and name != student or name in unreadable:
            continue
        if not force and (root / "autograded" / name / assignment).exists():
            continue
        if any(folder.glob("*.ipynb")):
            found.append(name)
    return found


# --- one worker: one submission in a private copy of the course -------------------------


@dataclass
class Outcome:
    """What a worker made of one submission."""

    student: str
    ok: bool
    seconds: float
    message: str = ""


def private_course(course_dir: Path, assignment: str, student: str, into: Path) -> Path:
    """A course folder with only the config, the assignment's source, a copy of the
    gradebook and this one submission."""
    root, private = course_root(course_dir), into / "course"
    if not (root / "gradebook.db").exists():
        raise FileNotFoundError(
            f"{root / 'gradebook.db'} is missing: run `nbgrader generate_assignment "
            f"{assignment}` in {course_dir} first"
        )
    (private / "assignments" / "submitted" / student).mkdir(parents=True)
    shutil.copy(course_dir / "nbgrader_config.py", private / "nbgrader_config.py")
    shutil.copytree(root / "source" / assignment, private / "assignments/source" / assignment)
    shutil.copytree(
        root / "submitted" / student / assignment,
        private / "assignments/submitted" / student / assignment,
        symlinks=True,
    )
    with sqlite3.connect(root / "gradebook.db") as source:
        with sqlite3.connect(private / "assignments/gradebook.db") as copy:
            source.backup(copy)
    return private


def grade_one(
    course_dir: Path, assignment: str, student: str, work: Path, options: list[str]
) -> Outcome:
    """Autograde ``student`` in a private course under ``work``; the executed notebooks and
    integrity records go to ``work/replay/<student>/``."""
    started = time.monotonic()
    folder = work / "students" / student
    private = private_course(course_dir, assignment, student, folder)
    log = folder / "autograde.log"
    with log.open("w") as out:
        status = subprocess.run(
            [sys.executable, "-m", "nbgrader", "autograde", assignment, f"--student={student}"]
            + options,
            cwd=private,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        ).returncode
    graded = private / "assignments/autograded" / student / assignment
    reports = private / "assignments/reports" / assignment / student
    notebooks = sorted(graded.glob("*.ipynb"))
    seconds = time.monotonic() - started
    if status != 0 or not notebooks:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        return Outcome(student, False, seconds, "\n".join(tail))
    replay = work / "replay" / student
    replay.mkdir(parents=True)
    for path in [*notebooks, *reports.glob(f"*{RECORD_SUFFIX}")]:
        shutil.copy(path, replay / path.name)
    shutil.rmtree(folder, ignore_errors=True)
    return Outcome(student, True, seconds)


# --- the same worker as a Ray task: the private course travels packed -------------------


def pack_course(course_dir: Path, assignment: str, student: str) -> bytes:
    """The private course of ``student`` (:func:`private_course`) as a gzipped tar."""
    with tempfile.TemporaryDirectory(prefix="course-pack-") as tmp:
        private = private_course(course_dir, assignment, student, Path(tmp))
        buffer = BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            tar.add(private, arcname="course")
    return buffer.getvalue()


def grade_packed(
    assignment: str, options: list[str], job: tuple[str, bytes]
) -> tuple[Outcome, dict[str, bytes]]:
    """Grade ``job`` = (student, :func:`pack_course`) on this machine, as :func:`grade_one`
    does (this machine's sandbox; files of this course watched); returns the outcome and
    the executed notebooks and integrity records (file name -> bytes)."""
    student, packed = job
    with tempfile.TemporaryDirectory(prefix="course-grade-") as tmp:
        with tarfile.open(fileobj=BytesIO(packed), mode="r:gz") as tar:
            tar.extractall(tmp, filter="tar")  # a submission's symlinks stay symlinks
        course = Path(tmp) / "course"
        watched = [f"--RefereedExecute.watched={course}"]
        outcome = grade_one(course, assignment, student, Path(tmp) / "work", options + watched)
        replay = Path(tmp) / "work" / "replay" / student
        files = {p.name: p.read_bytes() for p in sorted(replay.glob("*"))}
    if not outcome.ok:
        outcome.message = f"(on {os.uname().nodename})\n{outcome.message}"
    return outcome, files


def _progress(done: int, total: int, outcome: Outcome, record: dict | None) -> str:
    minutes, seconds = divmod(round(outcome.seconds), 60)
    took = f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"
    if not outcome.ok:
        return f"[{done}/{total}] {outcome.student}: NOT GRADED ({took})\n{outcome.message}"
    summary = integrity.summary_line(record) if record else outcome.student
    return f"[{done}/{total}] {summary} ({took})"


def _record_of(work: Path, student: str) -> dict | None:
    paths = sorted((work / "replay" / student).glob(f"*{RECORD_SUFFIX}"))
    return json.loads(paths[0].read_text()) if paths else None


def default_workers() -> int:
    """One worker per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS
        return max(1, os.cpu_count() or 1)


def grade(
    course_dir: Path,
    assignment: str,
    csv: Path | None = None,
    timeout: int | None = None,
    student: str | None = None,
    force: bool = False,
    workers: int | None = None,
    memory_limit: str | None = None,
    require_sandbox: bool = False,
    from_runs: Path | None = None,
    ray: str | None = None,
) -> int:
    """Check the submissions, autograde them (``workers`` in parallel), then
    ``nbgrader generate_feedback`` and ``export`` to ``csv``, and write the integrity report.
    ``from_runs``: take the executed notebooks from there (``<student>/`` folders made on
    other machines) instead of running them. ``ray``: the address of a Ray cluster
    (default ``$COURSE_RAY_ADDRESS``; ``auto`` joins this machine's) that runs one task per
    submission instead of the local workers. Returns 0 when every submission was graded,
    else 1."""
    course_dir = Path(course_dir).resolve()
    address = cluster.ray_address(ray)
    workers = workers or default_workers()
    limits = Limits(memory_bytes=parse_bytes(memory_limit)) if memory_limit else Limits()
    protections = detect()
    print("Protections for student code on this machine:")
    for line in protections.describe(limits, timeout):
        print(f"  {line}")
    for warning in protections.warnings():
        print(f"WARNING: {warning}", file=sys.stderr)
    if address:
        print("  (with --ray each worker grades with its own: the report lists what was missing)")
    if require_sandbox and not protections.namespaces and not address:
        print("Refusing to grade without a sandbox (--require-sandbox).", file=sys.stderr)
        return 1
    bad = check_submissions(course_dir, assignment)
    for problem in bad:
        print(f"WARNING: {problem}", file=sys.stderr)
    students = students_to_grade(course_dir, assignment, student, force, bad)
    options = [f"--Execute.timeout={timeout}"] if timeout else []
    threads = 1 if address else max(1, (os.cpu_count() or 1) // workers)
    options += [f"--RefereedExecute.threads={threads}"]
    if memory_limit:
        options.append(f"--RefereedExecute.memory_limit={memory_limit}")
    if require_sandbox:
        options.append("--RefereedExecute.require_sandbox=True")
    failed: dict[str, str] = {b.student: "unreadable notebook" for b in bad}
    unreadable = [b.student for b in bad if student is None or b.student == student]
    status = 0
    if from_runs is not None:
        runs = Path(from_runs).resolve()
        graded = [s for s in students if (runs / s).is_dir()]
        failed.update({s: f"no run in {runs}" for s in students if s not in graded})
        status = _record(course_dir, assignment, graded, runs, unreadable)
    elif address and (students or unreadable):
        status = _autograde_on_ray(
            course_dir, assignment, students, address, options, failed, unreadable
        )
    elif students or unreadable:
        options.append(f"--RefereedExecute.watched={course_dir}")
        status = _autograde(course_dir, assignment, students, workers, options, failed, unreadable)
    feedback_options = [f"--student={student}"] if student else []
    feedback_options += ["--force"] if force else []
    status |= nbgrader(course_dir, "generate_feedback", assignment, *feedback_options)
    csv = Path(csv or course_dir / "grades.csv").resolve()
    status |= nbgrader(course_dir, "export", f"--to={csv}")
    report = course_root(course_dir) / "reports" / f"{assignment}-integrity.md"
    found = integrity.records(course_root(course_dir) / "reports", assignment)
    integrity.write_report(report, assignment, found, failed)
    flagged = [r for r in found if integrity.flags(r)]
    print(f"integrity: {len(flagged)} of {len(found)} students flagged -> {report}")
    for record in flagged:
        print(f"  {integrity.summary_line(record)}")
    if status or failed:
        print(
            "Some submissions were not graded: see the errors above (a bad notebook, or a "
            "run that failed). The others are graded and exported.",
            file=sys.stderr,
        )
    print(f"grades: {csv}\nfeedback: {course_root(course_dir) / 'feedback'}")
    return 1 if status or failed else 0


def _autograde(
    course_dir: Path,
    assignment: str,
    students: list[str],
    workers: int,
    options: list[str],
    failed: dict[str, str],
    unreadable: list[str],
) -> int:
    """Phase 1 (parallel, private courses), then phase 2 (the course's gradebook)."""
    total = len(students)
    print(f"autograding {total} submission(s) of {assignment} with {workers} worker(s)", flush=True)
    work = Path(tempfile.mkdtemp(prefix="course-grade-"))
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [
                pool.submit(grade_one, course_dir, assignment, s, work, options) for s in students
            ]
            for done, future in enumerate(as_completed(futures), start=1):
                outcome = future.result()
                if not outcome.ok:
                    failed[outcome.student] = "its run failed (see the log above)"
                line = _progress(done, total, outcome, _record_of(work, outcome.student))
                print(line, flush=True)
        graded = [s for s in students if s not in failed]
        return _record(course_dir, assignment, graded, work / "replay", unreadable)
    finally:
        shutil.rmtree(work, ignore_errors=True)


#: How :class:`.refereed.RefereedExecute` refuses to grade under ``--require-sandbox``.
NO_SANDBOX = "no sandbox for student code on this machine"


def _autograde_on_ray(
    course_dir: Path,
    assignment: str,
    students: list[str],
    address: str,
    options: list[str],
    failed: dict[str, str],
    unreadable: list[str],
) -> int:
    """Phase 1 as one Ray task per submission (retried where a worker dies), its files
    written back under a local work folder; then phase 2 as in :func:`_autograde`."""
    total = len(students)
    ray = cluster.connect(address)
    cpus = int(ray.cluster_resources().get("CPU", 0))
    print(
        f"autograding {total} submission(s) of {assignment} on the Ray cluster at {address} "
        f"({cpus} CPUs)",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="course-grade-"))
    finished = 0

    def receive(index: int, done: cluster.Done) -> None:
        nonlocal finished
        outcome, files = done.value
        if outcome.ok:
            replay = work / "replay" / outcome.student
            replay.mkdir(parents=True)  # once per student: a retried task returns once
            for name, data in files.items():
                (replay / name).write_bytes(data)
        elif NO_SANDBOX in outcome.message:
            failed[outcome.student] = "refused: its worker has no sandbox (--require-sandbox)"
        else:
            failed[outcome.student] = "its run failed (see the log above)"
        finished += 1
        print(_progress(finished, total, outcome, _record_of(work, outcome.student)), flush=True)

    try:
        jobs = [(s, pack_course(course_dir, assignment, s)) for s in students]
        task = partial(grade_packed, assignment, options)
        cluster.map_tasks(task, jobs, address=address, progress=False, on_done=receive)
        graded = [s for s in students if s not in failed]
        return _record(course_dir, assignment, graded, work / "replay", unreadable)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _record(
    course_dir: Path, assignment: str, graded: list[str], runs: Path, unreadable: list[str] = ()
) -> int:
    """Phase 2: one ``nbgrader autograde`` in the course that takes the executed notebooks of
    ``graded`` from ``runs/<student>/`` as they are and records the grades. The
    ``unreadable`` submissions go through it too, so that they appear in the gradebook (and
    the CSV) with 0 points."""
    included = [*graded, *unreadable]
    if not included:
        return 1
    others = ",".join(_others(course_dir, assignment, included))
    status = nbgrader(
        course_dir,
        "autograde",
        assignment,
        "--force",
        f"--RefereedExecute.replay_dir={runs}",
        f"--CourseDirectory.student_id_exclude={others}",
        quiet=True,
    )
    print(f"recorded {len(graded)} graded submission(s) in the gradebook", flush=True)
    return status | (0 if graded else 1)


def _others(course_dir: Path, assignment: str, graded: list[str]) -> list[str]:
    submitted = course_root(course_dir) / "submitted"
    everyone = {folder.parent.name for folder in submitted.glob(f"*/{assignment}")}
    return sorted(everyone - set(graded)) or ["-"]


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
    run.add_argument(
        "--workers",
        type=int,
        default=None,
        help="submissions graded at once (default: one per core)",
    )
    run.add_argument(
        "--memory-limit", default=None, help="memory of each kernel, e.g. 4G (config default)"
    )
    run.add_argument(
        "--require-sandbox",
        action="store_true",
        help="refuse to grade on a machine without bubblewrap",
    )
    run.add_argument(
        "--from-runs",
        type=Path,
        default=None,
        help="record executed notebooks made elsewhere (<dir>/<student>/) instead of running",
    )
    run.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        default=None,
        metavar="ADDRESS",
        help="grade one submission per task on a Ray cluster (default address: auto, or "
        f"${cluster.ADDRESS_ENV}); needs {cluster.INSTALL_HINT}",
    )


def run_command(args: argparse.Namespace) -> int:
    """Execute a parsed ``grade`` command line."""
    if args.grade_command == "check":
        bad = check_submissions(args.course_dir, args.assignment)
        for problem in bad:
            print(problem)
        return 1 if bad else 0
    return grade(
        args.course_dir,
        args.assignment,
        args.csv,
        args.timeout,
        args.student,
        args.force,
        args.workers,
        args.memory_limit,
        args.require_sandbox,
        args.from_runs,
        args.ray,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.grader", description=__doc__)
    add_arguments(parser)
    return run_command(parser.parse_args(argv))

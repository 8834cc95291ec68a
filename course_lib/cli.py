"""``course``: run chapters and build the book from the command line.

course run notebooks/01_baseline.ipynb --profile full   # one chapter, saves results/
course run-all --profile quick                          # every chapter, in order
course book                                             # the HTML book, in _build/html
course book --pdf                                       # and the PDF, _build/pdf/book.pdf
course grade run pruning                                # autograde, feedback, grades.csv
course run notebooks/06_bnn_methods.ipynb --profile full --ray   # trainings as Ray tasks
course grade run pruning --ray 10.0.0.5:6379            # one Ray task per submission
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from functools import partial
from pathlib import Path

from . import book, cluster, grader
from .paths import NOTEBOOK_DIR, REPO_ROOT, RUNS_DIR
from .profiles import PROFILES, check_profile
from .results import COMMAND_ENV


def chapter_notebooks() -> list[Path]:
    """The chapter notebooks, in chapter order."""
    return sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def run_notebook(
    notebook: Path, profile: str, seed: int | None = None, output: Path | None = None
) -> Path:
    """Execute ``notebook`` with papermill in ``profile``; the executed copy goes to
    ``runs/<profile>/`` (the source notebook is never overwritten). A full-profile run also
    keeps a trimmed copy for the book in ``results/executed/`` (:func:`book.save_full_run`).
    Returns the path of the executed copy."""
    import papermill

    check_profile(profile)
    notebook = Path(notebook).resolve()
    if not notebook.exists():
        raise FileNotFoundError(f"no notebook at {notebook}")
    output = output or RUNS_DIR / profile / notebook.name
    output.parent.mkdir(parents=True, exist_ok=True)
    parameters: dict[str, object] = {"profile": profile}
    if seed is not None:
        parameters["seed"] = seed
    shown = notebook.relative_to(REPO_ROOT) if notebook.is_relative_to(REPO_ROOT) else notebook
    command = "course run " + shlex.quote(str(shown))
    command += f" --profile {profile}" + (f" --seed {seed}" if seed is not None else "")
    previous = os.environ.get(COMMAND_ENV)
    os.environ[COMMAND_ENV] = command  # the kernel inherits it and records it
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters=parameters,
            cwd=str(notebook.parent),
            progress_bar=False,
        )
    finally:  # a later run in this process records its own command, not this one
        if previous is None:
            os.environ.pop(COMMAND_ENV, None)
        else:
            os.environ[COMMAND_ENV] = previous
    print(f"{notebook.name} ({profile}): {time.perf_counter() - start:.0f} s -> {output}")
    if profile == "full":
        print(f"the book will show this run: {book.save_full_run(output)}")
    return output


def quick_run_for_book(notebook: Path, reuse: Path | None) -> Path:
    """A quick-profile execution of ``notebook``: the one in ``reuse`` if it ran the same
    code, else a new one (in ``runs/quick/``)."""
    candidate = None if reuse is None else Path(reuse) / notebook.name
    if candidate is not None and candidate.exists():
        if book.ran_code_of(candidate, notebook, "quick"):
            return candidate
    return run_notebook(notebook, "quick", seed=0)


def build_book(
    full_runs: Path | None = None,
    quick_runs: Path | None = None,
    output: Path = REPO_ROOT,
    quiet: bool = False,
) -> Path:
    """The book readers get: each chapter from its saved full run in ``full_runs``
    (default ``results/executed/``), else from a quick run (reused from ``quick_runs`` when
    it ran the same code, else executed now; code cells added since a saved full run show
    a quick run's outputs), built into ``<output>/_build/html``.
    Returns that folder."""
    pages = {}
    for notebook in book.toc_notebooks():
        saved = book.full_run(notebook, full_runs)
        executed = saved or quick_run_for_book(notebook, quick_runs)
        print(f"{notebook.name}: {'full' if saved else 'quick'}-profile run {executed}")
        # cells added since a saved full run get their outputs from a quick run
        quick = partial(quick_run_for_book, notebook, quick_runs) if saved else None
        pages[notebook] = book.page(notebook, executed, quick)
    staging = book.assemble(pages, Path(output) / book.STAGING)
    return book.build(staging, output, quiet=quiet)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="course", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute one chapter notebook")
    run.add_argument("notebook", type=Path)
    run.add_argument("--profile", default="quick", choices=PROFILES)
    run.add_argument("--seed", type=int, default=None)
    run_all = sub.add_parser("run-all", help="execute every chapter notebook in order")
    run_all.add_argument("--profile", default="quick", choices=PROFILES)
    for p in (run, run_all):
        p.add_argument(
            "--ray",
            nargs="?",
            const="auto",
            default=None,
            metavar="ADDRESS",
            help="run the chapters' independent trainings as tasks on a Ray cluster "
            f"(default address: auto; sets ${cluster.ADDRESS_ENV}); needs {cluster.INSTALL_HINT}",
        )
    make_book = sub.add_parser(
        "book",
        help="build the HTML book: each chapter from its saved full run, else a quick run",
    )
    make_book.add_argument(
        "--full-runs",
        type=Path,
        default=None,
        help="folder of saved full-profile runs (default: results/executed)",
    )
    make_book.add_argument(
        "--quick-runs",
        type=Path,
        default=None,
        help="folder of quick-profile runs to reuse where they ran the current code "
        "(default: execute the quick profile now)",
    )
    make_book.add_argument(
        "--output", type=Path, default=REPO_ROOT, help="builds <output>/_build/html"
    )
    make_book.add_argument(
        "--pdf",
        action="store_true",
        help="also print the same book to one PDF, <output>/_build/pdf/book.pdf, with "
        "jupyter-book's pdfhtml builder and the system's Chromium (see README.md)",
    )
    grade = sub.add_parser("grade", help="grade an nbgrader assignment (see book/grading.md)")
    grader.add_arguments(grade)
    args = parser.parse_args(argv)
    if args.command in ("run", "run-all") and args.ray:
        os.environ[cluster.ADDRESS_ENV] = args.ray  # the kernels inherit it (course_lib.cluster)
    if args.command == "grade":
        return grader.run_command(args)
    if args.command == "book":
        if args.pdf:
            try:
                book.pdf_printer()
            except RuntimeError as missing:
                print(f"course book --pdf: {missing}", file=sys.stderr)
                return 1
        full_runs, output = args.full_runs and args.full_runs.resolve(), args.output.resolve()
        html = build_book(full_runs, args.quick_runs, output)
        print(f"The book is in {html / 'index.html'}")
        if args.pdf:
            start = time.perf_counter()
            pdf = book.build_pdf(output / book.STAGING, output)
            size = pdf.stat().st_size / 1e6
            print(f"The PDF is {pdf} ({size:.1f} MB, {time.perf_counter() - start:.0f} s)")
    elif args.command == "run":
        run_notebook(args.notebook, args.profile, args.seed)
    else:
        for notebook in chapter_notebooks():
            run_notebook(notebook, args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())

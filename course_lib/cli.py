"""``course``: run chapters and build the book from the command line.

course run notebooks/01_baseline.ipynb --profile full   # one chapter, saves results/
course run-all --profile quick                          # every chapter, in order
course grade run pruning                                # autograde, feedback, grades.csv
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from . import grading
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
    ``runs/<profile>/`` (the source notebook is never overwritten). Returns its path."""
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
    command = "course run " + shlex.quote(str(notebook.relative_to(REPO_ROOT)))
    command += f" --profile {profile}" + (f" --seed {seed}" if seed is not None else "")
    os.environ[COMMAND_ENV] = command
    start = time.perf_counter()
    papermill.execute_notebook(
        str(notebook),
        str(output),
        parameters=parameters,
        cwd=str(notebook.parent),
        progress_bar=False,
    )
    print(f"{notebook.name} ({profile}): {time.perf_counter() - start:.0f} s -> {output}")
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="course", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute one chapter notebook")
    run.add_argument("notebook", type=Path)
    run.add_argument("--profile", default="quick", choices=PROFILES)
    run.add_argument("--seed", type=int, default=None)
    run_all = sub.add_parser("run-all", help="execute every chapter notebook in order")
    run_all.add_argument("--profile", default="quick", choices=PROFILES)
    grade = sub.add_parser("grade", help="grade an nbgrader assignment (see book/grading.md)")
    grading.add_arguments(grade)
    args = parser.parse_args(argv)
    if args.command == "grade":
        return grading.run_command(args)
    if args.command == "run":
        run_notebook(args.notebook, args.profile, args.seed)
    else:
        for notebook in chapter_notebooks():
            run_notebook(notebook, args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Shared fixtures. Tests use the real CIFAR-10: set COURSE_DATA_DIR to a folder holding
``cifar10.npz``; beside a checkout with ``../shared/data`` that folder is used by default."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
if "COURSE_DATA_DIR" not in os.environ and (SHARED_DATA / "cifar10.npz").exists():
    os.environ["COURSE_DATA_DIR"] = str(SHARED_DATA)


@pytest.fixture(scope="session")
def cifar():
    from course_lib.data import load_cifar10

    return load_cifar10()


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory):
    """``quick_run(notebook)``: the notebook executed once per test session in the quick
    profile (seed 0) with papermill; the notebook tests and the book tests share it."""
    import papermill

    folder = tmp_path_factory.mktemp("quick_runs")
    done: dict[Path, Path | BaseException] = {}

    def run(notebook: Path) -> Path:
        if notebook not in done:
            try:
                papermill.execute_notebook(
                    str(notebook),
                    str(folder / notebook.name),
                    parameters={"profile": "quick", "seed": 0},
                    cwd=str(notebook.parent),
                    progress_bar=False,
                )
                done[notebook] = folder / notebook.name
            except BaseException as error:
                done[notebook] = error
                raise
        result = done[notebook]
        if isinstance(result, BaseException):
            pytest.fail(
                f"{notebook.name} failed in its quick run earlier in this session: {result}"
            )
        return result

    run.folder = folder
    return run


@dataclass
class BuiltBook:
    html: Path  # the built HTML
    staging: Path  # the staged sources it was built from
    full: list[Path]  # chapters shown from a (stand-in) saved full run
    quick: list[Path]  # chapters shown from a quick run


@pytest.fixture(scope="session")
def built_book(tmp_path_factory, quick_run) -> BuiltBook:
    """The book built as `course book` builds it, from this session's quick runs, except
    the first chapter: a copy of its quick run relabelled as a full-profile run and saved
    with book.save_full_run stands in for a saved full run."""
    import nbformat

    from course_lib import book, cli

    notebooks = book.toc_notebooks()
    runs = {notebook: quick_run(notebook) for notebook in notebooks}
    first = notebooks[0]
    stand_in = nbformat.read(runs[first], as_version=4)
    stand_in.metadata.papermill.parameters["profile"] = "full"
    relabelled = tmp_path_factory.mktemp("stand_in") / first.name
    nbformat.write(stand_in, relabelled)
    full_runs = tmp_path_factory.mktemp("full_runs")
    book.save_full_run(relabelled, full_runs)
    output = tmp_path_factory.mktemp("book")
    html = cli.build_book(full_runs, quick_run.folder, output, quiet=True)
    return BuiltBook(html, output / book.STAGING, [first], notebooks[1:])


@pytest.fixture(scope="session")
def persian_book(tmp_path_factory) -> BuiltBook:
    """The book built as `course book` builds it, with every chapter page a stand-in: the
    chapter's own cells, unexecuted, labelled as a quick run. The Persian part reads the
    committed results/*.json as it does in the real book; no notebook is executed, so this
    book builds even while a chapter notebook is broken."""
    import copy

    import nbformat

    from course_lib import book

    runs = tmp_path_factory.mktemp("stand_in_runs")
    pages = {}
    for notebook in book.toc_notebooks():
        stand_in = copy.deepcopy(nbformat.read(notebook, as_version=4))
        stand_in.metadata["papermill"] = {"parameters": {"profile": "quick"}}
        nbformat.write(stand_in, runs / notebook.name)
        pages[notebook] = book.page(notebook, runs / notebook.name)
    output = tmp_path_factory.mktemp("persian_book")
    staging = book.assemble(pages, output / book.STAGING)
    html = book.build(staging, output, quiet=True)
    return BuiltBook(html, staging, [], list(pages))

"""Every chapter notebook is thin and committed clean, and executes end to end in the quick
profile (papermill; the executions are shared with the book tests)."""

import nbformat
import papermill
import pytest

from course_lib.cli import chapter_notebooks

NOTEBOOKS = chapter_notebooks()
IDS = [nb.stem for nb in NOTEBOOKS]
MAX_CELL_LINES = 30
MAX_NOTEBOOK_LINES = 200


def code_cells(notebook):
    return [c for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code"]


def test_there_are_chapters():
    assert [nb.name for nb in NOTEBOOKS][:1] == ["01_baseline.ipynb"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_notebook_is_thin(notebook):
    """No code cell over 30 lines, at most 200 code lines in all (every line of a code
    cell counts, blank ones too): logic belongs in course_lib."""
    lines = [len(cell.source.splitlines()) for cell in code_cells(notebook)]
    long = {f"code cell {i + 1}": n for i, n in enumerate(lines) if n > MAX_CELL_LINES}
    assert not long, f"cells over {MAX_CELL_LINES} lines: {long}"
    assert sum(lines) <= MAX_NOTEBOOK_LINES, (
        f"{sum(lines)} code lines (at most {MAX_NOTEBOOK_LINES})"
    )


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_notebook_is_committed_clean_with_its_parameters_first(notebook):
    cells = code_cells(notebook)
    assert "parameters" in cells[0].metadata.get("tags", []), "first code cell: tag `parameters`"
    assert 'profile = "quick"' in cells[0].source and "seed = 0" in cells[0].source
    dirty = [i + 1 for i, c in enumerate(cells) if c.outputs or c.execution_count is not None]
    assert not dirty, f"code cells {dirty} have outputs: commit notebooks without outputs"


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_notebook_runs_in_quick_profile(notebook, quick_run):
    executed = nbformat.read(quick_run(notebook), as_version=4)
    assert executed.metadata.papermill.parameters == {"profile": "quick", "seed": 0}


@pytest.mark.slow
def test_unknown_profile_stops_a_notebook_with_a_clear_error(tmp_path):
    with pytest.raises(papermill.PapermillExecutionError, match="unknown profile 'fast'"):
        papermill.execute_notebook(
            str(NOTEBOOKS[0]),
            str(tmp_path / "out.ipynb"),
            parameters={"profile": "fast"},
            cwd=str(NOTEBOOKS[0].parent),
            progress_bar=False,
        )


#: Chapters already on the foundation's shape (issue 9); the others are added as they move.
THIN = ("01_baseline", "02_pruning")


@pytest.mark.parametrize("name", THIN)
def test_chapter_notebooks_are_thin(name):
    """Parameters first; no code cell over 30 lines, at most 200 code lines, no functions
    defined in the notebook (drivers live in course_lib); committed without outputs."""
    import nbformat

    notebook = nbformat.read(NOTEBOOKS[0].parent / f"{name}.ipynb", as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code[0].metadata.get("tags") == ["parameters"]
    assert 'profile = "quick"' in code[0].source
    lengths = [len(cell.source.splitlines()) for cell in code]
    assert max(lengths) <= 30, lengths
    assert sum(lengths) <= 200, sum(lengths)
    for cell in code:
        assert not cell.outputs, "notebooks are committed without outputs"
        assert not any(line.startswith(("def ", "class ")) for line in cell.source.splitlines())

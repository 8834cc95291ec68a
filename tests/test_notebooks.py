"""Every chapter notebook is thin and committed clean, and executes end to end in the quick
profile (papermill; the executions are shared with the book tests)."""

import nbformat
import papermill
import pytest

from course_lib.cli import chapter_notebooks

NOTEBOOKS = chapter_notebooks()
IDS = [nb.stem for nb in NOTEBOOKS]
MAX_CELL_LINES = 30
MAX_NOTEBOOK_LINES = 300


def code_cells(notebook):
    return [c for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code"]


def test_there_are_chapters():
    assert [nb.name for nb in NOTEBOOKS][:1] == ["01_baseline.ipynb"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_notebook_is_thin(notebook):
    """No code cell over 30 lines, at most 300 code lines in all (every line of a code
    cell counts, blank ones too): the heavy driving belongs in course_lib."""
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

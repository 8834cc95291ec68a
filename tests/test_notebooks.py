"""Every chapter notebook executes end to end in the quick profile (papermill)."""

import papermill
import pytest

from course_lib.cli import chapter_notebooks

NOTEBOOKS = chapter_notebooks()


def test_there_are_chapters():
    assert [nb.name for nb in NOTEBOOKS][:1] == ["01_baseline.ipynb"]


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_runs_in_quick_profile(notebook, tmp_path):
    papermill.execute_notebook(
        str(notebook),
        str(tmp_path / notebook.name),
        parameters={"profile": "quick", "seed": 0},
        cwd=str(notebook.parent),
        progress_bar=False,
    )


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

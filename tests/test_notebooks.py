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

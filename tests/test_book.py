"""The book builds offline with warnings as errors (notebooks unexecuted here: their
execution is tested by test_notebooks.py; the main job executes them while building)."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_book_builds_with_warnings_as_errors(tmp_path):
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(config))
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    build = subprocess.run(
        [
            str(jupyter_book),
            "build",
            str(REPO),
            "--config",
            str(tmp_path / "_config.yml"),
            "--path-output",
            str(tmp_path),
            "-W",
            "--keep-going",
        ],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    html = tmp_path / "_build" / "html"
    assert (html / "index.html").exists() or (html / "book" / "intro.html").exists()
    assert (html / "notebooks" / "01_baseline.html").exists()

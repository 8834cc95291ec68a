"""The book readers get: each chapter from its saved full-profile run (trimmed, committed
in results/executed/) or, where none is saved, from a quick run labelled as such; built
offline with warnings as errors; tables render as tables, math from the bundled MathJax,
and the bibliography merges every chapter's .bib file. The browser checks are in
test_book_browser.py."""

from __future__ import annotations

import base64
import copy
import io
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import nbformat
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from course_lib import book

REPO = Path(__file__).resolve().parents[1]
SAVED_RUNS = sorted(book.EXECUTED_DIR.glob("*.ipynb"))
MAX_SAVED_RUN_BYTES = 3_000_000
RAW_TABLE_RULE = r"\|\s*:?(?:-{3,}|[\u2013\u2014]+)\s*:?\|"
"""A Markdown table's rule row left as text (Sphinx may have turned ``---`` into dashes)."""


def png(width: int, height: int) -> str:
    """A base64 RGBA PNG that looks like a plot: coloured lines on white."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for i, x in enumerate(range(0, width, 50)):
        draw.line([(x, 0), (width - x, height)], fill=(40 * i % 256, 90, 160), width=3)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def executed(profile: str, code: str = "x = 1", text: str = "Some text.") -> nbformat.NotebookNode:
    """A small executed notebook as papermill leaves it."""
    params = new_code_cell('profile = "quick"\nseed = 0', metadata={"tags": ["parameters"]})
    injected = new_code_cell(f'profile = "{profile}"', metadata={"tags": ["injected-parameters"]})
    work = new_code_cell(code)
    work.outputs = [
        new_output("stream", name="stdout", text="".join(f"line {i}\n" for i in range(500))),
        new_output("stream", name="stderr", text="100%|#####| 10/10\n"),
        new_output("display_data", data={book.WIDGET_MIME: {"model_id": "x"}, "text/plain": "w"}),
        new_output("display_data", data={"image/png": png(3000, 2000), "text/plain": "<Figure>"}),
        new_output("display_data", data={"text/markdown": "| a | b |\n|---|---|\n| 1 | 2 |"}),
    ]
    nb = new_notebook(
        cells=[
            new_markdown_cell("# Title\n\nWhat this chapter does."),
            params,
            injected,
            new_markdown_cell(text),
            work,
        ]
    )
    nb.metadata["papermill"] = {"parameters": {"profile": profile}, "duration": 600.0}
    nb.metadata["papermill"]["end_time"] = "2026-11-27T10:00:00+00:00"
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    return nb


def source_of(run: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The committed notebook ``run`` was executed from (no outputs, no injected cell)."""
    nb = new_notebook(
        cells=[
            copy.deepcopy(c)
            for c in run.cells
            if "injected-parameters" not in c.metadata.get("tags", [])
        ]
    )
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    nb.metadata = {}
    return nb


def write(nb: nbformat.NotebookNode, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


# -- a saved full run is small -----------------------------------------------------------------


def test_trim_downscales_images_cuts_long_text_and_drops_progress_bars():
    run = executed("full")
    trimmed = book.trim(run)
    outputs = trimmed.cells[-1].outputs
    assert [o.output_type for o in outputs] == ["stream", "display_data", "display_data"]
    stdout = outputs[0].text.splitlines()
    assert len(stdout) == book.MAX_TEXT_LINES + 1
    assert stdout[0] == "line 0" and stdout[-1] == "line 499" and "440 lines cut" in stdout[30]
    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(outputs[1].data["image/png"])))
    assert image.width == book.MAX_IMAGE_WIDTH_PX and image.height == 800
    assert len(outputs[1].data["image/png"]) < len(run.cells[-1].outputs[3].data["image/png"]) / 2
    assert outputs[2].data["text/markdown"].startswith("| a | b |")
    assert "widgets" not in trimmed.metadata
    assert len(run.cells[-1].outputs) == 5, "trim must not change the notebook it is given"
    nbformat.validate(trimmed)


def test_small_images_are_kept_as_they_are():
    data = png(300, 200)
    assert book.shrink_image(data, "image/png", max_width=1200) in (
        data,
        book.shrink_image(data, "image/png"),
    )
    from PIL import Image

    kept = book.shrink_image(data, "image/png")
    assert Image.open(io.BytesIO(base64.b64decode(kept))).size == (300, 200)


def test_save_full_run_keeps_a_trimmed_copy_of_a_full_run(tmp_path):
    executed_path = write(executed("full"), tmp_path / "runs" / "07_demo.ipynb")
    saved = book.save_full_run(executed_path, tmp_path / "executed")
    assert saved == tmp_path / "executed" / "07_demo.ipynb"
    assert saved.stat().st_size < executed_path.stat().st_size / 2
    assert book.run_profile(nbformat.read(saved, as_version=4)) == "full"
    assert book.full_run(Path("notebooks/07_demo.ipynb"), tmp_path / "executed") == saved
    assert book.full_run(Path("notebooks/08_other.ipynb"), tmp_path / "executed") is None


def test_a_quick_run_is_never_kept_as_the_full_run(tmp_path):
    executed_path = write(executed("quick"), tmp_path / "07_demo.ipynb")
    with pytest.raises(ValueError, match="profile 'quick'.*--profile full"):
        book.save_full_run(executed_path, tmp_path / "executed")
    assert not (tmp_path / "executed").exists()
    # nor shown as one when it is put in the folder by hand
    write(executed("quick"), tmp_path / "executed" / "07_demo.ipynb")
    with pytest.raises(ValueError, match="not a full-profile run"):
        book.full_run(Path("07_demo.ipynb"), tmp_path / "executed")


@pytest.mark.slow
def test_course_run_full_keeps_the_run_for_the_book_and_quick_does_not(tmp_path, monkeypatch):
    from course_lib import cli

    monkeypatch.setattr(book, "EXECUTED_DIR", tmp_path / "executed")
    params = new_code_cell('profile = "quick"\nseed = 0', metadata={"tags": ["parameters"]})
    chapter = new_notebook(
        cells=[new_markdown_cell("# Demo"), params, new_code_cell("print(profile)")]
    )
    chapter.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    notebook = write(chapter, tmp_path / "notebooks" / "07_demo.ipynb")
    cli.run_notebook(notebook, "quick", output=tmp_path / "runs" / "quick.ipynb")
    assert not (tmp_path / "executed").exists(), "a quick run is never kept for the book"
    cli.run_notebook(notebook, "full", output=tmp_path / "runs" / "07_demo.ipynb")
    saved = book.full_run(notebook)
    assert saved == tmp_path / "executed" / "07_demo.ipynb"
    assert nbformat.read(saved, as_version=4).cells[-1].outputs[0].text == "full\n"


@pytest.mark.parametrize("saved", SAVED_RUNS, ids=[p.stem for p in SAVED_RUNS])
def test_committed_full_runs_are_small_full_runs_of_a_chapter(saved):
    run = nbformat.read(saved, as_version=4)
    assert book.run_profile(run) == "full"
    assert (REPO / "notebooks" / saved.name).exists(), f"{saved.name} is not a chapter notebook"
    assert saved.stat().st_size < MAX_SAVED_RUN_BYTES
    assert book.trim(run) == run, "saved runs are trimmed (course_lib.book.save_full_run)"


# -- one page ------------------------------------------------------------------------------------


def label_of(nb: nbformat.NotebookNode) -> str:
    labels = [c.source for c in nb.cells if "course-run-label" in c.metadata.get("tags", [])]
    assert len(labels) == 1 and nb.cells[1].source == labels[0], "one label, under the title"
    return labels[0]


def test_a_quick_run_is_labelled_as_one(tmp_path):
    run = executed("quick")
    shown = book.page(
        write(source_of(run), tmp_path / "07_demo.ipynb"), write(run, tmp_path / "run.ipynb")
    )
    label = label_of(shown)
    assert [c.source for c in shown.cells[::2][:2]] == ["# Title", "What this chapter does."]
    assert "This page shows a quick-profile run" in label and ":class: warning" in label
    assert "course run notebooks/07_demo.ipynb --profile full" in label


def test_a_full_run_shows_the_current_text_with_its_outputs(tmp_path):
    run = executed("full", text="Old text.")
    source = source_of(run)
    source.cells[2].source = "New text."
    source.cells[3].source = "x  =  1\n"  # reformatted, same code
    shown = book.page(write(source, tmp_path / "07_demo.ipynb"), write(run, tmp_path / "run.ipynb"))
    assert "Full-profile run" in label_of(shown) and "2026-11-27, 10 min" in label_of(shown)
    assert [c.source for c in shown.cells if c.cell_type == "markdown"][3] == "New text."
    assert shown.cells[-1].outputs == book.trim(run).cells[-1].outputs
    assert "injected-parameters" in shown.cells[4].metadata.tags, (
        "papermill's cell follows the parameters"
    )


def test_a_full_run_of_older_code_says_so(tmp_path):
    run = executed("full", code="x = 1")
    source = source_of(run)
    source.cells[-1].source = "x = 2"
    shown = book.page(write(source, tmp_path / "07_demo.ipynb"), write(run, tmp_path / "run.ipynb"))
    assert "code has changed since" in label_of(shown)
    assert shown.cells[-1].source == "x = 1", "the outputs are shown with the code that made them"


def test_code_cells_added_since_a_full_run_are_shown_without_outputs(tmp_path):
    run = executed("full", code="x = 1")
    source = source_of(run)
    source.cells.insert(3, nbformat.v4.new_code_cell("def twice(v):\n    return 2 * v"))
    shown = book.page(write(source, tmp_path / "07_demo.ipynb"), write(run, tmp_path / "run.ipynb"))
    assert "Full-profile run" in label_of(
        shown
    ) and "cells added to the chapter since that run (1)" in label_of(shown)
    code = [c for c in shown.cells if c.cell_type == "code" and "injected" not in str(c.metadata)]
    assert code[1].source.startswith("def twice") and code[1].outputs == []
    assert code[-1].outputs == book.trim(run).cells[-1].outputs
    assert book.added_code(run, source) == {1}
    source.cells[-1].source = "x = 2"  # a changed cell: the saved run is of older code
    assert book.added_code(run, source) is None


def test_code_cells_added_since_a_full_run_show_a_quick_runs_outputs(tmp_path):
    run = executed("full", code="x = 1")
    source = source_of(run)
    source.cells.insert(3, nbformat.v4.new_code_cell("print(2 * 21)"))
    quick = copy.deepcopy(source)
    quick.metadata["papermill"] = {"parameters": {"profile": "quick"}}
    quick.cells[3].outputs = [new_output("stream", name="stdout", text="42\n")]
    notebook = write(source, tmp_path / "07_demo.ipynb")
    quick_run = write(quick, tmp_path / "q.ipynb")
    shown = book.page(notebook, write(run, tmp_path / "run.ipynb"), lambda: quick_run)
    assert "quick-profile run" in label_of(shown) and "(1)" in label_of(shown)
    at = next(i for i, c in enumerate(shown.cells) if c.source == "print(2 * 21)")
    assert shown.cells[at].outputs[0].text == "42\n"
    assert shown.cells[at - 1].source == book.QUICK_OUTPUT_NOTE
    code = [c for c in shown.cells if c.cell_type == "code" and "injected" not in str(c.metadata)]
    assert code[-1].outputs == book.trim(run).cells[-1].outputs, "the rest from the full run"
    quick.cells[3].source = "print(43)"  # a quick run of other code lends no outputs
    write(quick, quick_run)
    shown = book.page(notebook, tmp_path / "run.ipynb", lambda: quick_run)
    at = next(i for i, c in enumerate(shown.cells) if c.source == "print(2 * 21)")
    assert shown.cells[at].outputs == [] and "without outputs" in label_of(shown)


def test_a_notebook_that_papermill_did_not_run_is_refused(tmp_path):
    run = executed("full")
    run.metadata.pop("papermill")
    with pytest.raises(ValueError, match="not a papermill execution"):
        book.page(write(source_of(run), tmp_path / "a.ipynb"), write(run, tmp_path / "b.ipynb"))


def test_markdown_table_formats_numbers_and_keeps_pipes_inside_cells():
    from course_lib import report

    table = report.markdown_table([("a|b", 1234567, 0.123456, None)], ["name", "n", "x", "y"]).data
    assert table.splitlines() == [
        "| name | n | x | y |",
        "|---|---|---|---|",
        "| a\\|b | 1,234,567 | 0.123 | - |",
    ]


# -- the book's sources ---------------------------------------------------------------------------


def test_every_toc_entry_exists_and_chapters_are_notebooks():
    for entry in book.toc_files():
        assert (REPO / f"{entry}.md").exists() or (REPO / f"{entry}.ipynb").exists(), entry
    notebooks = book.toc_notebooks()
    assert notebooks and all(n.parent == REPO / "notebooks" for n in notebooks)


def bib_keys(path: Path) -> list[str]:
    return re.findall(r"^\s*@\w+\s*\{\s*([^,\s]+)\s*,", path.read_text(), flags=re.M)


def test_bibliography_keys_are_unique_across_all_bib_files():
    owners: dict[str, list[str]] = {}
    for name in book.bib_files():
        for key in bib_keys(REPO / name):
            owners.setdefault(key, []).append(name)
    twice = {key: files for key, files in owners.items() if len(files) > 1}
    assert not twice, f"cite keys defined more than once (keep one, cite it everywhere): {twice}"
    assert len(owners) >= 4


def test_the_book_reads_every_chapter_bib_file(tmp_path):
    (tmp_path / "book" / "refs").mkdir(parents=True)
    for name in ("taylor.bib", "bnn.bib"):
        (tmp_path / "book" / "refs" / name).write_text("")
    (tmp_path / "_config.yml").write_text((REPO / "_config.yml").read_text())
    config = book.book_config(tmp_path)
    assert config["bibtex_bibfiles"] == [
        "references.bib",
        "book/refs/bnn.bib",
        "book/refs/taylor.bib",
    ]
    assert config["execute"]["execute_notebooks"] == "off"


def test_the_intro_cites_every_source_document():
    intro = (REPO / "book" / "intro.md").read_text()
    for key in bib_keys(REPO / "references.bib"):
        assert f"`{key}`" in intro, f"book/intro.md does not cite {key}"


def test_the_book_config_renders_markdown_outputs_and_math_offline():
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    assert config["sphinx"]["config"]["nb_render_markdown_format"] == "myst"
    assert "sphinx-mathjax-offline" in config["sphinx"]["extra_extensions"]


# -- the built book -------------------------------------------------------------------------------


def page_html(built, notebook: Path) -> str:
    return (built.html / "notebooks" / f"{notebook.stem}.html").read_text()


def visible(html: str) -> str:
    """A page's HTML without code blocks, scripts and styles."""
    return re.sub(r"<(pre|code|script|style)\b.*?</\1>", "", html, flags=re.S)


def markdown_tables(notebook: nbformat.NotebookNode) -> int:
    """How many Markdown tables the notebook's outputs hold."""
    return sum(
        len(re.findall(r"^\|?\s*:?-{3,}", o.get("data", {}).get("text/markdown", ""), flags=re.M))
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.outputs
    )


@pytest.mark.slow
def test_each_chapter_is_shown_from_its_full_run_or_a_labelled_quick_run(built_book):
    for notebook in built_book.full:
        html = page_html(built_book, notebook)
        assert "Full-profile run" in html and "quick-profile run" not in html
    for notebook in built_book.quick:
        assert "This page shows a quick-profile run" in page_html(built_book, notebook)


@pytest.mark.slow
def test_markdown_outputs_render_as_html_tables(built_book):
    for notebook in built_book.full + built_book.quick:
        html = page_html(built_book, notebook)
        raw = re.findall(RAW_TABLE_RULE, visible(html))
        assert not raw, f"{notebook.name}: Markdown table text left in the page: {raw[:3]}"
        staged = nbformat.read(built_book.staging / "notebooks" / notebook.name, as_version=4)
        assert html.count("<table") >= markdown_tables(staged), notebook.name


@pytest.mark.slow
def test_math_is_rendered_by_the_mathjax_shipped_with_the_book(built_book):
    pages = [p for p in built_book.html.rglob("*.html") if "_static" not in p.parts]
    scripts = Counter()
    for path in pages:
        scripts.update(
            re.findall(r'<script[^>]+src="([^"]*mathjax[^"]*)"', path.read_text(), flags=re.I)
        )
    assert scripts, "no page loads MathJax"
    for src in scripts:
        assert "://" not in src, f"MathJax is loaded from the network: {src}"
    assert (built_book.html / "_static" / "mathjax" / "tex-chtml.js").exists()
    assert (
        built_book.html / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2"
    ).is_dir()


@pytest.mark.slow
def test_the_references_page_lists_the_source_documents(built_book):
    html = (built_book.html / "book" / "references.html").read_text().lower()
    for title in ("resource-aware neural architecture search", "binary neural networks", "taylor"):
        assert title in html
    intro = (built_book.html / "book" / "intro.html").read_text()
    assert intro.count('href="references.html#id') >= 4, "the intro's citations link to the list"


@pytest.mark.slow
def test_course_book_pdf_prints_every_chapter_with_its_images_and_math(persian_book, tmp_path):
    """`course book --pdf`: jupyter-book's pdfhtml builder, printed by the system's Chromium
    (the book with unexecuted stand-in chapters, as persian_book builds it)."""
    try:
        book.pdf_printer()
    except RuntimeError as missing:
        pytest.skip(str(missing))
    pdf = book.build_pdf(persian_book.staging, tmp_path, quiet=True)
    data = pdf.read_bytes()
    assert pdf == tmp_path / book.PDF and data.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page\b", data)) > len(book.toc_files())
    # the one page pdfhtml prints finds its images and the MathJax shipped with the book
    page = tmp_path / book.PDF_WORK / "_build" / "html" / "index.html"
    html = page.read_text()
    images = [s for s in re.findall(r'<img\b[^>]*\bsrc="([^"]+)"', html) if ":" not in s]
    assert images and [s for s in images if not (page.parent / s).exists()] == []
    assert 'src="_static/mathjax/tex-chtml.js' in html
    assert (page.parent / "_static" / "mathjax" / "tex-chtml.js").exists()
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (Debian: poppler-utils) is needed to read the PDF's text")
    read = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True)
    text = " ".join(read.stdout.replace("\u2019", "'").split())
    for notebook in book.toc_notebooks():
        title = nbformat.read(notebook, as_version=4).cells[0].source.splitlines()[0]
        assert title.removeprefix("# ") in text, f"{notebook.name} is not in the PDF"
    assert "\\frac" not in text and "\\(" not in text, "math left as TeX: MathJax did not run"

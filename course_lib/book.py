"""The book as readers get it: every chapter page drawn from its saved full-profile run.

A full-profile run (``course run <notebook> --profile full``) keeps a trimmed copy of its
executed notebook in ``results/executed/<notebook>.ipynb`` (:func:`save_full_run`: images
downscaled and recompressed, long text outputs cut, progress bars dropped). ``course book``
then assembles a staging folder (:func:`assemble`) holding the book's sources and, for each
chapter in ``_toc.yml``, the executed notebook to show (:func:`page`): the saved full run
where there is one, else a quick-profile run made for the book, labelled as such on the page.
:func:`build` turns the staging folder into HTML with execution off and warnings as errors;
:func:`build_pdf` turns it into one PDF with jupyter-book's own ``pdfhtml`` builder, printed
by the system's Chromium.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import nbformat
import yaml
from nbformat import NotebookNode

from .paths import REPO_ROOT, RESULTS_DIR, atomic_path

EXECUTED_DIR = RESULTS_DIR / "executed"
"""Where full-profile runs keep their trimmed executed notebooks (committed)."""

MAX_IMAGE_WIDTH_PX = 1200
"""Wider PNG/JPEG outputs are downscaled to this width in a saved run."""

MAX_TEXT_LINES = 60
"""Longer text outputs keep their first and last ``MAX_TEXT_LINES // 2`` lines."""

MAX_HTML_BYTES = 200_000
"""An HTML output larger than this keeps only its plain-text form."""

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
BOOK_SOURCES = ("_toc.yml", "references.bib", "book", "_static", "course_lib/bnn/csrc")
"""What the staged book copies from the repository (besides the pages): the C++ kernel's
folder too, which chapter 5 shows an excerpt of with a ``{literalinclude}`` directive."""
STAGING = Path("_build") / "source"
PDF = Path("_build") / "pdf" / "book.pdf"
PDF_WORK = Path("_build") / "pdfhtml"
"""Where :func:`build_pdf` builds the one-page HTML it prints (kept to look at)."""
CHROMIUM_ENV = "COURSE_CHROMIUM"


# -- what a run is -------------------------------------------------------------------------


def run_profile(run: NotebookNode) -> str | None:
    """The ``profile`` parameter papermill executed ``run`` with (``None`` if not papermill's)."""
    return run.metadata.get("papermill", {}).get("parameters", {}).get("profile")


def _is_injected(cell: NotebookNode) -> bool:
    return "injected-parameters" in cell.metadata.get("tags", [])


def code_of(notebook: NotebookNode) -> list[str]:
    """The notebook's code cells without whitespace (papermill's injected cell left out):
    two notebooks with equal ``code_of`` run the same code, whatever their text or format."""
    return [
        "".join(cell.source.split())
        for cell in notebook.cells
        if cell.cell_type == "code" and not _is_injected(cell)
    ]


def full_run(notebook: Path, folder: Path | None = None) -> Path | None:
    """The saved full-profile run of ``notebook`` in ``folder`` (default
    :data:`EXECUTED_DIR`), or ``None``. Raises ``ValueError`` if the file there is not a
    full-profile run."""
    path = Path(folder or EXECUTED_DIR) / Path(notebook).name
    if not path.exists():
        return None
    profile = run_profile(nbformat.read(path, as_version=4))
    if profile != "full":
        raise ValueError(
            f"{path} is not a full-profile run (profile {profile!r}): delete it, or rerun "
            f"course run notebooks/{path.name} --profile full"
        )
    return path


def ran_code_of(executed: Path, notebook: Path, profile: str) -> bool:
    """Whether ``executed`` is a ``profile`` run of the code ``notebook`` has now."""
    run = nbformat.read(executed, as_version=4)
    source = nbformat.read(notebook, as_version=4)
    return run_profile(run) == profile and code_of(run) == code_of(source)


# -- keeping a saved run small --------------------------------------------------------------


def _cut_lines(text: str, limit: int = MAX_TEXT_LINES) -> str:
    lines = text.splitlines(keepends=True)
    if len(lines) <= limit:
        return text
    head, tail = lines[: limit // 2], lines[-(limit // 2) :]
    cut = len(lines) - len(head) - len(tail)
    return "".join(head) + f"[... {cut} lines cut from the saved output ...]\n" + "".join(tail)


def shrink_image(data: str, mime: str, max_width: int = MAX_IMAGE_WIDTH_PX) -> str:
    """A base64 PNG/JPEG no wider than ``max_width`` pixels, re-encoded smaller where that
    helps (PNG: 256-colour palette; JPEG: quality 85). Returns ``data`` itself when the
    result would not be smaller."""
    from PIL import Image

    raw = base64.b64decode(data)
    image = Image.open(io.BytesIO(raw))
    image.load()
    if mime == "image/png" and image.mode == "P" and image.width <= max_width:
        return data  # already shrunk: trimming a trimmed run changes nothing
    if image.width > max_width:
        height = round(image.height * max_width / image.width)
        image = image.resize((max_width, height), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if mime == "image/png":
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA")
        image.quantize(256, method=Image.Quantize.FASTOCTREE).save(buffer, "PNG", optimize=True)
    else:
        image.convert("RGB").save(buffer, "JPEG", quality=85, optimize=True)
    if buffer.tell() >= len(raw):
        return data
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _trim_output(output: NotebookNode) -> NotebookNode | None:
    if output.output_type == "stream":
        if output.name == "stderr":
            return None  # warnings and progress bars; the book hides stderr anyway
        output.text = _cut_lines(output.text)
        return output
    data = output.get("data")
    if data is None:  # an error output
        return output
    if WIDGET_MIME in data:
        return None  # a progress bar whose state is not saved
    for mime in ("image/png", "image/jpeg"):
        if mime in data:
            data[mime] = shrink_image(data[mime], mime)
    if len(data.get("text/html", "")) > MAX_HTML_BYTES and "text/plain" in data:
        del data["text/html"]
    if "text/plain" in data:
        data["text/plain"] = _cut_lines(data["text/plain"])
    return output


def trim(run: NotebookNode) -> NotebookNode:
    """A copy of the executed notebook ``run`` small enough to commit and to show: images
    downscaled and recompressed (:func:`shrink_image`), long text outputs cut to their first
    and last lines, stderr and progress-bar widgets dropped."""
    run = copy.deepcopy(run)
    run.metadata.pop("widgets", None)
    for cell in run.cells:
        if cell.cell_type == "code":
            trimmed = (_trim_output(output) for output in cell.outputs)
            cell.outputs = [output for output in trimmed if output is not None]
    return run


def save_full_run(executed: Path, folder: Path | None = None) -> Path:
    """Keep the trimmed copy of a full-profile execution of a chapter as
    ``<folder>/<notebook>.ipynb`` (default folder :data:`EXECUTED_DIR`; replacing the
    previous full run of that chapter).
    Raises ``ValueError`` if ``executed`` is not a papermill run of the full profile."""
    run = nbformat.read(executed, as_version=4)
    profile = run_profile(run)
    if profile != "full":
        raise ValueError(
            f"{executed} was executed with profile {profile!r}; only a full-profile run is "
            "kept for the book (course run <notebook> --profile full)"
        )
    run = trim(run)
    nbformat.validate(run)
    path = Path(folder or EXECUTED_DIR) / Path(executed).name
    with atomic_path(path) as tmp:
        nbformat.write(run, tmp)
    return path


# -- one page of the book --------------------------------------------------------------------


def added_code(run: NotebookNode, source: NotebookNode) -> set[int] | None:
    """The positions (among ``source``'s code cells) of the cells ``run`` did not execute,
    when ``source``'s code is ``run``'s with cells added and none changed or removed; else
    ``None``. Added cells (e.g. a method built from scratch, checked by an assert) leave the
    saved run's outputs valid for every other cell."""
    ran, added = iter(code_of(run)), set()
    expected = next(ran, None)
    for position, code in enumerate(code_of(source)):
        if code == expected:
            expected = next(ran, None)
        else:
            added.add(position)
    return added if expected is None else None


def _code_cells(run: NotebookNode) -> list[NotebookNode]:
    return [c for c in run.cells if c.cell_type == "code" and not _is_injected(c)]


QUICK_OUTPUT_NOTE = (
    "*The output below comes from this build's quick-profile run: the cell was added to the "
    "chapter after the saved full run.*"
)


def _with_outputs(
    source: NotebookNode,
    run: NotebookNode,
    added: set[int],
    quick: NotebookNode | None = None,
) -> NotebookNode:
    """``source``'s cells (current text) with the outputs of ``run``, which executed the
    same code but for the code cells at positions ``added``: those show the outputs of
    ``quick`` (a quick-profile run of ``source``'s code) under a note saying so, or none;
    papermill's injected-parameters cell is kept after the parameters cell."""
    merged = copy.deepcopy(source)
    injected = [c for c in run.cells if _is_injected(c)]
    quick_cells = _code_cells(quick) if quick is not None else None
    cells, done, position = [], iter(_code_cells(run)), 0
    for cell in merged.cells:
        if cell.cell_type == "code":
            twin = quick_cells[position] if position in added and quick_cells else None
            if position not in added:
                twin = next(done)
            elif twin is not None:
                note = nbformat.v4.new_markdown_cell(QUICK_OUTPUT_NOTE)
                note.metadata["tags"] = ["course-quick-output"]
                cells.append(note)
            if twin is not None:
                cell.outputs, cell.execution_count = twin.outputs, twin.execution_count
            position += 1
        cells.append(cell)
        if "parameters" in cell.metadata.get("tags", []):
            cells += injected
    merged.cells = cells
    merged.metadata = copy.deepcopy(run.metadata)
    return merged


def _admonition(kind: str, title: str, text: str) -> NotebookNode:
    fence = "`" * 3
    return nbformat.v4.new_markdown_cell(
        f"{fence}{{admonition}} {title}\n:class: {kind}\n{text}\n{fence}",
        metadata={"tags": ["course-run-label"]},
    )


def _label(
    run: NotebookNode, notebook: Path, stale: bool, added: int = 0, with_quick: bool = False
) -> NotebookNode:
    rerun = f"`course run notebooks/{notebook.name} --profile full`"
    papermill = run.metadata.get("papermill", {})
    if run_profile(run) != "full":
        return _admonition(
            "warning",
            "Quick-profile run",
            "This page shows a quick-profile run: the chapter was executed on a small "
            "subset of the data, with few epochs, when the book was built. Its numbers show "
            "that the code works, not what the method achieves. No full-profile run of "
            f"this chapter has been saved yet; {rerun} makes one.",
        )
    when = (papermill.get("end_time") or "an unknown date")[:10]
    minutes = (papermill.get("duration") or 0) / 60
    if stale:
        return _admonition(
            "warning",
            "Saved full-profile run of older code",
            f"This page shows the full-profile run saved on {when}, but this chapter's code "
            f"has changed since, so the text and the outputs below belong to that older "
            f"version. {rerun} refreshes it.",
        )
    since = ""
    if added and with_quick:
        since = (
            f" Code cells added to the chapter since that run ({added}) show the outputs of "
            "this build's quick-profile run, each under a note saying so."
        )
    elif added:
        since = (
            f" Code cells added to the chapter since that run ({added}) are shown without "
            "outputs: run the notebook to see them (the course's tests execute every one, its "
            "asserts included)."
        )
    return _admonition(
        "note",
        "Full-profile run",
        f"This page shows the saved full-profile run of this chapter ({when}, "
        f"{minutes:.0f} min), made by {rerun}.{since}",
    )


def page(notebook: Path, executed: Path, quick: Callable[[], Path] | None = None) -> NotebookNode:
    """The notebook the book shows for chapter ``notebook``: the executed notebook
    ``executed`` (a full- or quick-profile papermill run), with the current text of
    ``notebook`` when both ran the same code or the notebook only added code cells (shown
    with their outputs in the quick-profile run ``quick()`` returns, called only then, if
    that run is of the current code; else without), trimmed (:func:`trim`), and a label right under the title
    saying which run it is."""
    source = nbformat.read(notebook, as_version=4)
    run = nbformat.read(executed, as_version=4)
    if run_profile(run) is None:
        raise ValueError(f"{executed} is not a papermill execution of {Path(notebook).name}")
    added = added_code(run, source)
    stale = added is None
    fills = None
    if added and quick is not None:
        quick_run = quick()
        if ran_code_of(quick_run, notebook, "quick"):
            fills = nbformat.read(quick_run, as_version=4)
    shown = trim(run if stale else _with_outputs(source, run, added, fills))
    label = _label(run, Path(notebook), stale, len(added or ()), fills is not None)
    first = shown.cells[0] if shown.cells else None
    if first is None or first.cell_type != "markdown" or not first.source.startswith("# "):
        shown.cells.insert(0, label)
        return shown
    title, _, rest = first.source.partition("\n")
    first.source = title
    rest_cell = [nbformat.v4.new_markdown_cell(rest.strip("\n"))] if rest.strip() else []
    shown.cells[1:1] = [label, *rest_cell]
    return shown


# -- the whole book --------------------------------------------------------------------------


def toc_files(root: Path = REPO_ROOT) -> list[str]:
    """Every ``file`` of ``_toc.yml`` (the root first), as written there (no suffix)."""
    toc = yaml.safe_load((Path(root) / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({key: value for key, value in toc.items() if key != "root"})
    return files


def toc_notebooks(root: Path = REPO_ROOT) -> list[Path]:
    """The notebooks of the table of contents, in its order."""
    root = Path(root)
    return [root / f"{f}.ipynb" for f in toc_files(root) if (root / f"{f}.ipynb").exists()]


def bib_files(root: Path = REPO_ROOT) -> list[str]:
    """The bibliography: ``references.bib`` (the source documents) and every chapter's
    ``book/refs/*.bib``, relative to ``root``."""
    root = Path(root)
    return ["references.bib"] + [
        p.relative_to(root).as_posix() for p in sorted((root / "book" / "refs").glob("*.bib"))
    ]


def book_config(root: Path = REPO_ROOT) -> dict:
    """``_config.yml`` as the staged book uses it: notebooks are not executed (each page is
    an executed notebook already) and every bibliography file is read."""
    config = yaml.safe_load((Path(root) / "_config.yml").read_text())
    config.setdefault("execute", {})["execute_notebooks"] = "off"
    config["bibtex_bibfiles"] = bib_files(root)
    return config


def assemble(pages: dict[Path, NotebookNode], staging: Path, root: Path = REPO_ROOT) -> Path:
    """Write a buildable copy of the book to ``staging`` (emptied first): the book's sources
    from ``root`` and, for each notebook path in ``pages``, that page's notebook."""
    root, staging = Path(root), Path(staging)
    missing = [n.name for n in toc_notebooks(root) if n not in pages]
    if missing:
        raise ValueError(f"no page given for the chapter notebooks {missing}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in BOOK_SOURCES:
        source = root / name
        if source.is_dir():
            shutil.copytree(source, staging / name, ignore=shutil.ignore_patterns(".*"))
        elif source.exists():
            shutil.copy2(source, staging / name)
    # files next to the notebooks (images their text links to)
    shutil.copytree(
        root / "notebooks",
        staging / "notebooks",
        ignore=shutil.ignore_patterns("*.ipynb", ".*", "__pycache__"),
    )
    (staging / "_config.yml").write_text(yaml.safe_dump(book_config(root), sort_keys=False))
    for notebook, shown in pages.items():
        target = staging / Path(notebook).relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(shown, target)
    return staging


def jupyter_book() -> str:
    """The ``jupyter-book`` command of this Python environment."""
    beside = Path(sys.executable).with_name("jupyter-book")
    found = str(beside) if beside.exists() else shutil.which("jupyter-book")
    if found is None:
        raise FileNotFoundError("jupyter-book is not installed: pip install -e '.[dev]'")
    return found


def build(staging: Path, output: Path = REPO_ROOT, quiet: bool = False) -> Path:
    """Build the staged book into ``<output>/_build/html`` (emptied first; every page,
    warnings as errors) and return that folder. Raises ``RuntimeError`` with the build's
    last lines on failure."""
    html = Path(output) / "_build" / "html"
    shutil.rmtree(html, ignore_errors=True)
    command = [jupyter_book(), "build", str(staging), "--path-output", str(output)]
    command += ["--all", "-W", "--keep-going"]
    done = subprocess.run(command, capture_output=quiet, text=True)
    if done.returncode != 0:
        log = (done.stdout or "")[-6000:] + (done.stderr or "")[-3000:] if quiet else ""
        raise RuntimeError(f"the book did not build (warnings count as errors)\n{log}")
    return html


def chromium() -> str | None:
    """The system's Chromium: ``$COURSE_CHROMIUM``, else ``/usr/bin/chromium``, else
    ``chromium`` or ``chromium-browser`` on the ``PATH`` (``None`` if there is none)."""
    candidates = [os.environ.get(CHROMIUM_ENV), "/usr/bin/chromium"]
    candidates += [shutil.which(name) for name in ("chromium", "chromium-browser")]
    return next((c for c in candidates if c and Path(c).is_file()), None)


_PLAYWRIGHT_LAYOUTS = {
    # Playwright's own builds for Linux: the layout of recent releases, then older ones
    "chromium": ["chrome-linux64/chrome", "chrome-linux-arm64/chrome", "chrome-linux/chrome"],
    "chromium-headless-shell": [
        "chrome-headless-shell-linux64/chrome-headless-shell",
        "chrome-headless-shell-linux-arm64/chrome-headless-shell",
        "chrome-linux/headless_shell",
    ],
}


def playwright_browsers(executable: str, folder: Path) -> Path:
    """Make ``folder`` a Playwright browsers folder (``PLAYWRIGHT_BROWSERS_PATH``) whose
    Chromium is ``executable``: jupyter-book's pdfhtml builder launches Playwright's own
    Chromium, which ``playwright install`` downloads from Playwright's CDN (not a package
    registry); each path where this Playwright looks for it links to ``executable`` instead."""
    import playwright

    listed = Path(playwright.__file__).parent / "driver" / "package" / "browsers.json"
    revisions = {b["name"]: b["revision"] for b in json.loads(listed.read_text())["browsers"]}
    for name, paths in _PLAYWRIGHT_LAYOUTS.items():
        if name not in revisions:
            continue
        for path in paths:
            link = Path(folder) / f"{name.replace('-', '_')}-{revisions[name]}" / path
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(executable)
    return Path(folder)


def pdf_printer() -> str:
    """The Chromium that prints the PDF (:func:`chromium`). Raises ``RuntimeError`` naming
    what to install when there is none or Playwright for Python is missing."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        raise RuntimeError("the PDF needs Playwright for Python: pip install -e '.[dev]'") from None
    executable = chromium()
    if executable is None:
        raise RuntimeError(
            "the PDF is printed by Chromium and none was found: apt-get install chromium "
            f"(Debian/Ubuntu), or set {CHROMIUM_ENV} to a Chromium or Chrome binary"
        )
    return executable


def build_pdf(staging: Path, output: Path = REPO_ROOT, quiet: bool = False) -> Path:
    """Build the staged book as one PDF, ``<output>/_build/pdf/book.pdf``, with jupyter-book's
    ``pdfhtml`` builder (warnings as errors): Sphinx writes the whole book as one HTML page
    (in ``<output>/_build/pdfhtml``, so the HTML book stays as it is) and headless Chromium,
    driven by Playwright, prints it. The system's Chromium (:func:`chromium`) does the
    printing, so nothing is downloaded. Returns the PDF's path; raises ``RuntimeError``
    naming what to install when Chromium or Playwright is missing, or with the build's last
    lines when it fails."""
    executable = pdf_printer()
    work, pdf = Path(output) / PDF_WORK, Path(output) / PDF
    shutil.rmtree(work, ignore_errors=True)
    command = [jupyter_book(), "build", str(staging), "--path-output", str(work)]
    command += ["--builder", "pdfhtml", "--all", "-W", "--keep-going"]
    with tempfile.TemporaryDirectory(prefix="course-chromium-") as browsers:
        playwright_browsers(executable, Path(browsers))
        env = {**os.environ, "PLAYWRIGHT_BROWSERS_PATH": browsers}
        done = subprocess.run(command, capture_output=quiet, text=True, env=env)
    made = work / "_build" / "pdf" / "book.pdf"
    if done.returncode != 0 or not made.exists():
        log = (done.stdout or "")[-6000:] + (done.stderr or "")[-3000:] if quiet else ""
        raise RuntimeError(f"the PDF did not build (warnings count as errors)\n{log}")
    pdf.parent.mkdir(parents=True, exist_ok=True)
    os.replace(made, pdf)
    return pdf


# -- a Sphinx extension for the build (_config.yml: extra_extensions) ----------------------


def _drop_repeated_scripts(app, pagename, templatename, context, doctree) -> None:
    """Keep one copy of each script of a page. sphinx-thebe adds its inline settings with
    ``filename=None``, which Sphinx 7.4 adds again as ``''`` when writing: the page then
    declares ``THEBE_JS_URL`` twice, a console error in every browser."""
    seen, unique = set(), []
    for script in context.get("script_files", []):
        filename = getattr(script, "filename", script) or ""
        attributes = getattr(script, "attributes", {})
        key = (str(filename), tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def _one_page_at_the_top(app) -> None:
    """The singlehtml builder (jupyter-book's pdfhtml) writes the whole book to the root
    document's path, ``book/intro.html``, but links its styles, scripts and images as from
    the top folder (``_static/...``): that page, and so the PDF, would have no styles, images
    or math. Write it to ``index.html`` at the top, where its links point (and where pdfhtml
    opens it)."""
    builder = app.builder
    if builder.name != "singlehtml" or "/" not in app.config.root_doc:
        return
    outfilename = builder.get_outfilename

    def at_the_top(pagename: str) -> str:
        if pagename == app.config.root_doc:
            return os.path.join(builder.outdir, "index" + builder.out_suffix)
        return outfilename(pagename)

    builder.get_outfilename = at_the_top


def setup(app) -> dict:
    app.connect("html-page-context", _drop_repeated_scripts)
    app.connect("builder-inited", _one_page_at_the_top)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

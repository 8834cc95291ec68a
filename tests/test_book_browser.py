"""The built book as a reader sees it: every page of the table of contents opened in headless
Chromium (Playwright for Python, driving the system's Chromium) with the network blocked.
Each page loads without console errors or network requests, its images load, its tables
are HTML tables and its math is typeset by the MathJax shipped with the book.

Needs the Debian package ``chromium`` (``.ci/run`` installs it) or ``COURSE_CHROMIUM`` set to
a Chromium binary; skipped with a message where there is none. ``BOOK_SCREENSHOTS=<folder>``
saves a full-page screenshot of every page there."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pytest

from course_lib import book

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RAW_TABLE_RULE = r"\|\s*:?(?:-{3,}|[\u2013\u2014]+)\s*:?\|"
"""A Markdown table's rule row left as text (Sphinx may have turned ``---`` into dashes)."""
LOCAL_SCHEMES = {"file", "data", "blob", "about"}
LOCAL_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1"}


def chromium() -> str | None:
    candidates = [os.environ.get("COURSE_CHROMIUM"), "/usr/bin/chromium"]
    candidates += [shutil.which(name) for name in ("chromium", "chromium-browser")]
    return next((c for c in candidates if c and Path(c).exists()), None)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright is not installed: pip install -e '.[dev]'")
    executable = chromium()
    if executable is None:
        pytest.skip(
            "no Chromium found: install the Debian package `chromium` (apt-get install -y "
            "chromium; .ci/run does) or set COURSE_CHROMIUM to a Chromium binary"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


def toc_pages(html: Path) -> list[Path]:
    return [html / f"{entry}.html" for entry in book.toc_files()]


def is_local(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in LOCAL_SCHEMES or parsed.hostname in LOCAL_HOSTS


def open_offline(browser, path: Path):
    """Open ``path`` with every non-local request aborted; returns the page, the console
    errors and the blocked requests."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    blocked, errors = [], []

    def route(request_route):
        if is_local(request_route.request.url):
            request_route.continue_()
        else:
            blocked.append(request_route.request.url)
            request_route.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri(), wait_until="load")
    page.wait_for_load_state("networkidle")
    return page, errors, blocked


TYPESET = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const math = [...document.querySelectorAll('.math')];
  return {
    math: math.length,
    typeset: math.filter(m => m.querySelector('mjx-container')).length,
    mjx: document.querySelectorAll('mjx-container').length,
  };
}"""

IMAGES = """() => [...document.querySelectorAll('article img, main img')].map(i => ({
  src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0,
}))"""

PARAGRAPHS = """() => [...document.querySelectorAll('article p, article li, article td')]
  .map(p => p.innerText)"""

PROSE = """() => {
  const article = document.querySelector('article').cloneNode(true);
  article.querySelectorAll('pre, code, .highlight, mjx-container').forEach(e => e.remove());
  return article.textContent;
}"""


def expected(staging: Path, page_path: Path, html: Path) -> dict:
    """What the page's source promises: images and Markdown tables in a notebook's outputs."""
    notebook = staging / page_path.relative_to(html).with_suffix(".ipynb")
    if not notebook.exists():
        return {"images": 0, "tables": 0}
    nb = nbformat.read(notebook, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    data = [o.get("data", {}) for o in outputs]
    tables = sum(
        len(re.findall(r"^\|?\s*:?-{3,}", d.get("text/markdown", ""), flags=re.M)) for d in data
    )
    return {"images": sum("image/png" in d or "image/jpeg" in d for d in data), "tables": tables}


@pytest.mark.slow
def test_every_page_reads_offline_with_tables_figures_and_math(built_book, browser):
    shots = os.environ.get("BOOK_SCREENSHOTS")
    pages = toc_pages(built_book.html)
    assert len(pages) >= 5
    problems: dict[str, list[str]] = {}
    math_pages = 0
    for path in pages:
        name = path.relative_to(built_book.html).as_posix()
        found: list[str] = []
        page, errors, blocked = open_offline(browser, path)
        found += [f"console error: {e}" for e in errors]
        found += [f"network request (blocked): {url}" for url in blocked]
        promised = expected(built_book.staging, path, built_book.html)
        images = page.evaluate(IMAGES)
        found += [f"image did not load: {i['src'][:80]}" for i in images if not i["ok"]]
        if len(images) < promised["images"]:
            found.append(f"{len(images)} images shown, the notebook has {promised['images']}")
        tables = page.locator("article table").count()
        if tables < promised["tables"]:
            found.append(f"{tables} HTML tables, the notebook's outputs have {promised['tables']}")
        raw = [t for t in page.evaluate(PARAGRAPHS) if re.search(RAW_TABLE_RULE, t)]
        found += [f"Markdown table left as text: {t[:80]!r}" for t in raw]
        math = page.evaluate(TYPESET)
        if math["typeset"] < math["math"]:
            found.append(f"{math['math'] - math['typeset']} of {math['math']} formulas not typeset")
        math_pages += math["mjx"] > 0
        text = page.evaluate(PROSE)
        found += [f"raw TeX in the text: {m!r}" for m in re.findall(r"\\[(\[]\S{0,30}", text)]
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            page.screenshot(
                path=str(Path(shots) / (name.replace("/", "_") + ".png")), full_page=True
            )
        page.context.close()
        if found:
            problems[name] = found
    report = [f"{name}: {problem}" for name, found in problems.items() for problem in found]
    assert not report, "what a reader would see wrong:\n" + "\n".join(report)
    assert math_pages >= 2, "the chapters' formulas should be typeset on at least two pages"


# -- the Persian part ----------------------------------------------------------------------------

FA_CHAPTERS = {
    "01_baseline": "baseline",
    "02_pruning": "pruning",
    "03_taylor": "taylor",
    "04_nas": "nas",
    "05_bnn": "bnn",
    "06_bnn_methods": "bnn_methods",
}
FA_PAGES = ["index", *FA_CHAPTERS, "assignments", "glossary"]

PERSIAN = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  await document.fonts.ready;
  const page = document.querySelector('article .fa-page');
  if (!page) return null;
  const direction = e => getComputedStyle(e).direction;
  const prose = [...page.querySelectorAll('h1, h2, p, li, td, th')]
    .filter(e => !e.closest('pre, .highlight, mjx-container, .fa-ltr'));
  const islands = [...page.querySelectorAll('pre, code, mjx-container, .fa-ltr')];
  const math = [...page.querySelectorAll('.math')];
  const x = (node, start) => {
    const range = document.createRange();
    range.setStart(node, start);
    range.setEnd(node, start + 1);
    return range.getBoundingClientRect().x;
  };
  // "Persian (English)": the Persian comes first, so it sits right of the English
  const term = page.querySelector('.fa-term-first');
  const english = term && term.querySelector('.fa-en');
  // a signed number ("-4", "+1") keeps its sign on the left
  const signed = [...page.querySelectorAll('.fa-ltr')]
    .find(e => /^[+-][0-9]/.test(e.textContent));
  // a Latin word followed by a number ("CIFAR-10 60000"): the number is read after the
  // word, right to left, so its box lies left of the word's
  const latinThenNumber = [...page.querySelectorAll('.fa-latin')]
    .filter(e => e.nextSibling && e.nextSibling.nodeType === Node.TEXT_NODE
      && /^ [0-9]/.test(e.nextSibling.textContent))
    .map(e => {
      const range = document.createRange();
      const digits = e.nextSibling.textContent.slice(1).match(/^[0-9][0-9.,]*/)[0];
      range.setStart(e.nextSibling, 1);
      range.setEnd(e.nextSibling, 1 + digits.length);
      const word = e.getBoundingClientRect(), number = range.getBoundingClientRect();
      return {text: e.textContent + ' ' + digits, sameLine: Math.abs(word.y - number.y) < 4,
              numberRight: number.right, wordLeft: word.left};
    });
  return {
    latinThenNumber,
    dir: page.getAttribute('dir'), lang: page.getAttribute('lang'),
    notRtl: prose.filter(e => direction(e) !== 'rtl').map(e => e.textContent.slice(0, 40)),
    notLtr: islands.filter(e => direction(e) !== 'ltr').map(e => e.textContent.slice(0, 40)),
    math: math.length,
    untypeset: math.filter(m => !m.querySelector('mjx-container')).length,
    images: [...page.querySelectorAll('img')].map(i => i.complete && i.naturalWidth > 0),
    tables: page.querySelectorAll('table').length,
    resultsTables: page.querySelectorAll('table.fa-results-table').length,
    noResult: page.querySelectorAll('.fa-no-result').length,
    font: [...document.fonts].filter(f => f.family.replace(/"/g, '') === 'Vazirmatn Course')
      .map(f => f.status),
    termOrder: english ? [x(term.firstChild, 0), x(english.firstChild, 0)] : null,
    signOrder: signed ? [x(signed.firstChild, 0), x(signed.firstChild, 1)] : null,
  };
}"""


@pytest.mark.slow
def test_the_persian_pages_read_right_to_left_offline(persian_book, browser):
    """Every Persian page, in a book whose chapter pages are stand-ins (test_book_fa.py):
    right to left with code, math and numbers left to right inside (a number after a Latin
    word read after it: the index page's "CIFAR-10 60000"), the shipped font
    loaded, results as HTML tables with their figures (or the labelled note), math typeset,
    no console error and no request leaving the machine."""
    from course_lib.results import load_results

    shots = os.environ.get("BOOK_SCREENSHOTS")
    problems: dict[str, list[str]] = {}
    signed = terms = latin_runs = 0
    for name in FA_PAGES:
        page, errors, blocked = open_offline(
            browser, persian_book.html / "book" / "fa" / f"{name}.html"
        )
        found = [f"console error: {e}" for e in errors]
        found += [f"network request (blocked): {url}" for url in blocked]
        seen = page.evaluate(PERSIAN)
        if seen is None:
            problems[name] = ["no right-to-left block (.fa-page) in the article"]
            page.context.close()
            continue
        if (seen["dir"], seen["lang"]) != ("rtl", "fa"):
            found.append(f"dir={seen['dir']} lang={seen['lang']}, want rtl, fa")
        found += [f"prose not right to left: {t!r}" for t in seen["notRtl"][:3]]
        found += [f"code/math/number not left to right: {t!r}" for t in seen["notLtr"][:3]]
        if seen["font"] != ["loaded"]:
            found.append(f"the Vazirmatn font did not load: {seen['font']}")
        if seen["untypeset"]:
            found.append(f"{seen['untypeset']} of {seen['math']} formulas not typeset")
        if not all(seen["images"]):
            found.append("an image did not load")
        if name in FA_CHAPTERS:
            if not seen["math"]:
                found.append("a chapter page without its key equations")
            if load_results(FA_CHAPTERS[name]) is None:
                if seen["noResult"] < 1 or seen["resultsTables"]:
                    found.append("no saved result, but no labelled note")
            elif seen["resultsTables"] != 1 or len(seen["images"]) < 1:
                found.append(
                    f"{seen['resultsTables']} results tables, {len(seen['images'])} figures"
                )
        if seen["termOrder"]:
            terms += 1
            persian, english = seen["termOrder"]
            if not persian > english:
                found.append(f"'Persian (English)' laid out left to right: {seen['termOrder']}")
        for run in seen["latinThenNumber"]:
            if not run["sameLine"]:
                continue  # wrapped between the word and the number: no order to see
            latin_runs += 1
            if not run["numberRight"] <= run["wordLeft"] + 0.5:
                found.append(f"a number shows before the Latin word it follows: {run}")
        if seen["signOrder"]:
            signed += 1
            sign, digit = seen["signOrder"]
            if not sign < digit:
                found.append(f"a signed number shows its sign on the right: {seen['signOrder']}")
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(shots) / f"fa_{name}.png"), full_page=True)
        page.context.close()
        if found:
            problems[name] = found
    report = [f"{name}: {problem}" for name, found in problems.items() for problem in found]
    assert not report, "what a Persian reader would see wrong:\n" + "\n".join(report)
    assert terms >= 5 and signed >= 1 and latin_runs >= 1, (terms, signed, latin_runs)

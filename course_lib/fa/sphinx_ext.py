"""Sphinx directives and a role for the Persian pages (``book/fa/``).

- ``{results-table} <chapter>``: the chapter's results table from ``results/<chapter>.json``
  as ``book/fa/results.yml`` says, with where the numbers came from; a labelled note when no
  full-profile result is saved yet; a build error when the file lacks a metric.
- ``{results-figure} <chapter>``: the chapter's main figure, drawn from the same file; the
  directive's content is the Persian caption.
- ``{chapter-links} <chapter>``: the English chapter (a link once it is in the table of
  contents, plain text before), its notebook and the command of its full run.
- ``{fa-glossary}``: the glossary page, from ``book/fa/glossary.yml``.
- ``{assignment-points}``: each nbgrader assignment's points, from its source notebook.
- ``{fa-code} notebooks/03_taylor.ipynb`` with ``:cell: <id>``: that code cell of the English
  notebook (its ``id`` field), shown left to right and highlighted as Python, under a line
  naming the notebook; the page is rebuilt when the notebook changes.
- role ``{fa-term}`pruning``` (or ``{fa-term}`هرس‌شده <pruning>```): the Persian term; its
  first use on a page adds the English in parentheses and links to the glossary.
- role ``{fa-value}`taylor:params_removed_fraction:percent```: one saved metric of
  ``results/<chapter>.json`` (dotted key into its metrics, a format of ``spec.FORMATS``),
  left to right; ``ratio`` and ``ms`` add their interval when one is saved.

Pages under ``fa_pages`` (default ``book/fa/``) are wrapped in ``<div dir="rtl" lang="fa">``
and styled by ``static/course-fa.css`` (Vazirmatn, shipped in ``static/fonts``). On those pages
each run of Latin words in the prose (``ReCU``, ``ResNet-20``, ``ONNX Runtime``) becomes a
left-to-right isolate (``<span class="fa-ltr fa-latin">``, :data:`LATIN_RUN`), so that a number
after it keeps its place: "ReCU 600 ایپاک" reads ReCU, then 600, from the right.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx import addnodes
from sphinx.util.docutils import ReferenceRole, SphinxDirective, SphinxRole

from .. import paths, results
from . import assignments, figures, glossary, spec

STATIC = Path(__file__).parent / "static"
NUMBER = re.compile(r"((?<![\w.\-])[+\-\u2212]?\d+(?:[.,]\d+)*(?:%|x)?)(?!\w)")
"""A number inside Persian text ("-4", "+1", "92%", "2.68x", "10,000"); not the digits of a
name ("CIFAR-10", "VGG16", "3x3")."""
LATIN_WORD = r"[A-Za-z][A-Za-z0-9]*(?:[-.+_/'][A-Za-z0-9]+)*\+*"
LATIN_RUN = re.compile(rf"{LATIN_WORD}(?: +{LATIN_WORD})*")
"""Latin words (each starting with a letter: ``CIFAR-10``, ``VGG16``, ``C++``), the spaces
between them included, so that an English phrase stays one left-to-right run; a number
after them is not part of the run ("ReCU 600": the run is ``ReCU``)."""
FIGURE_NUMBER = re.compile(r'<span class="caption-number">Fig\. ([0-9.]+) </span>')
CSS = "course-fa.css"


class fa_term_link(nodes.inline):
    """A term's first use on a page; becomes a link to the glossary entry when resolved."""


# -- reading the data files -------------------------------------------------------------------


def _glossary(env) -> glossary.Glossary:
    path = Path(env.srcdir) / env.config.fa_glossary
    env.note_dependency(str(path))
    return glossary.load_glossary(path)


def _spec(env) -> spec.Spec:
    path = Path(env.srcdir) / env.config.fa_results_spec
    env.note_dependency(str(path))
    return spec.load_spec(path)


def _record(env, chapter: str) -> dict | None:
    folder = Path(env.config.fa_results_dir or paths.RESULTS_DIR)
    path = folder / f"{chapter}.json"
    env.note_dependency(str(path))
    try:
        return results.load_results(chapter, folder)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path} is not valid JSON ({error}): restore it from git, or rerun the chapter's "
            "full profile"
        ) from error


def _message(error: Exception) -> str:
    """An error's message (a ``KeyError`` would quote it)."""
    return str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)


def _ltr(text: str) -> nodes.inline:
    """Left-to-right text inside a Persian paragraph (numbers, units, names)."""
    return nodes.inline(text, text, classes=["fa-ltr"])


def _persian(text: str) -> list[nodes.Node]:
    """Persian text with each number (signed, with % or x) kept left to right, so that
    "-4" or "+1" do not show as "4-" or "1+" in a right-to-left line."""
    parts: list[nodes.Node] = []
    for i, piece in enumerate(NUMBER.split(text)):
        if piece:
            parts.append(_ltr(piece) if i % 2 else nodes.Text(piece))
    return parts


def _paragraph(*parts: str | nodes.Node) -> nodes.paragraph:
    """A paragraph of Persian strings (numbers kept left to right) and ready nodes."""
    children = [c for p in parts for c in (_persian(p) if isinstance(p, str) else [p])]
    return nodes.paragraph("", "", *children)


def _table(headers: list[str], rows: list[list[list[nodes.Node]]], classes: list[str]):
    table = nodes.table(classes=classes)
    group = nodes.tgroup(cols=len(headers))
    table += group
    group += [nodes.colspec(colwidth=1) for _ in headers]
    head = nodes.thead()
    head += nodes.row("", *[nodes.entry("", _paragraph(h)) for h in headers])
    body = nodes.tbody()
    for cells in rows:
        body += nodes.row("", *[nodes.entry("", _paragraph(*cell)) for cell in cells])
    group += [head, body]
    return table


def _note(title: str, *paragraphs: nodes.paragraph, kind: str = "note") -> nodes.admonition:
    note = nodes.admonition("", nodes.title(title, title), *paragraphs)
    note["classes"] += [kind, "fa-no-result"]
    return note


# -- directives ---------------------------------------------------------------------------------


class ChapterDirective(SphinxDirective):
    required_arguments = 1

    def chapter(self) -> tuple[spec.ChapterSpec, dict | None]:
        try:
            chapter = _spec(self.env).chapter(self.arguments[0])
            return chapter, _record(self.env, chapter.name)
        except (KeyError, ValueError, FileNotFoundError) as error:
            raise self.error(_message(error)) from error

    def no_result(self, chapter: spec.ChapterSpec) -> nodes.admonition:
        return _note(
            "هنوز نتیجهٔ اجرای کامل ذخیره نشده است",
            _paragraph(
                "برای این فصل هنوز هیچ اجرای کاملی ذخیره نشده است، پس جدول نتایج هنوز چیزی برای "
                "نشان دادن ندارد. این دستور فصل را با تنظیمات کامل اجرا می‌کند و نتیجه را در ",
                nodes.literal(text=f"results/{chapter.name}.json"),
                " می‌نویسد؛ ساخت بعدی کتاب آن را از همان فایل می‌خواند: ",
                nodes.literal(text=chapter.command),
            ),
        )


class ResultsTable(ChapterDirective):
    def run(self) -> list[nodes.Node]:
        chapter, record = self.chapter()
        if record is None:
            return [self.no_result(chapter)]
        try:
            cells = spec.table(chapter, record)
        except (KeyError, ValueError) as error:
            raise self.error(_message(error)) from error
        with_source = any(c.source for c in cells)
        headers = ["کمیت", "کلید در فایل نتایج", "مقدار اندازه‌گیری‌شده"]
        headers += ["گزارش منبع"] if with_source else []
        rows = []
        for c in cells:
            value = [_ltr(c.value)]
            if c.note:
                value.append(nodes.inline("", f" ({c.note})", classes=["fa-note"]))
            row = [[c.label], [nodes.literal(text=c.key)], value]
            rows.append(row + ([[c.source or "-"]] if with_source else []))
        return [_table(headers, rows, ["fa-results-table"]), self.provenance(chapter, record)]

    def provenance(self, chapter: spec.ChapterSpec, record: dict) -> nodes.paragraph:
        machine = record.get("machine", {})
        cpu = f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores"
        minutes = f"{record.get('wall_time_s', 0) / 60:.0f} min"
        return _paragraph(
            "این اعداد هنگام ساختن کتاب از ",
            nodes.literal(text=f"results/{chapter.name}.json"),
            " خوانده شده‌اند: اجرای کامل در ",
            _ltr(str(record.get("date", "?"))[:10]),
            "، کامیت ",
            nodes.literal(text=str(record.get("commit", "?"))[:12]),
            "، ",
            _ltr(minutes),
            " روی ",
            _ltr(cpu),
            ". برای ساختن دوبارهٔ آن‌ها: ",
            nodes.literal(text=record.get("command", chapter.command)),
        )


class ResultsFigure(ChapterDirective):
    has_content = True
    option_spec = {"alt": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        chapter, record = self.chapter()
        if chapter.figure is None:
            raise self.error(f"{self.env.config.fa_results_spec} has no figure for {chapter.name}")
        if record is None:
            note = _paragraph(
                "شکل این فصل هم پس از ذخیرهٔ نخستین اجرای کامل از همان فایل کشیده می‌شود."
            )
            note["classes"] += ["fa-no-result", "fa-no-result-figure"]
            return [note]
        try:
            figure = figures.draw(chapter.figure, record["metrics"], chapter.name)
        except (KeyError, ValueError) as error:
            raise self.error(_message(error)) from error
        alt = self.options.get("alt") or f"figure drawn from results/{chapter.name}.json"
        node = nodes.figure(classes=["fa-results-figure"])
        node += nodes.image(uri=figures.svg_data_uri(figure), alt=alt)
        if self.content:
            parsed = nodes.container()
            self.state.nested_parse(self.content, self.content_offset, parsed)
            first = parsed.children[0] if parsed.children else nodes.paragraph()
            node += nodes.caption("", "", *first.children)
        return [node]


class ChapterLinks(ChapterDirective):
    def run(self) -> list[nodes.Node]:
        chapter, _ = self.chapter()
        notebook = chapter.notebook
        if chapter.docname in self.env.found_docs:
            link = addnodes.pending_xref(
                "",
                nodes.inline("", ""),
                refdomain="std",
                reftype="doc",
                reftarget="/" + chapter.docname,
                refexplicit=False,
                refwarn=True,
                refdoc=self.env.docname,
            )
            english = ["فصل انگلیسی: ", link]
        else:
            english = [
                "فصل انگلیسی هنوز به کتاب اضافه نشده است؛ نوت‌بوک آن ",
                nodes.literal(text=notebook),
                " خواهد بود.",
            ]
        items = [
            english,
            [
                "نوت‌بوک فصل: ",
                nodes.literal(text=notebook),
                " (در JupyterLab باز کنید، یا با ",
                nodes.literal(text=f"course run {notebook}"),
                " به‌صورت سریع اجرا کنید)",
            ],
            ["اجرای کامل و ذخیرهٔ نتایج: ", nodes.literal(text=chapter.command)],
        ]
        bullets = nodes.bullet_list(classes=["fa-chapter-links"])
        bullets += [nodes.list_item("", _paragraph(*item)) for item in items]
        return [bullets]


def _seeds(numbers: tuple[str, ...]) -> str:
    if not numbers:
        return ""
    word = "منبع" if len(numbers) == 1 else "منبع‌های"
    return f" ({word} {'، '.join(numbers)})"


def _other_words(term: glossary.Term) -> list[nodes.Node]:
    """The sources' other words for a term (allowed) and the words the course does not use
    for it, with why, after its note."""
    parts: list[nodes.Node] = []
    if term.variants:
        words = "، ".join(f"«{v.fa}»{_seeds(v.seeds)}" for v in term.variants)
        text = f" در منابع همچنین: {words}."
        parts.append(nodes.inline(text, text, classes=["fa-note", "fa-variants"]))
    for rejected in term.rejected:
        text = f" «{rejected.fa}» برای این مفهوم به کار نمی‌رود: {rejected.reason}."
        parts.append(nodes.inline(text, text, classes=["fa-note", "fa-rejected"]))
    return parts


class Glossary(SphinxDirective):
    def run(self) -> list[nodes.Node]:
        try:
            terms = _glossary(self.env)
        except (ValueError, FileNotFoundError) as error:
            raise self.error(str(error)) from error
        rows = [
            [[nodes.strong(t.fa, t.fa)], [_ltr(t.en)], [t.note, *_other_words(t)]]
            for t in sorted(terms.values(), key=lambda t: t.key)
        ]
        table = _table(["فارسی", "English", "معنا در این درس"], rows, ["fa-glossary"])
        body = table.children[0].children[-1]
        for row, term in zip(
            body.children, sorted(terms.values(), key=lambda t: t.key), strict=True
        ):
            row["ids"].append(term.anchor)
        return [table]


class AssignmentPoints(SphinxDirective):
    def run(self) -> list[nodes.Node]:
        folder = Path(self.env.config.fa_assignments_dir or assignments.SOURCE_DIR)
        try:
            found = assignments.all_points(folder)
        except FileNotFoundError as error:
            raise self.error(str(error)) from error
        for item in found:
            self.env.note_dependency(str(folder / item.name / f"{item.name}.ipynb"))
        headers = ["تمرین", "نمرهٔ خودکار (سلول‌های آزمون)", "نمرهٔ دستی (پاسخ‌های نوشتاری)", "جمع"]
        rows = [
            [
                [nodes.literal(text=p.name)],
                [_ltr(f"{p.auto:g}")],
                [_ltr(f"{p.manual:g}")],
                [_ltr(f"{p.total:g}")],
            ]
            for p in found
        ]
        return [_table(headers, rows, ["fa-assignment-points"])]


class NotebookCode(SphinxDirective):
    """``{fa-code} <notebook>`` with ``:cell: <id>``: the English notebook's own code."""

    required_arguments = 1
    option_spec = {"cell": directives.unchanged_required}

    def run(self) -> list[nodes.Node]:
        notebook, cell_id = self.arguments[0], self.options.get("cell", "").strip()
        where = f"{{fa-code}} on page {self.env.docname}"
        if not cell_id:
            raise self.error(f"{where}: name the cell of {notebook} to show (:cell: <id>)")
        root = Path(self.env.config.fa_code_root or paths.REPO_ROOT)
        path = root / notebook
        if not path.is_file():
            raise self.error(
                f"{where}: no notebook {notebook} (looked for {path}; cell {cell_id}): "
                "give its path from the repository's root, e.g. notebooks/03_taylor.ipynb"
            )
        self.env.note_dependency(str(path))
        try:
            cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise self.error(f"{where}: {notebook} is not a notebook ({error})") from error
        cell = next((c for c in cells if c.get("id") == cell_id), None)
        if cell is None:
            raise self.error(
                f"{where}: notebook {notebook} has no cell with id {cell_id!r}: the cell was "
                'removed or its id changed; list the ids with python -c "import json; '
                f"[print(c['id'], c['source'][:1]) for c in json.load(open('{notebook}'))"
                "['cells']]\""
            )
        if cell.get("cell_type") != "code":
            raise self.error(
                f"{where}: cell {cell_id!r} of {notebook} is a {cell.get('cell_type')} cell, "
                "not a code cell"
            )
        source = cell["source"]
        code = ("".join(source) if isinstance(source, list) else source).rstrip()
        block = nodes.literal_block(code, code, language="python", classes=["fa-code"])
        self.set_source_info(block)
        caption = _paragraph(
            "کد از نوت‌بوک انگلیسی ",
            nodes.literal(text=notebook),
            " (سلول ",
            nodes.literal(text=cell_id),
            "):",
        )
        caption["classes"] += ["fa-code-caption"]
        return [nodes.container("", caption, block, classes=["fa-code-cell"])]


# -- the term role -----------------------------------------------------------------------------


class TermRole(ReferenceRole):
    def run(self) -> tuple[list[nodes.Node], list[nodes.system_message]]:
        try:
            term = _glossary(self.env).term(self.target)
        except (KeyError, ValueError, FileNotFoundError) as error:
            message = self.inliner.reporter.error(_message(error), line=self.lineno)
            return [self.inliner.problematic(self.rawtext, self.rawtext, message)], [message]
        shown = self.title if self.has_explicit_title else term.fa
        seen = self.env.temp_data.setdefault("fa_terms_seen", set())
        if term.key in seen:
            return [nodes.inline(shown, shown, classes=["fa-term"])], []
        seen.add(term.key)
        node = fa_term_link("", "", classes=["fa-term", "fa-term-first"], anchor=term.anchor)
        node += nodes.Text(shown + " (")
        node += nodes.inline(term.en, term.en, classes=["fa-ltr", "fa-en"])
        node += nodes.Text(")")
        return [node], []


class ValueRole(SphinxRole):
    """``{fa-value}`<chapter>:<dotted key>:<format>```: one saved metric, left to right."""

    def run(self) -> tuple[list[nodes.Node], list[nodes.system_message]]:
        where = f"{{fa-value}} on page {self.env.docname}"
        try:
            chapter, key, kind = (part.strip() for part in self.text.split(":"))
        except ValueError:
            return self.fail(
                f"{where}: write {{fa-value}}`<chapter>:<key>:<format>` "
                f"(e.g. taylor:params_removed_fraction:percent), not {self.text!r}"
            )
        try:
            entry = _spec(self.env).chapter(chapter)
            record = _record(self.env, chapter)
            if record is None:
                text = "نتیجهٔ اجرای کامل هنوز ذخیره نشده است"
                return [nodes.inline(text, text, classes=["fa-value", "fa-no-result"])], []
            spec.check_full(record, chapter, entry.command)
            text = spec.inline_value(record["metrics"], key, kind, chapter, where)
        except (KeyError, ValueError, FileNotFoundError) as error:
            return self.fail(_message(error))
        return [nodes.inline(text, text, classes=["fa-ltr", "fa-value"])], []

    def fail(self, text: str) -> tuple[list[nodes.Node], list[nodes.system_message]]:
        message = self.inliner.reporter.error(text, line=self.lineno)
        return [self.inliner.problematic(self.rawtext, self.rawtext, message)], [message]


def _link_terms(app, doctree, docname: str) -> None:
    """Turn each term's first use into a link to its row on the glossary page."""
    target = app.config.fa_glossary_page
    for node in list(doctree.findall(fa_term_link)):
        uri = "" if docname == target else app.builder.get_relative_uri(docname, target)
        link = nodes.reference(
            "",
            "",
            *node.children,
            refuri=f"{uri}#{node['anchor']}",
            classes=node["classes"],
            internal=True,
        )
        node.replace_self(link)


# -- left-to-right runs in Persian prose ------------------------------------------------------

KEEP_AS_IS = (
    nodes.FixedTextElement,  # literal blocks, doctest blocks
    nodes.literal,
    nodes.math,
    nodes.math_block,
    nodes.raw,
    nodes.comment,
    nodes.citation_reference,
    nodes.image,
)


def _kept(node: nodes.Node) -> bool:
    """Text the transform leaves alone: code, math, raw, and what is left to right already."""
    ancestor = node.parent
    while ancestor is not None:
        if isinstance(ancestor, KEEP_AS_IS):
            return True
        classes = ancestor.get("classes", []) if isinstance(ancestor, nodes.Element) else []
        if "fa-ltr" in classes or any(c.startswith("bibtex") for c in classes):
            return True
        ancestor = ancestor.parent
    return False


def latin_classes(run: str) -> list[str]:
    """An isolate's classes: a run with spaces (several words) may wrap at them; a single
    word, hyphens included (``AVX-512``), stays on one line (``course-fa.css``)."""
    return ["fa-ltr", "fa-latin", *(["fa-latin-words"] if " " in run else [])]


def isolate_latin(doctree: nodes.Node) -> int:
    """Wrap each run of Latin words (:data:`LATIN_RUN`) of the text in ``doctree`` in a
    left-to-right isolate; returns how many runs were wrapped."""
    wrapped = 0
    for text in list(doctree.findall(nodes.Text)):
        if _kept(text) or not LATIN_RUN.search(text.astext()):
            continue
        parts: list[nodes.Node] = []
        source, at = text.astext(), 0
        for match in LATIN_RUN.finditer(source):
            if match.start() > at:
                parts.append(nodes.Text(source[at : match.start()]))
            parts.append(
                nodes.inline(match.group(0), match.group(0), classes=latin_classes(match.group(0)))
            )
            at = match.end()
            wrapped += 1
        if at < len(source):
            parts.append(nodes.Text(source[at:]))
        text.parent.replace(text, parts)
    return wrapped


def _isolate_latin(app, doctree, docname: str) -> None:
    if docname.startswith(app.config.fa_pages):
        isolate_latin(doctree)


# -- the page -----------------------------------------------------------------------------------


def _right_to_left(app, pagename: str, templatename, context: dict, doctree) -> None:
    """Wrap a Persian page's body in a right-to-left block; figure numbers read شکل."""
    if pagename.startswith(app.config.fa_pages) and "body" in context:
        body = FIGURE_NUMBER.sub(r'<span class="caption-number">شکل \1 </span>', context["body"])
        context["body"] = f'<div class="fa-page" dir="rtl" lang="fa">\n{body}</div>'


def _add_static(app, config) -> None:
    config.html_static_path.append(str(STATIC))


def setup(app) -> dict:
    app.add_config_value("fa_pages", "book/fa/", "env")
    app.add_config_value("fa_glossary", str(glossary.GLOSSARY_FILE), "env")
    app.add_config_value("fa_glossary_page", "book/fa/glossary", "env")
    app.add_config_value("fa_results_spec", str(spec.SPEC_FILE), "env")
    app.add_config_value("fa_results_dir", None, "env")
    app.add_config_value("fa_assignments_dir", None, "env")
    app.add_config_value("fa_code_root", None, "env")
    app.add_node(fa_term_link)
    app.add_role("fa-term", TermRole())
    app.add_role("fa-value", ValueRole())
    app.add_directive("results-table", ResultsTable)
    app.add_directive("results-figure", ResultsFigure)
    app.add_directive("chapter-links", ChapterLinks)
    app.add_directive("fa-glossary", Glossary)
    app.add_directive("assignment-points", AssignmentPoints)
    app.add_directive("fa-code", NotebookCode)
    app.connect("config-inited", _add_static)
    app.connect("doctree-resolved", _link_terms)
    app.connect("doctree-resolved", _isolate_latin)
    app.connect("html-page-context", _right_to_left)
    app.add_css_file(CSS)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

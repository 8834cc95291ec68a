"""Which Persian heading covers each section of an English chapter: ``book/fa/sections.yml``.

One entry per chapter, named like its results file::

    taylor:                          # chapter name (results/taylor.json, book/fa/results.yml)
      page: 03_taylor                # book/fa/03_taylor.md
      notebook: notebooks/03_taylor.ipynb
      sections:                      # every ## and ### heading of the notebook's Markdown
        - en: "What the seed measured"         # as written, without the #s
          fa: "آنچه منبع اندازه گرفت"          # a heading on the page, without the #s

Several English headings may share one Persian heading. ``tests/test_book_fa.py`` checks
that every English heading is mapped, that every Persian heading is on the page and that
the page carries 1,200-1,800 words of Persian prose (:func:`prose_words`), so a page cannot
silently fall behind its chapter.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

SECTIONS_FILE = Path("book") / "fa" / "sections.yml"
PROSE_WORDS = (1200, 1800)
"""How many words of Persian prose a chapter page carries (:func:`prose_words`)."""

PERSIAN_LETTER = re.compile("[\u0620-\u064a\u066e-\u06d3\u06d5\u06ee\u06ef\u06fa-\u06ff]")
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,}|:{3,})")


@dataclass(frozen=True)
class Section:
    en: str
    fa: str


@dataclass(frozen=True)
class ChapterSections:
    name: str
    page: str
    notebook: str
    sections: tuple[Section, ...]

    def page_path(self, root: Path) -> Path:
        return Path(root) / "book" / "fa" / f"{self.page}.md"


def _problems(name: object, entry: object) -> list[str]:
    if not isinstance(entry, dict):
        return [f"{name}: not a mapping (page, notebook, sections)"]
    problems = [f"{name}: '{k}' is missing" for k in ("page", "notebook") if not entry.get(k)]
    unknown = set(entry) - {"page", "notebook", "sections"}
    if unknown:
        problems.append(f"{name}: unknown fields {sorted(unknown)}")
    sections = entry.get("sections")
    if sections is None:
        sections = []
    if not isinstance(sections, list):
        return [*problems, f"{name}: 'sections' is a list of {{en, fa}}"]
    for i, item in enumerate(sections):
        if (
            not isinstance(item, dict)
            or set(item) != {"en", "fa"}
            or not all(isinstance(item[k], str) and item[k].strip() for k in ("en", "fa"))
        ):
            problems.append(f"{name}, section {i}: needs exactly 'en' and 'fa', both text")
    english = [item.get("en") for item in sections if isinstance(item, dict)]
    twice = sorted({e for e in english if english.count(e) > 1 and isinstance(e, str)})
    problems += [f"{name}: '{e}' is mapped twice" for e in twice]
    return problems


def load_sections(path: Path | str = SECTIONS_FILE) -> dict[str, ChapterSections]:
    """Read and check the section map; ``ValueError`` lists every problem found."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no section map at {path}")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path} must map chapter names to their entries")
    problems = [p for name, entry in raw.items() for p in _problems(name, entry)]
    if problems:
        raise ValueError(f"{path}:\n  " + "\n  ".join(problems))
    return {
        name: ChapterSections(
            name,
            entry["page"],
            entry["notebook"],
            tuple(
                Section(" ".join(s["en"].split()), " ".join(s["fa"].split()))
                for s in entry.get("sections") or []
            ),
        )
        for name, entry in raw.items()
    }


def _headings(lines: list[str], levels: range) -> list[str]:
    """The ATX headings of Markdown ``lines`` outside fenced blocks, at ``levels``."""
    found, fence = [], None
    for line in lines:
        opened = FENCE.match(line)
        if fence:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = None
            continue
        if opened:
            fence = opened.group(1)
            continue
        heading = HEADING.match(line)
        if heading and len(heading.group(1)) in levels:
            found.append(" ".join(heading.group(2).split()))
    return found


def notebook_headings(path: Path | str) -> list[str]:
    """The ``##`` and ``###`` headings of a notebook's Markdown cells, as written."""
    notebook = json.loads(Path(path).read_text(encoding="utf-8"))
    found = []
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":
            source = cell["source"]
            text = "".join(source) if isinstance(source, list) else source
            found += _headings(text.splitlines(), range(2, 4))
    return found


def page_headings(path: Path | str) -> list[str]:
    """Every ``#``-heading of a MyST page (any level), without the ``#``s."""
    return _headings(Path(path).read_text(encoding="utf-8").splitlines(), range(1, 7))


CODE_DIRECTIVES = {
    "code",
    "code-block",
    "code-cell",
    "sourcecode",
    "literalinclude",
    "math",
    "raw",
    "eval-rst",
    "toctree",
    "bibliography",
    "fa-code",
    "results-table",
    "chapter-links",
    "fa-glossary",
    "assignment-points",
}
"""Directives whose content is not prose (code, math, data)."""


def _blank(match: re.Match) -> str:
    return re.sub(r"[^\n]", " ", match.group(0))


def prose(text: str, directive_bodies: bool = False) -> str:
    """A MyST page's prose, every other part blanked and the lines kept (so a match's line
    is the page's line): front matter, fenced blocks (code, and directives: their name,
    argument and options always, their content unless ``directive_bodies`` and the
    directive holds text, like ``{note}`` or a figure's caption), tables, comments,
    labels, display and inline math, roles with their content and inline code."""
    lines = text.split("\n")
    if lines and lines[0].strip() == "---" and "---" in (x.strip() for x in lines[1:]):
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
        lines[: end + 1] = [""] * (end + 1)
    kept: list[str] = []
    stack: list[tuple[str, bool, bool]] = []  # fence, content kept, still in its options
    for line in lines:
        opened = FENCE.match(line)
        rest = line[opened.end() :].strip() if opened else ""
        if stack:
            fence, keep, options = stack[-1]
            if opened and not rest and opened.group(1)[0] == fence[0]:
                if len(opened.group(1)) >= len(fence):
                    stack.pop()
                    kept.append("")
                    continue
            if not keep:
                kept.append("")
                continue
            if options and re.match(r"\s*:[\w-]+:", line):
                kept.append("")
                continue
            stack[-1] = (fence, keep, False)
        if opened:
            name = re.match(r"\{([\w:-]+)\}", rest)
            keep = bool(directive_bodies and name and name.group(1) not in CODE_DIRECTIVES)
            stack.append((opened.group(1), keep, True))
            kept.append("")
            continue
        stripped = line.lstrip()
        if stripped.startswith(("|", "%")) or re.match(r"\([\w.-]+\)=\s*$", stripped):
            kept.append("")  # a table row, a comment, a label
            continue
        kept.append(line)
    text = "\n".join(kept)
    text = re.sub(r"<!--.*?-->", _blank, text, flags=re.S)
    text = re.sub(r"\$\$.*?\$\$", _blank, text, flags=re.S)
    text = re.sub(r"(?<!\\)\$[^$\n]+?(?<!\\)\$", _blank, text)
    text = re.sub(r"\{[\w:.-]+\}`[^`]*`", _blank, text)
    return re.sub(r"`[^`\n]*`", _blank, text)


def prose_words(text: str) -> int:
    """Words of Persian prose on a page: whitespace-separated tokens of :func:`prose` that
    hold a Persian letter."""
    return sum(bool(PERSIAN_LETTER.search(token)) for token in prose(text).split())

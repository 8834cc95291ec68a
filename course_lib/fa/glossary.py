"""The course's terms in English and Persian, read from one data file (``book/fa/glossary.yml``).

Each entry has ``en`` (the English term, also its key), ``fa`` (the Persian term the course
uses), ``note`` (one Persian sentence saying what it means) and ``seeds`` (the source
documents, by number, whose text uses that Persian term; empty where the course chose the
term itself). Persian text uses Latin digits only (see :data:`PERSIAN_DIGITS`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PERSIAN_DIGITS = re.compile("[\u06f0-\u06f9\u0660-\u0669]")
"""Extended Arabic-Indic (Persian) and Arabic-Indic digits: the Persian part writes every
number with Latin digits, like the tables, code and formulas beside it."""

GLOSSARY_FILE = Path("book") / "fa" / "glossary.yml"


@dataclass(frozen=True)
class Term:
    en: str
    fa: str
    note: str
    seeds: tuple[str, ...] = field(default=())

    @property
    def key(self) -> str:
        return key_of(self.en)

    @property
    def anchor(self) -> str:
        """The HTML id of this term's row on the glossary page."""
        return "fa-term-" + re.sub(r"[^a-z0-9]+", "-", self.key).strip("-")


def key_of(english: str) -> str:
    """How a term is looked up: its English form, lower case, single spaces."""
    return " ".join(english.lower().split())


class Glossary(dict[str, Term]):
    """Terms by :func:`key_of` their English form."""

    def __init__(self, terms: list[Term], source: Path | str = GLOSSARY_FILE) -> None:
        super().__init__((term.key, term) for term in terms)
        self.source = Path(source)

    def term(self, english: str) -> Term:
        """The entry for ``english``; ``KeyError`` naming the data file if there is none."""
        key = key_of(english)
        if key not in self:
            raise KeyError(
                f"{english!r} is not in the glossary {self.source}: add an entry "
                "(en, fa, note, seeds) there, or use one of its terms"
            )
        return self[key]


def _problems(index: int, entry: object) -> list[str]:
    if not isinstance(entry, dict):
        return [f"entry {index} is not a mapping"]
    problems = [
        f"entry {index} ({entry.get('en', '?')}): '{name}' is missing or empty"
        for name in ("en", "fa", "note")
        if not isinstance(entry.get(name), str) or not entry[name].strip()
    ]
    unknown = set(entry) - {"en", "fa", "note", "seeds"}
    if unknown:
        problems.append(f"entry {index}: unknown fields {sorted(unknown)}")
    seeds = entry.get("seeds") or []
    if not isinstance(seeds, list) or not all(isinstance(s, str) for s in seeds):
        problems.append(f"entry {index} ({entry.get('en')}): seeds is a list of strings ('001')")
    for name in ("fa", "note"):
        if isinstance(entry.get(name), str) and PERSIAN_DIGITS.search(entry[name]):
            problems.append(f"entry {index} ({entry.get('en')}): write {name} with Latin digits")
    return problems


def load_glossary(path: Path | str = GLOSSARY_FILE) -> Glossary:
    """Read and check the glossary file. Raises ``ValueError`` listing every problem
    (missing fields, duplicate terms, Persian digits)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no glossary at {path}")
    entries = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    if not isinstance(entries, list):
        raise ValueError(f"{path} must hold a list of terms")
    problems = [p for i, entry in enumerate(entries) for p in _problems(i, entry)]
    keys = [key_of(e["en"]) for e in entries if isinstance(e, dict) and e.get("en")]
    problems += [f"'{k}' is listed twice" for k in sorted({k for k in keys if keys.count(k) > 1})]
    if problems:
        raise ValueError(f"{path}:\n  " + "\n  ".join(problems))
    terms = [
        Term(e["en"].strip(), e["fa"].strip(), e["note"].strip(), tuple(e.get("seeds") or ()))
        for e in entries
    ]
    return Glossary(terms, path)

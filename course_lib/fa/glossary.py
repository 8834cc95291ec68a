"""The course's terms in English and Persian, read from one data file (``book/fa/glossary.yml``).

Each entry has ``en`` (the English term, also its key), ``fa`` (the Persian term the course
uses), ``note`` (one Persian sentence saying what it means) and ``seeds`` (the source
documents, by number, whose text uses that Persian term; empty where the course chose the
term itself). Persian text uses Latin digits only (see :data:`PERSIAN_DIGITS`).

Two optional lists record the other Persian words for the same concept:

- ``variants``: the sources' other words for it, each ``{fa, seeds}``; recorded so that a
  reader of the sources recognises them, and allowed on a page;
- ``rejected``: words the course does not use for it, each ``{fa, reason}`` with optional
  ``match`` (a regular expression, where the bare word also has a legitimate use: ``دقت``
  only where ``کامل`` does not follow) and ``seeds``. :func:`rejected_uses` finds them in
  a page's prose, as whole words (:data:`BEFORE`, :data:`AFTER`).
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

LETTERS = "\u0621-\u063a\u0641-\u064a\u066e-\u06d3\u06d5\u06fa-\u06ff"
"""Arabic-script letters (not the marks: the ezafe's hamza U+0654 may follow a word)."""
BEFORE = f"(?<![{LETTERS}\u200c\u0654])"
"""A word starts here: no letter, zero-width non-joiner or hamza before it."""
AFTER = f"(?![{LETTERS}])"
"""A word (with its suffixes after a half-space or an ezafe) ends here: no letter after it."""


@dataclass(frozen=True)
class Variant:
    """Another word of the sources for a term's concept (allowed, recorded)."""

    fa: str
    seeds: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rejected:
    """A word the course does not use for a term's concept, and why."""

    fa: str
    reason: str
    match: str | None = None
    seeds: tuple[str, ...] = ()

    @property
    def pattern(self) -> re.Pattern:
        """The word, whole (``match`` if given, else the word itself, a space or a
        half-space between its parts)."""
        body = self.match or r"[ \u200c]".join(re.escape(w) for w in self.fa.split())
        return re.compile(f"{BEFORE}(?:{body}){AFTER}")


@dataclass(frozen=True)
class Term:
    en: str
    fa: str
    note: str
    seeds: tuple[str, ...] = field(default=())
    variants: tuple[Variant, ...] = field(default=())
    rejected: tuple[Rejected, ...] = field(default=())

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


def _seed_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(s, str) for s in value)


def _problems(index: int, entry: object) -> list[str]:
    if not isinstance(entry, dict):
        return [f"entry {index} is not a mapping"]
    where = f"entry {index} ({entry.get('en', '?')})"
    problems = [
        f"{where}: '{name}' is missing or empty"
        for name in ("en", "fa", "note")
        if not isinstance(entry.get(name), str) or not entry[name].strip()
    ]
    unknown = set(entry) - {"en", "fa", "note", "seeds", "variants", "rejected"}
    if unknown:
        problems.append(f"entry {index}: unknown fields {sorted(unknown)}")
    if not _seed_list(entry.get("seeds") or []):
        problems.append(f"{where}: seeds is a list of strings ('001')")
    for name in ("fa", "note"):
        if isinstance(entry.get(name), str) and PERSIAN_DIGITS.search(entry[name]):
            problems.append(f"{where}: write {name} with Latin digits")
    for i, item in enumerate(entry.get("variants") or []):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("fa"), str)
            or set(item) - {"fa", "seeds"}
            or not _seed_list(item.get("seeds") or [])
        ):
            problems.append(f"{where}, variant {i}: needs fa (text) and optional seeds")
    for i, item in enumerate(entry.get("rejected") or []):
        if (
            not isinstance(item, dict)
            or not all(isinstance(item.get(k), str) and item[k].strip() for k in ("fa", "reason"))
            or set(item) - {"fa", "reason", "match", "seeds"}
            or not _seed_list(item.get("seeds") or [])
        ):
            problems.append(f"{where}, rejected {i}: needs fa and reason (text), optional match")
            continue
        try:
            re.compile(item.get("match") or "")
        except re.error as error:
            problems.append(f"{where}, rejected {i}: match is not a regular expression ({error})")
    return problems


def _term(entry: dict) -> Term:
    return Term(
        entry["en"].strip(),
        entry["fa"].strip(),
        entry["note"].strip(),
        tuple(entry.get("seeds") or ()),
        tuple(
            Variant(v["fa"].strip(), tuple(v.get("seeds") or ()))
            for v in entry.get("variants") or []
        ),
        tuple(
            Rejected(
                r["fa"].strip(), r["reason"].strip(), r.get("match"), tuple(r.get("seeds") or ())
            )
            for r in entry.get("rejected") or []
        ),
    )


def load_glossary(path: Path | str = GLOSSARY_FILE) -> Glossary:
    """Read and check the glossary file. Raises ``ValueError`` listing every problem
    (missing fields, duplicate terms, Persian digits, malformed variants)."""
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
    return Glossary([_term(e) for e in entries], path)


def rejected_uses(text: str, terms: Glossary, where: str) -> list[str]:
    """Each use of a rejected word in ``text`` (a page's prose, other parts blanked with
    their lines kept: ``sections.prose(text, directive_bodies=True)``), as
    ``<where>:<line>: «word» ... write «term»``. A word quoted alone («دقت») is mentioned,
    not used, and passes."""
    found = []
    for term in terms.values():
        for rejected in term.rejected:
            for match in rejected.pattern.finditer(text):
                if text[match.start() - 1 : match.start()] == "«" and (
                    text[match.end() : match.end() + 1] == "»"
                ):
                    continue  # the word quoted as a word: a mention, not a use
                line = text.count("\n", 0, match.start()) + 1
                found.append(
                    (
                        line,
                        f"{where}:{line}: «{match.group(0)}» is not the course's word for "
                        f"{term.en} ({rejected.reason}): write «{term.fa}»",
                    )
                )
    return [message for _, message in sorted(found)]

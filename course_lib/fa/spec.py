"""Which saved metrics each Persian chapter page shows: ``book/fa/results.yml``.

One entry per chapter, named like its results file (``results/<chapter>.json``)::

    pruning:
      notebook: notebooks/02_pruning.ipynb
      table:                      # rows of the results table
        - key: structured_50_onnx_speedup_b1   # dotted path into record["metrics"]
          label: ...              # Persian
          format: ratio           # see FORMATS
          interval: ...           # optional: key of [low, high] (else read from the value)
          source: ...             # optional: the source document's number, as text
      figure: {kind: lines | bars, ...}        # see course_lib.fa.figures

A page shows only what a full-profile run saved; a metric the spec names and the saved
file lacks is an error (:class:`MissingMetric`) that says which key, file and spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .glossary import PERSIAN_DIGITS

SPEC_FILE = Path("book") / "fa" / "results.yml"

FORMATS = ("percent", "points", "count", "megabytes", "ratio", "ms", "number", "text")
"""``percent``: a fraction shown as %; ``points``: percentage points; ``count``: an integer
with thousands separators; ``megabytes``: bytes shown in MB (10^6 bytes); ``ratio``: a
speed-up or size ratio (``2.68x``); ``ms``: milliseconds; ``number``: 3 significant digits;
``text``: as saved. ``ratio`` and ``ms`` show their 95 % interval when one is saved."""

WITH_INTERVAL = ("ratio", "ms")
NO_INTERVAL = "بازهٔ اطمینان ذخیره نشده است"


class MissingMetric(KeyError):
    """A metric named in the spec is not in the saved results."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    format: str
    interval: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class ChapterSpec:
    name: str
    notebook: str
    table: tuple[Row, ...]
    figure: dict | None = None

    @property
    def docname(self) -> str:
        """The English chapter's page in the book (its notebook without the suffix)."""
        return self.notebook.removesuffix(".ipynb")

    @property
    def command(self) -> str:
        """The command that saves this chapter's results."""
        return f"course run {self.notebook} --profile full"


@dataclass(frozen=True)
class Cell:
    """One row of a rendered results table."""

    label: str
    key: str
    value: str
    note: str | None = None
    source: str | None = None


@dataclass
class Spec:
    chapters: dict[str, ChapterSpec] = field(default_factory=dict)
    source: Path = SPEC_FILE

    def chapter(self, name: str) -> ChapterSpec:
        if name not in self.chapters:
            raise KeyError(
                f"chapter {name!r} is not in {self.source}: add an entry for it "
                f"(chapters there: {', '.join(self.chapters)})"
            )
        return self.chapters[name]


def _row_problems(chapter: str, index: int, row: object) -> list[str]:
    where = f"{chapter}, table row {index}"
    if not isinstance(row, dict):
        return [f"{where}: not a mapping"]
    problems = [f"{where}: '{k}' is missing" for k in ("key", "label", "format") if not row.get(k)]
    if row.get("format") and row["format"] not in FORMATS:
        problems.append(f"{where}: format {row['format']!r} is not one of {FORMATS}")
    unknown = set(row) - {"key", "label", "format", "interval", "source"}
    if unknown:
        problems.append(f"{where}: unknown fields {sorted(unknown)}")
    for name in ("label", "source"):
        if PERSIAN_DIGITS.search(str(row.get(name) or "")):
            problems.append(f"{where}: write {name} with Latin digits")
    return problems


def load_spec(path: Path | str = SPEC_FILE) -> Spec:
    """Read and check the spec file; ``ValueError`` lists every problem found."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no results spec at {path}")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path} must map chapter names to their entries")
    problems, chapters = [], {}
    for name, entry in raw.items():
        if not isinstance(entry, dict) or not entry.get("notebook"):
            problems.append(f"{name}: needs 'notebook' (e.g. notebooks/02_pruning.ipynb)")
            continue
        rows = entry.get("table") or []
        found = [p for i, row in enumerate(rows) for p in _row_problems(name, i, row)]
        if not rows:
            found.append(f"{name}: 'table' lists no metric")
        problems += found
        if not found:
            chapters[name] = ChapterSpec(
                name,
                entry["notebook"],
                tuple(Row(**row) for row in rows),
                entry.get("figure"),
            )
    if problems:
        raise ValueError(f"{path}:\n  " + "\n  ".join(problems))
    return Spec(chapters, path)


def lookup(metrics: dict, key: str, chapter: str = "?", reader: str | None = None) -> object:
    """``metrics[a][b]...`` for the dotted ``key`` ``a.b...``; a saved key that holds dots
    itself (a sweep's ``"0.5"``) is matched whole, and a number indexes a list
    (``methods.0.accuracy``). :class:`MissingMetric` if any part is missing; ``reader`` says
    what asked for it (default: the spec)."""
    node = _walk(metrics, key.split("."))
    if node is _MISSING:
        raise MissingMetric(
            f"results/{chapter}.json has no metric '{key}' (the Persian page reads it, "
            f"as {reader or SPEC_FILE} says): point {'it' if reader else 'the spec'} at the "
            "key the chapter saves now, "
            "or rerun the chapter's full profile"
        )
    return node


_MISSING = object()


def _walk(node: object, parts: list[str]) -> object:
    if not parts:
        return node
    if isinstance(node, list):
        head = parts[0]
        if head.lstrip("-").isdigit() and -len(node) <= int(head) < len(node):
            return _walk(node[int(head)], parts[1:])
        return _MISSING
    if not isinstance(node, dict):
        return _MISSING
    for n in range(len(parts), 0, -1):  # the longest saved key first ("0.5" before "0")
        name = ".".join(parts[:n])
        if name in node:
            found = _walk(node[name], parts[n:])
            if found is not _MISSING:
                return found
    return _MISSING


def split_interval(value: object) -> tuple[object, tuple[float, float] | None]:
    """A saved value and its interval: ``Ratio.as_dict()`` (``median``, ``interval``) and
    ``Latency.as_dict()`` (``median_ms``, ``low_ms``, ``high_ms``) carry their own."""
    if isinstance(value, dict):
        if "median" in value and "interval" in value:
            low, high = value["interval"]
            return value["median"], (low, high)
        if {"median_ms", "low_ms", "high_ms"} <= set(value):
            return value["median_ms"], (value["low_ms"], value["high_ms"])
    return value, None


def _number(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"metric '{key}' is {value!r}, not a number")
    return float(value)


def format_value(value: object, kind: str, key: str = "?") -> str:
    """``value`` as the table shows it (Latin digits, units in Latin script)."""
    if kind == "text":
        return str(value)
    x = _number(value, key)
    if kind == "percent":
        return f"{100 * x:.1f}%"
    if kind == "points":
        return f"{x:.1f}"
    if kind == "count":
        return f"{round(x):,}"
    if kind == "megabytes":
        return f"{x / 1e6:.2f} MB"
    if kind == "ratio":
        return f"{x:.2f}x"
    if kind == "ms":
        return f"{x:.3g} ms"
    if kind == "number":
        return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"
    raise ValueError(f"unknown format {kind!r}: use one of {FORMATS}")


def format_interval(interval: tuple[float, float], kind: str) -> str:
    low, high = interval
    if kind == "ratio":
        return f"({low:.2f}-{high:.2f})"
    return f"({low:.3g}-{high:.3g} ms)"


def cell(row: Row, metrics: dict, chapter: str) -> Cell:
    """One table row from the saved metrics."""
    value, interval = split_interval(lookup(metrics, row.key, chapter))
    if row.interval is not None:
        interval = tuple(lookup(metrics, row.interval, chapter))
    text, note = format_value(value, row.format, row.key), None
    if row.format in WITH_INTERVAL:
        if interval is None:
            note = NO_INTERVAL
        else:
            text += " " + format_interval(interval, row.format)
    return Cell(row.label, row.key, text, note, row.source)


def inline_value(metrics: dict, key: str, kind: str, chapter: str, reader: str) -> str:
    """One saved metric as a sentence shows it (``{fa-value}``): formatted like the table;
    ``ratio`` and ``ms`` add their interval when one is saved, in the value itself or as
    ``<key>_interval`` beside it."""
    if kind not in FORMATS:
        raise ValueError(f"format {kind!r} of '{key}' is not one of {FORMATS} ({reader})")
    value, interval = split_interval(lookup(metrics, key, chapter, reader))
    text = format_value(value, kind, key)
    if kind in WITH_INTERVAL:
        if interval is None:
            beside = _walk(metrics, f"{key}_interval".split("."))
            if isinstance(beside, list | tuple) and len(beside) == 2:
                interval = tuple(beside)
        if interval is not None:
            text += " " + format_interval(interval, kind)
    return text


def check_full(record: dict, chapter: str, command: str) -> None:
    """``ValueError`` unless ``record`` is a full-profile run."""
    if record.get("profile") != "full":
        raise ValueError(
            f"results/{chapter}.json holds a {record.get('profile')!r} run, not a "
            f"full-profile one: {command}"
        )


def table(chapter: ChapterSpec, record: dict) -> list[Cell]:
    """The rows of ``chapter``'s results table from its saved ``record``
    (``results.load_results``); ``ValueError`` if the record is not a full-profile run."""
    check_full(record, chapter.name, chapter.command)
    return [cell(row, record["metrics"], chapter.name) for row in chapter.table]

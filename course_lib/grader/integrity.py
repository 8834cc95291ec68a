"""The instructor's integrity report of one grading run: which students were flagged and
why, gathered from the records :class:`~.refereed.RefereedExecute` writes per submission.

Flags (a record's ``events``):

- ``tampering``: a test passed in the student's own kernel but failed in the grader's
  clean kernel (the notebook changed what the tests see);
- ``outside-access``: the student's code tried to read or write outside its folder, or to
  use the network (the sandbox refused; this says who tried);
- ``kernel-died``, ``memory``, ``timeout``: the student's kernel died (and why), ran out of
  memory, or a cell ran past the timeout;
- ``output-truncated``: a cell printed more than the output limit;
- ``unverifiable``, ``not-run``, ``grader-kernel-died``: a test that could not be checked,
  cells not run after too many crashes, the grader's own kernel dying.

Informational, not flags: ``rebinds`` (a student cell rebinds a name the graded cells use;
the graded cells keep the notebook's value), ``program`` (the student's code started a
program inside the sandbox), ``student-setup-failed``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

#: The file name ending of one submission's record (``<notebook>.integrity.json``).
RECORD_SUFFIX = ".integrity.json"

FLAGS = (
    "tampering",
    "outside-access",
    "kernel-died",
    "memory",
    "timeout",
    "output-truncated",
    "unverifiable",
    "not-run",
    "grader-kernel-died",
)


def records(root: Path, assignment: str, students: Iterable[str] | None = None) -> list[dict]:
    """The integrity records of ``assignment`` under ``root`` (``<course>/assignments/
    reports``), of ``students`` only if given."""
    wanted = None if students is None else set(students)
    found = []
    for path in sorted((root / assignment).glob(f"*/*{RECORD_SUFFIX}")):
        record = json.loads(path.read_text())
        if wanted is None or record.get("student") in wanted:
            found.append(record)
    return found


def flags(record: dict) -> dict[str, list[dict]]:
    """kind -> events of that kind, for the flag kinds only."""
    grouped: dict[str, list[dict]] = {}
    for event in record.get("events", []):
        if event.get("kind") in FLAGS:
            grouped.setdefault(event["kind"], []).append(event)
    return grouped


def auto_score(record: dict) -> tuple[float, float]:
    tests = record.get("tests", {}).values()
    return sum(t.get("score") or 0.0 for t in tests), sum(t.get("points", 0.0) for t in tests)


def summary_line(record: dict) -> str:
    score, points = auto_score(record)
    kinds = ", ".join(f"{k} ({len(v)})" for k, v in flags(record).items()) or "no flags"
    return f"{record['student']}: {score:g}/{points:g} auto points; {kinds}"


def write_report(path: Path, assignment: str, found: list[dict], failed: dict[str, str]) -> str:
    """Write the report as Markdown at ``path`` and JSON beside it; returns the Markdown."""
    lines = [f"# Integrity report: {assignment}", ""]
    protections = found[0]["protections"] if found else []
    warnings = sorted({w for r in found for w in r.get("warnings", [])})
    lines += ["Protections active for student code:", ""]
    lines += [f"- {line}" for line in protections] + [""]
    lines += [f"**Warning:** {w}" for w in warnings] + ([""] if warnings else [])
    lines += ["| student | auto points | flags |", "|---|---|---|"]
    for record in found:
        score, points = auto_score(record)
        kinds = ", ".join(sorted(flags(record))) or "-"
        lines.append(f"| {record['student']} | {score:g} / {points:g} | {kinds} |")
    for student, why in sorted(failed.items()):
        lines.append(f"| {student} | not graded | {why} |")
    flagged = [r for r in found if flags(r)]
    if flagged:
        lines += ["", "## Flagged students", ""]
    for record in flagged:
        lines.append(f"### {record['student']}")
        for kind, events in flags(record).items():
            for event in events[:20]:
                where = f" in `{event['cell']}`" if event.get("cell") else ""
                lines.append(f"- **{kind}**{where}: {event['detail']}")
            if len(events) > 20:
                lines.append(f"- ... and {len(events) - 20} more {kind} events")
        lines.append("")
    text = "\n".join(lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.with_suffix(".json").write_text(
        json.dumps({"assignment": assignment, "records": found, "not_graded": failed}, indent=1)
    )
    return text

"""Small helpers to show numbers in notebooks: Markdown tables (their cells formatted by
:func:`course_lib.formatting.fmt`) and where a saved result came from."""

from __future__ import annotations

from collections.abc import Sequence

from IPython.display import Markdown

from .formatting import fmt


def markdown_table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> Markdown:
    """A Markdown table; numbers get thousands separators, floats 3 significant digits.

    JupyterLab renders it as a table, and so does the book: ``_config.yml`` has Markdown
    outputs parsed as MyST (``nb_render_markdown_format: myst``), where ``$...$`` is math
    (write a literal dollar as ``\\$``)."""

    def row(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    lines = [row(headers), "|" + "---|" * len(headers)]
    lines += [row([fmt(v) for v in values]) for values in rows]
    return Markdown("\n".join(lines))


def provenance(record: dict | None) -> Markdown:
    """One line saying where a saved full-profile result came from."""
    if record is None:
        return Markdown("*No full-profile result has been saved yet.*")
    m = record["machine"]
    return Markdown(
        f"*Full profile, commit `{record['commit'][:12]}`, {record['date']}, "
        f"{record['wall_time_s'] / 60:.1f} min on {m['cpu']} ({m['cores']} cores, "
        f"torch {m['torch']}). Regenerate with `{record['command']}`.*"
    )

"""A chapter's main figure, drawn from its saved metrics as ``book/fa/results.yml`` says.

Two kinds, enough for every chapter and coupled to a few metric keys only:

``lines``: each series reads one key (dotted path) whose value is a list of numbers (x is
1, 2, ...), a mapping from numbers to records (``{"0.2": {"accuracy": ...}}``: x is the
mapping's key, y the record's ``field``) or a list of records (x and y are fields);
``point_labels`` names a field to write beside each point (``@name``: the mapping's key)::

    figure:
      kind: lines
      x_label: sparsity (%)
      y_label: test accuracy (%)
      series:
        - {key: oneshot, field: accuracy, label: one-shot, x_scale: 100, scale: 100}

``bars``: one bar per scalar metric, its 95 % interval as an error bar when saved, and the
source document's number beside it when the spec gives one (``source: 92.1``)::

    figure:
      kind: bars
      y_label: test accuracy (%)
      bars:
        - {key: fp_resnet20_test_accuracy, label: full precision, scale: 100, source: 92.1}

Labels are English (matplotlib does not shape Persian); the page's Persian caption says
what the figure shows. Functions return a matplotlib ``Figure`` (no pyplot state).
"""

from __future__ import annotations

import base64
import io

from matplotlib import rc_context
from matplotlib.figure import Figure

from .spec import lookup, split_interval

KINDS = ("lines", "bars")


def _points(node: object, series: dict, chapter: str) -> list[tuple[float, float, str]]:
    """(x, y, label) of one series; x and y before scaling."""
    field, x_field = series.get("field"), series.get("x")
    if isinstance(node, list) and all(isinstance(v, int | float) for v in node):
        return [(i + 1, float(v), "") for i, v in enumerate(node)]
    if isinstance(node, dict):
        items = [(name, record) for name, record in node.items()]
    elif isinstance(node, list):
        items = [(str(i), record) for i, record in enumerate(node)]
    else:
        raise ValueError(f"metric '{series['key']}' of {chapter} is {type(node).__name__}")
    points = []
    for name, record in items:
        y = lookup(record, field, chapter) if field else record
        x = lookup(record, x_field, chapter) if x_field else float(name)
        label_field = series.get("point_labels")
        label = "" if not label_field else name if label_field == "@name" else ""
        if label_field and label_field != "@name":
            label = str(lookup(record, label_field, chapter))
        points.append((float(x), float(split_interval(y)[0]), label))
    return sorted(points)


def _labels(xs: list[float], ys: list[float], texts: list[str]) -> dict[tuple, str]:
    """Point labels, one per group of points closer than 2 % of the axes' spans (so that
    nearly equal results do not print over each other: "1, 0.1")."""
    span_x = (max(xs) - min(xs)) or 1.0
    span_y = (max(ys) - min(ys)) or 1.0
    groups: dict[tuple, list[str]] = {}
    for x, y, text in zip(xs, ys, texts, strict=True):
        if not text:
            continue
        near = [
            (gx, gy)
            for gx, gy in groups
            if abs(gx - x) < 0.02 * span_x and abs(gy - y) < 0.02 * span_y
        ]
        groups.setdefault(near[0] if near else (x, y), []).append(text)
    return {point: ", ".join(texts) for point, texts in groups.items()}


def lines(spec: dict, metrics: dict, chapter: str) -> Figure:
    fig = Figure(figsize=(7, 3.6))
    ax = fig.add_subplot()
    xs, ys, texts = [], [], []
    for series in spec["series"]:
        points = _points(lookup(metrics, series["key"], chapter), series, chapter)
        x = [px * series.get("x_scale", 1) for px, _, _ in points]
        y = [py * series.get("scale", 1) for _, py, _ in points]
        style = "o" if series.get("style") == "points" else "o-"
        ax.plot(x, y, style, label=series.get("label"), markersize=4)
        xs, ys, texts = xs + x, ys + y, texts + [text for _, _, text in points]
    for (x, y), text in _labels(xs, ys, texts).items():
        ax.annotate(text, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=8)
    if spec.get("log_x"):
        ax.set_xscale("log")
    ax.margins(0.08)
    ax.set(xlabel=spec.get("x_label", ""), ylabel=spec.get("y_label", ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def bars(spec: dict, metrics: dict, chapter: str) -> Figure:
    fig = Figure(figsize=(7, 3.6))
    ax = fig.add_subplot()
    with_source = any("source" in bar for bar in spec["bars"])
    width = 0.38 if with_source else 0.6
    handles = {}
    for i, bar in enumerate(spec["bars"]):
        value, interval = split_interval(lookup(metrics, bar["key"], chapter))
        if bar.get("interval"):
            interval = tuple(lookup(metrics, bar["interval"], chapter))
        scale = bar.get("scale", 1)
        error = None
        if interval is not None:
            low, high = interval
            error = [[(value - low) * scale], [(high - value) * scale]]
        offset = -width / 2 if with_source else 0
        handles["this course"] = ax.bar(
            i + offset, value * scale, width, yerr=error, capsize=4, color="C0"
        )
        if "source" in bar:
            handles["source document"] = ax.bar(i + width / 2, bar["source"], width, color="C7")
    ax.set_xticks(range(len(spec["bars"])), [bar["label"] for bar in spec["bars"]])
    if with_source:
        ax.legend(handles=list(handles.values()), labels=list(handles), fontsize=8)
    ax.set(ylabel=spec.get("y_label", ""))
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def draw(spec: dict, metrics: dict, chapter: str) -> Figure:
    """The figure ``spec`` (a chapter's ``figure`` entry) describes, from ``metrics``."""
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ValueError(f"figure kind {kind!r} of {chapter} is not one of {KINDS}")
    return lines(spec, metrics, chapter) if kind == "lines" else bars(spec, metrics, chapter)


def svg_data_uri(fig: Figure) -> str:
    """The figure as an SVG ``data:`` URI (no date in it: same metrics, same bytes)."""
    buffer = io.BytesIO()
    with rc_context({"svg.hashsalt": "course"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")

"""The chapter's figures. :func:`supernet_diagram` draws a :class:`SearchSpace`; the others
take the chapter's metrics dict (this run's or the saved full run's, after ``summary.normalize``,
that is :func:`course_lib.legacy.nas_metrics`), so that both are drawn by the same function.
Accuracies are stored as fractions and drawn in percent; latencies in milliseconds."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from .space import SearchSpace

PATH_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red")


def _box(ax, x, y, w, h, text, color, fontsize=7, style="round,pad=0.02") -> None:
    ax.add_patch(
        FancyBboxPatch(
            (x - w / 2, y - h / 2), w, h, boxstyle=style, fc=color, ec="black", lw=0.8, alpha=0.9
        )
    )
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)


def _arrow(ax, a, b, style="-|>", ls="-", color="black") -> None:
    ax.add_patch(
        FancyArrowPatch(a, b, arrowstyle=style, mutation_scale=8, lw=0.8, ls=ls, color=color)
    )


def supernet_diagram(space: SearchSpace) -> Figure:
    """The supernet of ``space``: per path and level a mixed op (eq. 1-2, every candidate
    weighted by its softmax probability), after every level a sync point (eq. 3-4: each
    path continues with ``P_sync * s + P_direct * its own output``, ``s`` the merge of all
    paths), then the head."""
    step, box_w, box_h = 2.2, 1.6, 0.9
    ys = [(space.paths - 1) / 2 - p for p in range(space.paths)]
    fig, ax = plt.subplots(figsize=(2.2 + step * space.levels + 1.8, 1.1 + 1.25 * space.paths))
    _box(ax, 0, 0, 0.8, 0.6, "input\n3x32x32", "white")
    candidates = "\n".join(f"{op}: P_op" for op in space.ops)
    for level in range(space.levels):
        x = 1.4 + level * step
        pooled = ", pool" if level in space.pool_after else ""
        for path, y in enumerate(ys):
            color = PATH_COLORS[path % len(PATH_COLORS)]
            _box(
                ax,
                x,
                y,
                box_w,
                box_h,
                f"mixed op ({space.widths[level]} ch{pooled})\n{candidates}",
                color,
                fontsize=6,
            )
            source = (0.4, 0) if level == 0 else (x - step + 0.75, y)
            _arrow(ax, source, (x - box_w / 2, y))
        sx = x + box_w / 2 + 0.3
        merge = "1x1 conv\n(concat)" if space.merge == "conv" else "sum"
        ax.plot([sx] * 2, [ys[-1] - 0.55, ys[0]], ls=":", c="goldenrod", lw=1.2)
        label = f"sync {level + 1}: s =\n{merge}"
        _box(ax, sx, ys[-1] - 0.8, 0.75, 0.45, label, "lightyellow", fontsize=6)
        for y in ys:
            ax.plot(sx, y, "D", ms=5, c="gold", mec="black", mew=0.6)
            _arrow(ax, (x + box_w / 2, y), (sx - 0.05, y))
    hx = 1.4 + space.levels * step + 0.4
    _box(ax, hx, 0, 1.3, 0.9, "head\navg pool,\nconcat paths,\nFC, FC", "lightgray", fontsize=6)
    for y in ys:
        _arrow(ax, (1.4 + (space.levels - 1) * step + box_w / 2 + 0.35, y), (hx - 0.65, 0))
    ax.text(1.4, ys[0] + 0.75, "each block: O = sum_i P_op,i OP_i(I) (eq. 2)", fontsize=7)
    ax.text(
        1.4 + step * 1.3,
        ys[0] + 0.75,
        "each gold point: O_i = P_sync s + P_direct B_i(I) (eq. 3), s merges all paths",
        fontsize=7,
    )
    ax.set_xlim(-0.6, hx + 0.9)
    ax.set_ylim(ys[-1] - 1.1, ys[0] + 1.0)
    ax.set_axis_off()
    ax.set_title(
        f"supernet: {space.paths} paths x {space.levels} levels, {len(space.ops)} candidate ops per block",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def _errorbar_x(lat: dict) -> tuple[float, list[float]] | None:
    if not lat or lat.get("median_ms") is None:
        return None
    if lat.get("low_ms") is None:
        return lat["median_ms"], [0.0, 0.0]
    return lat["median_ms"], [lat["median_ms"] - lat["low_ms"], lat["high_ms"] - lat["median_ms"]]


def fig7(m: dict) -> Figure:
    """Accuracy against batch-1 latency of the four sync configurations (the paper's
    Fig. 7), for ONNX Runtime on one thread and for the paths forked one per core."""
    keys = [
        k
        for k in ("onnx", "parallel")
        if any(k in a["latency_ms"] for a in m["sync_configs"].values())
    ]
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.4), squeeze=False)
    parallel = (
        "paths in parallel, ORT sessions" if m.get("legacy") else "paths forked, one per core"
    )
    titles = {"onnx": "ONNX Runtime, 1 thread", "parallel": parallel}
    for ax, key in zip(axes[0], keys, strict=True):
        for name, a in m["sync_configs"].items():
            point = _errorbar_x(a["latency_ms"].get(key))
            if point is None:
                continue
            x, xerr = point
            y = 100 * a["accuracy_mean"]
            ax.errorbar(
                x, y, xerr=[[xerr[0]], [xerr[1]]], yerr=100 * a["accuracy_std"], fmt="o", capsize=3
            )
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        ax.set(
            xlabel="latency, batch 1, median (ms)", ylabel="test accuracy (%)", title=titles[key]
        )
        ax.grid(alpha=0.3)
    fig.suptitle("sync points (cf. the paper's Fig. 7)", fontsize=10)
    fig.tight_layout()
    return fig


def fig8(m: dict) -> Figure:
    """Accuracy, latency and MACs per beta, each normalized to its largest value (the
    paper's Fig. 8), with the from-scratch accuracy beside the warm-started one."""
    sweep = sorted(m["beta_sweep"], key=lambda e: e["beta"], reverse=True)
    labels = [f"{e['beta']:g}" for e in sweep]
    series = {
        "accuracy" + (" (warm start)" if sweep and sweep[0].get("warm_start") else ""): [
            e["accuracy_mean"] for e in sweep
        ],
        "ONNX latency": [e["latency_ms"].get("onnx", {}).get("median_ms") or 0.0 for e in sweep],
        "MACs (FLOPs / 2)": [e["macs"] for e in sweep],
    }
    if all(e.get("from_scratch") for e in sweep):
        series["accuracy (from scratch)"] = [e["from_scratch"]["accuracy_mean"] for e in sweep]
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        values = np.asarray(values, dtype=float)
        ax.bar(
            np.arange(len(labels)) + (i - (len(series) - 1) / 2) * width,
            values / max(values.max(), 1e-12),
            width,
            label=name,
        )
    ax.set_xticks(np.arange(len(labels)), labels)
    ax.set(
        xlabel="beta",
        ylabel="normalized to the largest",
        title="cost weight (cf. the paper's Fig. 8)",
    )
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def decisions(m: dict, beta: float) -> Figure:
    """How the decision variables moved during the searches at ``beta`` (one line per
    block or sync point, one line style per search seed)."""
    entry = next(e for e in m["beta_sweep"] if e["beta"] == beta)
    fig, (ax_op, ax_sync) = plt.subplots(1, 2, figsize=(10, 3.4))
    for s, style in zip(entry["searches"], ("-o", "--s", ":^"), strict=False):
        ops = np.asarray(
            s.get("op_probs_history") or [s["op_probs"]]
        )  # (epochs, levels, paths, ops)
        syncs = np.asarray(s.get("sync_probs_history") or [s["sync_probs"]])  # (epochs, levels, 2)
        epochs = np.arange(1, len(ops) + 1)
        for level in range(ops.shape[1]):
            for path in range(ops.shape[2]):
                ax_op.plot(
                    epochs,
                    ops[:, level, path, -1],
                    style,
                    color=f"C{level}",
                    ms=4,
                    label=f"level {level + 1}, seed {s['seed']}" if path == 0 else None,
                )
            ax_sync.plot(
                epochs,
                syncs[:, level, 0],
                style,
                color=f"C{level}",
                ms=4,
                label=f"after level {level + 1}, seed {s['seed']}",
            )
    ax_op.set(
        xlabel="search epoch", ylabel="P(last candidate op)", title=f"op decisions, beta = {beta:g}"
    )
    ax_sync.set(xlabel="search epoch", ylabel="P_sync", title="sync decisions")
    for ax in (ax_op, ax_sync):
        ax.axhline(0.5, ls="--", c="gray")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=6, ncol=2)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


#: speed-up name -> label of the multicore figure.
STRATEGIES = {
    "path-parallel": "paths forked (TorchScript) vs in sequence",
    "sessions": "sessions, Python threads vs in sequence",
    "intra-op": "ORT 2 intra-op threads vs 1",
    "ORT_PARALLEL": "ORT_PARALLEL vs 1 thread",
}


def _speedup_bars(ax, cell: list[dict]) -> None:
    height = 0.8 / len(STRATEGIES)
    for i, (key, label) in enumerate(STRATEGIES.items()):
        values = [r["speedup"].get(key) for r in cell]
        y = np.arange(len(cell)) + (i - (len(STRATEGIES) - 1) / 2) * height
        med = np.array([v["median"] if v else np.nan for v in values])
        err = np.array(
            [
                [v["median"] - v["interval"][0], v["interval"][1] - v["median"]] if v else [0, 0]
                for v in values
            ]
        ).T
        ax.barh(y, med, height, xerr=err, label=label, capsize=2, color=f"C{i}")


def multicore(m: dict) -> Figure:
    """Speed-up of every way of using the cores, with its 95 % interval, per network; one
    row of panels per width setting, one column per batch size. Above 1: the second core
    helps; the x axis stops at 3 (longer interval bars are cut)."""
    rows = m.get("parallel_table", [])
    widths = sorted({r["widths"] for r in rows}, key=lambda w: w != "paper")
    batches = sorted({r["batch"] for r in rows})
    fig, axes = plt.subplots(
        len(widths),
        len(batches),
        figsize=(4.6 * len(batches), 3.2 * len(widths)),
        sharey=True,
        squeeze=False,
    )
    for ax, (w, b) in zip(axes.flat, [(w, b) for w in widths for b in batches], strict=True):
        cell = [r for r in rows if (r["widths"], r["batch"]) == (w, b)]
        _speedup_bars(ax, cell)
        for x in (1.0, 2.0):
            ax.axvline(x, ls="--" if x == 1 else ":", c="gray", lw=1)
        ax.set_yticks(np.arange(len(cell)), [r["network"] for r in cell], fontsize=7)
        ax.set(xlabel="speed-up (x)", title=f"{w} widths, batch {b}", xlim=(0, 3))
        ax.grid(alpha=0.3, axis="x")
    axes[0][0].invert_yaxis()
    axes[0][-1].legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    return fig


def report(m: dict) -> list[Figure]:
    """Every figure the metrics hold (for the saved full run at the end of the chapter)."""
    figures = [fig7(m), fig8(m)]
    if m["beta_sweep"] and m["beta_sweep"][0].get("searches", [{}])[0].get("op_probs_history"):
        figures.append(decisions(m, min(e["beta"] for e in m["beta_sweep"])))
    if m.get("parallel_table"):
        figures.append(multicore(m))
    return figures

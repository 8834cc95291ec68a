"""The pruning chapter's figures. Each takes the chapter's ``metrics`` dict (the layout saved
in ``results/pruning.json``), so a page can draw this run's and the saved full run's numbers
with the same function. Accuracies are stored as fractions and drawn in percent."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

FAMILY_STYLE = {
    "one-shot": {"marker": "o", "color": "tab:blue"},
    "iterative": {"marker": "s", "color": "tab:orange"},
    "structured": {"marker": "^", "color": "tab:green"},
}


def encoding_label(name: str) -> str:
    """``"bitmask_zlib"`` -> ``"bitmask + zlib"``; ``"dense_raw"`` -> ``"dense float32"``."""
    return "dense float32" if name == "dense_raw" else name.replace("_", " + ")


def _keys(table: dict) -> list[str]:
    return sorted(table, key=float)


def _dense_line(ax, metrics: dict, label: str = "dense") -> None:
    ax.axhline(100 * metrics["baseline"]["accuracy"], ls="--", c="gray", label=label)


def scope_comparison(metrics: dict) -> Figure:
    """Validation accuracy right after pruning (no fine-tuning): layer-wise vs global L1."""
    table = metrics["scope_comparison"]
    keys = _keys(table)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for scope, label in (("layer", "layer-wise L1"), ("global", "global L1")):
        ax.plot(
            [100 * float(k) for k in keys], [100 * table[k][scope] for k in keys], "o-", label=label
        )
    ax.axhline(100 * metrics["baseline"]["val_accuracy"], ls="--", c="gray", label="dense")
    ax.set(xlabel="sparsity (% of conv + linear weights)", ylabel="validation accuracy (%)")
    ax.set_title("right after pruning, before fine-tuning", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def layer_sparsity(per_layer: dict[str, dict[str, float]]) -> Figure:
    """Heat map of the sparsity global pruning gives each layer (rows) at each target (columns)."""
    keys = _keys(per_layer)
    layers = list(per_layer[keys[0]])
    values = np.array([[per_layer[k][name] for k in keys] for name in layers])
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(layers) + 1.2))
    ax.imshow(100 * values, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for i in range(len(layers)):
        for j in range(len(keys)):
            color = "black" if values[i, j] > 0.6 else "white"
            ax.text(
                j, i, f"{100 * values[i, j]:.0f}", ha="center", va="center", fontsize=8, color=color
            )
    ax.set_xticks(range(len(keys)), [f"{100 * float(k):.0f}%" for k in keys])
    ax.set_yticks(range(len(layers)), layers)
    ax.set(xlabel="global target sparsity", title="sparsity of each layer (%)")
    fig.tight_layout()
    return fig


def sparsity_sweep(metrics: dict) -> Figure:
    """Test accuracy vs sparsity: one-shot before and after fine-tuning, and iterative."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    oneshot, iterative = metrics["oneshot"], metrics["iterative"]
    x = [100 * float(k) for k in _keys(oneshot)]
    ax.plot(
        x,
        [100 * oneshot[k]["accuracy_pruned"] for k in _keys(oneshot)],
        "o:",
        c="tab:blue",
        alpha=0.6,
        label="one-shot, no fine-tuning",
    )
    ax.plot(
        x,
        [100 * oneshot[k]["accuracy"] for k in _keys(oneshot)],
        **FAMILY_STYLE["one-shot"],
        label="one-shot + fine-tuning",
    )
    x_it = [100 * float(k) for k in _keys(iterative)]
    ax.plot(
        x_it,
        [100 * iterative[k]["accuracy"] for k in _keys(iterative)],
        **FAMILY_STYLE["iterative"],
        label="iterative (same epochs)",
    )
    _dense_line(ax, metrics)
    ax.set(xlabel="sparsity (% of conv + linear weights)", ylabel="test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def storage(metrics: dict) -> Figure:
    """Bytes on disk of the pruned models (iterative) per encoding, vs sparsity."""
    table = metrics["iterative"]
    keys = _keys(table)
    x = [0.0] + [100 * float(k) for k in keys]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for name in metrics["baseline"]["storage_bytes"]:
        sizes = [metrics["baseline"]["storage_bytes"][name]]
        sizes += [table[k]["storage_bytes"][name] for k in keys]
        ax.plot(x, [s / 1e6 for s in sizes], "o-", label=encoding_label(name))
    ax.set(xlabel="sparsity (%)", ylabel="size (MB)", ylim=(0, None))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def selection(metrics: dict) -> Figure:
    """Validation accuracy of every importance (plain pruner) and every pruner."""
    importances, pruners = metrics["importance_comparison"], metrics["pruner_comparison"]
    fig, (ax_imp, ax_pr) = plt.subplots(
        1,
        2,
        figsize=(10, 3.4),
        gridspec_kw={"width_ratios": [len(importances), max(len(pruners), 2)]},
    )
    for ax, table, title in (
        (ax_imp, importances, "importance (plain pruner)"),
        (ax_pr, pruners, "pruner"),
    ):
        names = list(table)
        x = np.arange(len(names))
        ax.bar(
            x - 0.2,
            [100 * table[n]["val_accuracy_pruned"] for n in names],
            0.4,
            label="right after the last step",
        )
        ax.bar(
            x + 0.2, [100 * table[n]["val_accuracy"] for n in names], 0.4, label="after fine-tuning"
        )
        ax.set_xticks(x, names, rotation=30, ha="right")
        ax.set(ylabel="validation accuracy (%)", title=title)
        ax.grid(alpha=0.3, axis="y")
    ax_imp.legend(fontsize=8)
    fig.tight_layout()
    return fig


def structured(metrics: dict) -> Figure:
    """Test accuracy and measured speed-up over the dense model vs the channel ratio removed."""
    table = metrics["structured"]
    keys = _keys(table)
    x = [100 * float(k) for k in keys]
    fig, (ax_acc, ax_speed) = plt.subplots(1, 2, figsize=(10, 3.4))
    ax_acc.plot(
        x,
        [100 * table[k]["accuracy_pruned"] for k in keys],
        "^:",
        c="tab:green",
        alpha=0.6,
        label="right after the step",
    )
    ax_acc.plot(
        x,
        [100 * table[k]["accuracy"] for k in keys],
        **FAMILY_STYLE["structured"],
        label="after fine-tuning",
    )
    _dense_line(ax_acc, metrics)
    ax_acc.set(xlabel="channels removed (%)", ylabel="test accuracy (%)")
    ax_acc.legend(fontsize=8)
    for name in table[keys[0]]["speedup"]:
        ax_speed.plot(
            x, [table[k]["speedup"][name] for k in keys], "o-", label=name.replace("_b", ", batch ")
        )
    ax_speed.axhline(1, ls="--", c="gray")
    ax_speed.set(xlabel="channels removed (%)", ylabel="speed-up over dense (x)")
    ax_speed.legend(fontsize=8)
    for ax in (ax_acc, ax_speed):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def family_points(
    metrics: dict, latency_key: str = "onnx_b1"
) -> dict[str, list[tuple[float, float, float]]]:
    """(fraction of parameters kept non-zero, median latency ms, test accuracy) per family."""
    points: dict[str, list[tuple[float, float, float]]] = {}
    dense_params = metrics["baseline"]["params"]
    for family, key in (
        ("one-shot", "oneshot"),
        ("iterative", "iterative"),
        ("structured", "structured"),
    ):
        points[family] = [
            (
                r["nonzero_params"] / dense_params,
                r["latency_ms"][latency_key]["median_ms"],
                r["accuracy"],
            )
            for _, r in sorted(metrics[key].items(), key=lambda kv: float(kv[0]))
        ]
    return points


def tradeoff(metrics: dict, latency_key: str = "onnx_b1", title: str = "") -> Figure:
    """The chapter's comparison: accuracy vs parameters kept, and vs measured latency."""
    points = family_points(metrics, latency_key)
    base = metrics["baseline"]
    fig, (ax_params, ax_latency) = plt.subplots(1, 2, figsize=(10, 3.8))
    for family, rows in points.items():
        kept, latency_ms, accuracy = zip(*rows, strict=True)
        style = FAMILY_STYLE[family]
        ax_params.plot(
            [100 * k for k in kept], [100 * a for a in accuracy], "-", **style, label=family
        )
        ax_latency.plot(latency_ms, [100 * a for a in accuracy], ls="none", **style, label=family)
    for ax, x in ((ax_params, 100.0), (ax_latency, base["latency_ms"][latency_key]["median_ms"])):
        ax.plot([x], [100 * base["accuracy"]], "k*", ms=12, label="dense")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_ylabel("test accuracy (%)")
    ax_params.set_xlabel("non-zero parameters kept (% of dense)")
    ax_params.invert_xaxis()
    runtime, batch = latency_key.split("_b")
    ax_latency.set_xlabel(
        f"median latency, {'ONNX Runtime' if runtime == 'onnx' else 'PyTorch'}, batch {batch} (ms)"
    )
    fig.suptitle(title)
    fig.tight_layout()
    return fig

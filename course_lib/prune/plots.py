"""The pruning chapter's figures. Each takes the chapter's ``metrics`` dict (the layout saved
in ``results/pruning.json``), so a page can draw this run's and the saved full run's numbers
with the same function. Accuracies are stored as fractions and drawn in percent; speed-ups
carry their 95 % interval as error bars (results saved before the interleaved protocol
have none, and are drawn without)."""

from __future__ import annotations

import copy

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch_pruning as tp
from matplotlib.figure import Figure
from torch import nn

from ..legacy import ratio_parts
from . import ranking
from .summary import speedup_over_dense

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


def _errorbar(ax, x, ratios, **style) -> None:
    """Speed-ups with their interval as error bars (none for results saved without one)."""
    parts = [ratio_parts(r) for r in ratios]
    y = [m for m, _, _ in parts]
    if all(lo is not None for _, lo, _ in parts):
        err = [[m - lo for m, lo, _ in parts], [hi - m for m, _, hi in parts]]
        ax.errorbar(x, y, yerr=err, capsize=3, **style)
    else:
        fmt = style.pop("fmt", "-")
        ax.plot(x, y, fmt, **style)


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


def _seed_bars(ax, table: dict, title: str) -> None:
    """Mean validation accuracy over seeds (bars), every seed (dots), best first."""
    names = sorted(table, key=lambda n: -ranking.mean(table[n]))
    x = np.arange(len(names))
    ax.bar(x, [100 * ranking.mean(table[n]) for n in names], 0.6, color="tab:blue", alpha=0.6)
    for i, name in enumerate(names):
        seeds = ranking.values(table[name])
        ax.plot([i] * len(seeds), [100 * v for v in seeds], "k.", ms=5)
    low = min(min(ranking.values(table[n])) for n in names)
    ax.set_ylim(100 * low - 3, None)
    ax.set_xticks(x, names, rotation=35, ha="right", fontsize=8)
    ax.set(ylabel="validation accuracy (%)", title=title)
    ax.grid(alpha=0.3, axis="y")


def selection(metrics: dict) -> Figure:
    """The selection, one panel per stage: bars are means over seeds, dots single seeds."""
    panels = [
        ("importance_screening", "screening: no fine-tuning"),
        ("importance_comparison", "importances, fine-tuned (plain)"),
        ("pruner_comparison", "pruners, fine-tuned"),
    ]
    panels = [(k, t) for k, t in panels if k in metrics]
    widths = [max(len(metrics[k]), 2) for k, _ in panels]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(4 + 0.6 * sum(widths), 3.6), gridspec_kw={"width_ratios": widths}
    )
    for ax, (k, title) in zip(np.atleast_1d(axes), panels, strict=True):
        _seed_bars(ax, metrics[k], title)
    fig.tight_layout()
    return fig


def alignment(metrics: dict) -> Figure:
    """Speed-up over dense vs channels removed, widths as left by torch-pruning and rounded
    to multiples of ``round_to``, with the MAC reduction a perfect runtime would turn into
    speed."""
    a, base_macs = metrics["alignment"], metrics["baseline"]["macs"]
    settings = list(a["aligned"][_keys(a["aligned"])[0]]["speedup"])
    fig, axes = plt.subplots(1, len(settings), figsize=(5 * len(settings), 3.5))
    for ax, setting in zip(np.atleast_1d(axes), settings, strict=True):
        for name, style in (("unaligned", "o--"), ("aligned", "s-")):
            rows = [a[name][k] for k in _keys(a[name])]
            x = [100 * r["channels_removed"] for r in rows]
            label = name if name == "unaligned" else f"multiples of {a['round_to']}"
            _errorbar(ax, x, [r["speedup"][setting] for r in rows], fmt=style, label=label)
        rows = [a["aligned"][k] for k in _keys(a["aligned"])]
        ax.plot(
            [100 * r["channels_removed"] for r in rows],
            [base_macs / r["macs"] for r in rows],
            ":",
            c="gray",
            label="MAC reduction",
        )
        ax.axhline(1, ls="--", c="gray", lw=0.8)
        runtime, batch = setting.split("_b")
        ax.set(xlabel="channels removed (%)", ylabel="speed-up over dense (x)")
        ax.set_title(f"{'ONNX Runtime' if runtime == 'onnx' else 'PyTorch'}, batch {batch}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def structured(metrics: dict) -> Figure:
    """Test accuracy and measured speed-up over the dense model vs the channels removed."""
    table = metrics["structured"]
    keys = _keys(table)
    x = [100 * table[k]["channels_removed"] for k in keys]
    fig, (ax_acc, ax_speed) = plt.subplots(1, 2, figsize=(10, 3.4))
    ax_acc.plot(
        x, [100 * table[k]["accuracy_pruned"] for k in keys], "^:", c="tab:green", alpha=0.6,
        label="right after the step",
    )  # fmt: skip
    step = [100 * table[k].get("accuracy_step", table[k]["accuracy"]) for k in keys]
    ax_acc.plot(x, step, **FAMILY_STYLE["structured"], label="after the step's fine-tuning")
    if "accuracy_step" in table[keys[-1]]:
        ax_acc.plot(
            x[-1:], [100 * table[keys[-1]]["accuracy"]], "g*", ms=14, label="final fine-tune"
        )
    _dense_line(ax_acc, metrics)
    ax_acc.set(xlabel="channels removed (%)", ylabel="test accuracy (%)")
    ax_acc.legend(fontsize=8)
    for name in table[keys[0]]["speedup"]:
        ratios = [table[k]["speedup"][name] for k in keys]
        _errorbar(ax_speed, x, ratios, fmt="o-", label=name.replace("_b", ", batch "))
    ax_speed.axhline(1, ls="--", c="gray")
    ax_speed.set(xlabel="channels removed (%)", ylabel="speed-up over dense (x)")
    ax_speed.legend(fontsize=8)
    for ax in (ax_acc, ax_speed):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def timed_points(metrics: dict) -> dict[str, list[tuple]]:
    """(speed-up over dense in ONNX Runtime at batch 1, test accuracy) of every model whose
    latency was measured, per family (:func:`.summary.speedup_over_dense`)."""
    points: dict[str, list[tuple]] = {}
    for family, name in (
        ("one-shot", "oneshot"),
        ("iterative", "iterative"),
        ("structured", "structured"),
    ):
        for k in _keys(metrics[name]):
            ratio = speedup_over_dense(metrics, family, k)
            if ratio is not None:
                points.setdefault(family, []).append((ratio, metrics[name][k]["accuracy"]))
    return points


def tradeoff(metrics: dict, title: str = "") -> Figure:
    """The chapter's comparison: accuracy vs parameters kept, and vs measured speed-up."""
    base = metrics["baseline"]
    fig, (ax_params, ax_speed) = plt.subplots(1, 2, figsize=(10, 3.8))
    for family, name in (
        ("one-shot", "oneshot"),
        ("iterative", "iterative"),
        ("structured", "structured"),
    ):
        rows = [metrics[name][k] for k in _keys(metrics[name])]
        kept = [100 * r["nonzero_params"] / base["params"] for r in rows]
        style = FAMILY_STYLE[family]
        ax_params.plot(kept, [100 * r["accuracy"] for r in rows], "-", **style, label=family)
    for family, rows in timed_points(metrics).items():
        parts = [ratio_parts(r) for r, _ in rows]
        x = [m for m, _, _ in parts]
        err = None
        if all(lo is not None for _, lo, _ in parts):
            err = [[m - lo for m, lo, _ in parts], [hi - m for m, _, hi in parts]]
        style = {k: v for k, v in FAMILY_STYLE[family].items()}
        ax_speed.errorbar(
            x, [100 * a for _, a in rows], xerr=err, ls="none", capsize=3, **style, label=family
        )
    for ax, x in ((ax_params, 100.0), (ax_speed, 1.0)):
        ax.plot([x], [100 * base["accuracy"]], "k*", ms=12, label="dense")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_ylabel("test accuracy (%)")
    ax_params.set_xlabel("non-zero parameters kept (% of dense)")
    ax_params.invert_xaxis()
    ax_speed.set_xlabel("speed-up over dense, ONNX Runtime, batch 1 (x)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# --- torch-pruning's dependency groups --------------------------------------------------

OUT_HANDLERS = (
    tp.prune_conv_out_channels,
    tp.prune_linear_out_channels,
    tp.prune_batchnorm_out_channels,
)


def group_members(model: nn.Module, layer: str, idxs: list[int]) -> list[dict]:
    """The group torch-pruning builds to remove output channels ``idxs`` of the conv
    ``layer`` (a module name) of ``model``: one entry per parametrized member, with its
    name, the axis it loses (``"out"``: filters / entries, ``"in"``: input slices) and the
    indices, as the dependency graph computed them (traced on a CPU copy)."""
    model = copy.deepcopy(model).cpu().eval()
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=torch.randn(1, 3, 32, 32))
    modules = dict(model.named_modules())
    group = graph.get_pruning_group(modules[layer], tp.prune_conv_out_channels, idxs=list(idxs))
    names = {module: name for name, module in modules.items()}
    members = []
    for dep, member_idxs in group:
        module = dep.target.module
        if module not in names or not list(module.parameters(recurse=False)):
            continue
        axis = "out" if dep.handler in OUT_HANDLERS else "in"
        members.append(
            {
                "name": names[module],
                "module": module,
                "axis": axis,
                "idxs": sorted(map(int, member_idxs)),
            }
        )
    return members


def _weight_map(module: nn.Module) -> np.ndarray:
    """|w| as a 2-D map: (out, in) for conv (norm over the kernel) and linear, (C, 1) for BN."""
    w = module.weight.detach().float().cpu()
    if w.ndim == 4:
        w = w.flatten(2).norm(dim=2)
    return (w.abs() if w.ndim == 2 else w.abs()[:, None]).numpy()


def dependency_group(model: nn.Module, groups: dict[str, list[int]]) -> Figure:
    """One row per group (conv layer name -> output channels to remove): every member's
    weights (grey, |w|), with the slices the group removes in red."""
    rows = [group_members(model, layer, idxs) for layer, idxs in groups.items()]
    ncols = max(len(r) for r in rows)
    fig, axes = plt.subplots(
        len(rows), ncols, figsize=(3.4 * ncols, 3.0 * len(rows)), squeeze=False
    )
    for row_axes, members in zip(axes, rows, strict=True):
        for ax, member in zip(row_axes, members, strict=False):
            weights = _weight_map(member["module"])
            removed = np.zeros_like(weights, dtype=bool)
            if member["axis"] == "out":
                removed[member["idxs"], :] = True
            else:
                removed[:, member["idxs"]] = True
            ax.imshow(weights / weights.max(), cmap="Greys", aspect="auto", interpolation="nearest")
            overlay = np.zeros((*weights.shape, 4))
            overlay[removed] = (0.85, 0.1, 0.1, 0.85)
            ax.imshow(overlay, aspect="auto", interpolation="nearest")
            kind = type(member["module"]).__name__
            what = {"out": "rows (outputs)", "in": "columns (inputs)"}[member["axis"]]
            ax.set_title(
                f"{member['name']} ({kind})\nremoves {len(member['idxs'])} {what}", fontsize=9
            )
            ax.set(
                xlabel="input channel / feature" if weights.shape[1] > 1 else "", ylabel="output"
            )
            ax.set_xticks([] if weights.shape[1] == 1 else ax.get_xticks()[1:-1])
        for ax in row_axes[len(members) :]:
            ax.axis("off")
    fig.tight_layout()
    return fig

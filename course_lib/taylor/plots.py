"""The chapter's figures, drawn from its ``metrics`` dict (this run's or the saved full
run's). Accuracies are stored as fractions and drawn in percent."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .summary import binomial_se

STYLE = {
    "taylor": {"color": "tab:red", "marker": "o"},
    "taylor-batch": {"color": "tab:orange", "marker": "D"},
    "l1": {"color": "tab:blue", "marker": "s"},
    "activation": {"color": "tab:green", "marker": "^"},
    "random": {"color": "tab:gray", "marker": "x"},
}


def first_order(check: dict) -> Figure:
    """Measured loss change of zeroing each filter against its first-order estimate."""
    estimated, actual = np.array(check["estimated"]), np.array(check["actual"])
    fig, ax = plt.subplots(figsize=(4.6, 4))
    ax.scatter(estimated, actual, s=18)
    low = min(estimated.min(), actual.min())
    high = max(estimated.max(), actual.max())
    ax.plot([low, high], [low, high], "k--", lw=1, label="estimate = measured")
    ax.set(
        xlabel="first-order estimate $-\\sum z\\,\\partial C/\\partial z$ (nats)",
        ylabel="measured loss change (nats)",
        title=f"zeroing one filter of {check['layer']}",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _curve(runs: dict, x_key: str, y_key: str) -> tuple[np.ndarray, np.ndarray, list]:
    """Mean over seeds of ``x_key`` and ``y_key`` per round, and every seed's own curve."""
    curves = [
        ([r[x_key] for r in run["rounds"]], [r[y_key] for r in run["rounds"]])
        for run in runs.values()
    ]
    rounds = max(len(x) for x, _ in curves)
    mean_x = [np.mean([x[i] for x, _ in curves if i < len(x)]) for i in range(rounds)]
    mean_y = [np.mean([y[i] for _, y in curves if i < len(y)]) for i in range(rounds)]
    return np.array(mean_x), np.array(mean_y), curves


def criteria(metrics: dict, title: str = "") -> Figure:
    """Test accuracy against the parameters and the MACs removed (after fine-tuning), and
    right after each removal: one curve per criterion (mean over seeds; thin lines: the
    seeds)."""
    panels = (
        ("params_removed", "accuracy", "parameters removed (%)", "after fine-tuning"),
        ("macs_removed", "accuracy", "MACs removed (%)", "after fine-tuning"),
        ("params_removed", "accuracy_pruned", "parameters removed (%)", "right after the removal"),
    )
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=False)
    unpruned = np.mean([u["test_accuracy"] for u in metrics["unpruned"].values()])
    band = 100 * binomial_se(unpruned, metrics["test_images"])
    for ax, (x_key, y_key, xlabel, subtitle) in zip(axes, panels, strict=True):
        for name, runs in metrics["criteria"].items():
            style = STYLE.get(name, {})
            x, y, seeds = _curve(runs, x_key, y_key)
            if len(seeds) > 1:
                for sx, sy in seeds:
                    ax.plot(
                        100 * np.array(sx),
                        100 * np.array(sy),
                        lw=0.6,
                        alpha=0.35,
                        color=style.get("color"),
                    )
            ax.plot(100 * x, 100 * y, label=name, **style)
        ax.axhline(100 * unpruned, ls="--", c="k", lw=1, label="unpruned")
        ax.axhspan(100 * unpruned - 1, 100 * unpruned + 1, color="k", alpha=0.06, label="±1 point")
        ax.set(xlabel=xlabel, ylabel="test accuracy (%)", title=subtitle)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{title} (one test accuracy: standard error {band:.1f} points)".strip())
    fig.tight_layout()
    return fig


def layer_widths(metrics: dict) -> Figure:
    """Fraction of every conv layer's filters kept: ours and the seed's Table 3."""
    w = metrics["layer_widths"]
    ours = 100 * np.array(w["after"]) / np.array(w["before"])
    seed = 100 * np.array(w["seed_table3"]) / np.array(w["vgg16"])
    x = np.arange(1, len(ours) + 1)
    fig, ax = plt.subplots(figsize=(8, 3.4))
    ax.bar(x - 0.2, seed, 0.4, label="seed: VGG16, paintings (Table 3)", color="tab:orange")
    ax.bar(x + 0.2, ours, 0.4, label="ours: 1/4-width VGG16, CIFAR-10 pair", color="tab:red")
    for xi, (a, b) in zip(x, zip(w["after"], w["before"], strict=True), strict=True):
        ax.text(xi + 0.2, 100 * a / b + 1, str(a), ha="center", fontsize=7)
    ax.set(xlabel="conv layer", ylabel="filters kept (%)", xticks=x)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig

"""The chapter's figures. Those of results take the chapter's ``metrics`` dict (the layout
saved in ``results/bnn.json``), so this run's numbers and the saved full run's are drawn by
the same function. Accuracies are stored as fractions and drawn in percent. Every function
returns an open ``Figure`` (the course's convention, :mod:`course_lib.chapter`): the notebook
assigns it, ``fig = plots.training(m)``, and Jupyter shows it when the cell ends."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from .binarize import approx_sign_forward, sign, surrogate_curves
from .recu import tau_schedule
from .settings import LCE_SPEEDUP_RANGE, METHOD_LABELS
from .summary import TARGETS


def finish(fig: Figure) -> Figure:
    """Lay out ``fig`` and return it, open."""
    fig.tight_layout()
    return fig


def surrogates(limit: float = 2.0) -> Figure:
    """``sign`` and its two surrogates: forward values and the gradients autograd returns."""
    x = torch.linspace(-limit, limit, 801)
    curves = surrogate_curves(x)
    fig, (ax_f, ax_g) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax_f.plot(x, sign(x), "k", lw=2, label="sign (forward of both)")
    ax_f.plot(x, torch.clamp(x, -1, 1), "--", label="hardtanh (clipped identity's shape)")
    ax_f.plot(x, approx_sign_forward(x), "--", label="ApproxSign (Bi-Real)")
    ax_g.plot(x, curves["ste"]["gradient"], label="clipped identity STE")
    ax_g.plot(x, curves["approx"]["gradient"], label="ApproxSign")
    ax_f.set(xlabel="x", ylabel="forward value", title="forward")
    ax_g.set(xlabel="x", ylabel="d out / d x used in backward", title="backward (from autograd)")
    for ax in (ax_f, ax_g):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return finish(fig)


def recu_curves(recu: dict) -> Figure:
    """QE(tau) as printed and as solved (with numerical and sampled checks), and the
    entropy against tau for several Laplace scales ``b``."""
    fig, (ax_qe, ax_h) = plt.subplots(1, 2, figsize=(10, 3.6))
    tau = recu["tau"]
    ax_qe.plot(tau, recu["qe_printed"], label="eq. 22 as printed")
    ax_qe.plot(tau, recu["qe_solved"], label="eq. 19 solved (ours)")
    ax_qe.plot(recu["tau_numerical"], recu["qe_numerical"], "k.", label="eq. 19, numerical")
    if "qe_trained" in recu:
        ax_qe.plot(
            recu["tau_trained"], recu["qe_trained"], "s", ms=4, label="trained weights (sampled)"
        )
    ax_qe.axvline(recu["argmin_printed"], ls=":", c="tab:blue")
    ax_qe.annotate(
        f"printed minimum: {recu['argmin_printed']:.3f}",
        (recu["argmin_printed"], 0.05),
        xytext=(-120, 0),
        textcoords="offset points",
        fontsize=8,
    )
    ax_qe.set(xlabel="tau", ylabel="QE / b^2", title="quantization error after ReCU (b = 1)")
    for b, values in recu["entropy"].items():
        ax_h.plot(tau, values, label=f"b = {b}")
    ax_h.set(xlabel="tau", ylabel="entropy (nats)", title="information entropy (eq. 23)")
    for ax in (ax_qe, ax_h):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return finish(fig)


def schedule(tau_start: float, tau_end: float, steps: int = 100) -> Figure:
    """The exponential tau schedule of eq. 28 over training."""
    fig, ax = plt.subplots(figsize=(4.5, 3))
    x = np.arange(steps + 1)
    ax.plot(100 * x / steps, [tau_schedule(i, steps, tau_start, tau_end) for i in x])
    ax.set(xlabel="training progress (%)", ylabel="tau", title="eq. 28")
    ax.grid(alpha=0.3)
    return finish(fig)


def training(metrics: dict) -> Figure:
    """Validation accuracy per epoch of the float32 twin and the binary network."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for key, label in (("twin", "full precision (SGD)"), ("binary", "binary (Adam, distilled)")):
        acc = metrics["history"][key]["val_accuracy"]
        ax.plot(range(1, len(acc) + 1), [100 * a for a in acc], "o-", ms=3, label=label)
    ax.set(xlabel="epoch", ylabel="validation accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    return finish(fig)


def quantization_errors(metrics: dict) -> Figure:
    """Relative QE (eq. 8, divided by mean w^2) of every binary layer, with and without alpha."""
    errors = metrics["quantization_error"]
    names = list(errors)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(9, 3.2))
    for offset, key, label in (
        (-0.2, "without_alpha", "sign(w)"),
        (0.2, "with_alpha", "alpha sign(w)"),
    ):
        rel = [errors[n][key] / errors[n]["mean_square"] for n in names]
        ax.bar(x + offset, rel, 0.4, label=label)
    ax.set_xticks(
        x, [n.replace("stages.", "").replace(".conv", "/") for n in names], rotation=60, fontsize=7
    )
    ax.set_yscale("log")
    ax.set(ylabel="QE / mean(w^2)", title="quantization error of the trained latent weights")
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    return finish(fig)


def kernel_speedups(metrics: dict) -> Figure:
    """Binary over float32 conv speed-up per channel count, with 95 % intervals, beside
    the target and Larq Compute Engine's reported range on ARM."""
    kernel = metrics["kernel"]
    channels = list(kernel)
    med = np.array([kernel[c]["speedup"]["median"] for c in channels])
    low = np.array([kernel[c]["speedup"]["interval"][0] for c in channels])
    high = np.array([kernel[c]["speedup"]["interval"][1] for c in channels])
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    x = np.arange(len(channels))
    ax.bar(x, med, 0.6, yerr=[med - low, high - med], capsize=4, color="tab:green")
    ax.axhspan(*LCE_SPEEDUP_RANGE, color="gray", alpha=0.2, label="LCE on ARM (reported)")
    ax.axhline(TARGETS["kernel_speedup_256"], ls="--", c="k", label="target at 256")
    ax.set_xticks(x, [f"{c} ch" for c in channels])
    ax.set(ylabel="speed-up over float32 conv (x)", title="3x3 conv, 8x8 map, batch 1, 1 thread")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return finish(fig)


# -- the methods' comparison (notebook 06, metrics of results/bnn_methods.json) ----------------


def curve_epochs(entry: dict, values: list) -> list[float]:
    """Where a method's curve was measured, in epochs trained: ``val_epochs`` where the run
    recorded it, else once per epoch (results saved before 2026-12-07)."""
    return entry.get("val_epochs") or list(range(1, len(values) + 1))


def method_curves(metrics: dict) -> Figure:
    """Validation accuracy of every method (mean over its seeds) against the epochs trained,
    with the common start's test accuracy where the run recorded it; results saved before
    2026-12-07 recorded test accuracy once per epoch instead, and are drawn so labelled."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    split = (
        "validation" if all("val_accuracy" in e for e in metrics["methods"].values()) else "test"
    )
    for method, e in metrics["methods"].items():
        acc = e["val_accuracy"] if split == "validation" else e["test_accuracy"]
        style = "k--" if method == "fp" else "o-"
        label = f"{METHOD_LABELS.get(method, method)} (seeds {len(e['seeds'])})"
        ax.plot(curve_epochs(e, acc), [100 * a for a in acc], style, ms=3, label=label)
    if "start_accuracy" in metrics:
        ax.axhline(
            100 * metrics["start_accuracy"], color="grey", lw=1, ls=":", label="start (twin, test)"
        )
    ax.set(xlabel="epochs trained", ylabel=f"{split} accuracy (%)", title="binary ResNet-20")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return finish(fig)


def weight_flips(metrics: dict, methods: tuple[str, ...] = ("ste", "uncertainty")) -> Figure:
    """Binary weights that changed sign between two points of the curves (summed over the
    steps between them, mean over seeds): plain STE against the certainty-aware sign
    (eq. 36-38)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for method in methods:
        e = metrics["methods"][method]
        flips = e["flips"]
        ax.plot(curve_epochs(e, flips), flips, "o-", ms=3, label=METHOD_LABELS[method])
    ax.set(xlabel="epochs trained", ylabel="weights flipped since the previous point")
    if all(f > 0 for m in methods for f in metrics["methods"][m]["flips"]):
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    return finish(fig)

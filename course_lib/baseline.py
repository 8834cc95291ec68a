"""Chapter 1: what the baseline CNN costs and how well it does, its checkpoint, and the
tables of the chapter's page (drawn from its metrics dict, so that a quick run and the saved
full run go through the same functions).

Latency follows the course's one protocol (:func:`course_lib.measure.compare`): one
thread, eager PyTorch and ONNX Runtime timed **interleaved** at each batch size, medians
with 95 % bootstrap intervals; ONNX Runtime's speed-up over PyTorch is a ratio of two
medians taken side by side.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown
from matplotlib.figure import Figure
from torch import nn

from . import measure, paths
from .data import CLASSES
from .profiles import BaselineSettings
from .report import markdown_table
from .train import History

BATCH_CALLS = {1: 10, 64: 2}
"""Batch sizes the chapter times, and the calls per round at each."""


def layer_table(model: nn.Module) -> Markdown:
    """Output shape, parameters and MACs of every conv and linear layer, and the totals."""
    costs = measure.layer_costs(model)
    rows = [
        (c.name, c.kind, "x".join(map(str, c.output_shape[1:])), c.params, c.macs) for c in costs
    ]
    rows.append(("**total**", "", "", sum(c.params for c in costs), sum(c.macs for c in costs)))
    return markdown_table(rows, ["layer", "type", "output", "params", "MACs"])


def class_table(per_class: torch.Tensor) -> Markdown:
    """Test accuracy of every class (fractions in, percent out)."""
    rows = [
        (name, f"{100 * acc:.1f}") for name, acc in zip(CLASSES, per_class.tolist(), strict=True)
    ]
    return markdown_table(rows, ["class", "accuracy (%)"])


def latency(model: nn.Module, rounds: int, warmup: int = 10) -> dict:
    """Eager PyTorch and ONNX Runtime latency of ``model`` (one thread, on a CPU copy), the
    two interleaved at each batch size of :data:`BATCH_CALLS`. Returns ``{"latency_ms":
    {"torch_b1": Latency dict, "onnx_b1": ..., ...}, "onnx_speedup": {"b1": {"median",
    "interval"}, ...}}`` (ONNX Runtime over PyTorch)."""
    out: dict[str, dict] = {"latency_ms": {}, "onnx_speedup": {}}
    for batch, calls in BATCH_CALLS.items():
        runners = {
            "torch": measure.torch_runner(model, batch),
            "onnx": measure.onnx_runner(model, batch),
        }
        comparison = measure.compare(runners, rounds=rounds, calls=calls, warmup=warmup)
        for runtime in runners:
            out["latency_ms"][f"{runtime}_b{batch}"] = comparison[runtime].as_dict()
        out["onnx_speedup"][f"b{batch}"] = comparison.speedup("onnx", "torch").as_dict()
    return out


def latency_table(m: dict) -> Markdown:
    """The latency measured in :func:`latency` (or saved before the interleaved protocol,
    then labelled), with throughput and ONNX Runtime's speed-up over PyTorch."""
    rows = []
    for name, saved in m["latency_ms"].items():
        runtime, batch = name.rsplit("_b", 1)
        speedup = m.get("onnx_speedup", {}).get(f"b{batch}") if runtime != "torch" else None
        images_per_s = 1e3 * int(batch) / saved["median_ms"]
        rows.append(
            (
                saved["runtime"],
                batch,
                saved["threads"],
                measure.latency_text(saved),
                f"{images_per_s:,.0f}",
                measure.ratio_text(speedup) if speedup else "",
            )
        )
    headers = ["runtime", "batch", "threads", "median (95 % interval)", "images/s"]
    return markdown_table(rows, [*headers, "speed-up over PyTorch"])


def save_checkpoint(model: nn.Module, profile: str) -> Path:
    """The trained weights, written atomically to ``checkpoints/`` for ``full`` and to the
    scratch ``runs/<profile>/`` otherwise (a quick run never touches the committed file)."""
    path = paths.output_dir(profile) / paths.BASELINE_CHECKPOINT
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with paths.atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def metrics(
    model: nn.Module,
    test_accuracy: float,
    history: History,
    settings: BaselineSettings,
    measured_latency: dict,
) -> dict:
    """The chapter's metrics dict (the layout of ``results/baseline.json``)."""
    size = measure.summary(model)
    return {
        "test_accuracy": test_accuracy,
        "params": size["params"],
        "macs": size["macs"],
        "size_bytes": size["size_bytes"],
        "train_wall_time_s": history.wall_time_s,
        "epochs": settings.train.epochs,
        "history": {"val_accuracy": history.val_accuracy, "train_loss": history.train_loss},
        **measured_latency,
    }


def onnx_b1(m: dict) -> dict:
    """The ONNX Runtime batch-1 latency (results saved before the interleaved protocol
    named it ``onnxruntime_b1``)."""
    saved = m["latency_ms"]
    return saved["onnx_b1"] if "onnx_b1" in saved else saved["onnxruntime_b1"]


def full_results_table(saved: dict, this_run: dict, profile: str) -> Markdown:
    """The saved full-profile metrics beside this run's, with the chapter's targets."""
    rows = [
        ("test accuracy (%)", f"{100 * saved['test_accuracy']:.2f}", ">= 88", f"{100 * this_run['test_accuracy']:.2f}"),
        ("training wall time (min)", f"{saved['train_wall_time_s'] / 60:.1f}", "<= 30", f"{this_run['train_wall_time_s'] / 60:.1f}"),
        ("parameters", saved["params"], "", this_run["params"]),
        ("MACs", saved["macs"], "", this_run["macs"]),
        ("ONNX Runtime, batch 1", measure.latency_text(onnx_b1(saved)), "", measure.latency_text(onnx_b1(this_run))),
    ]  # fmt: skip
    return markdown_table(
        rows, ["metric", "full profile (saved)", "target", f"this run ({profile})"]
    )


def validation_curve(saved: dict, target: float = 0.88) -> Figure:
    """Validation accuracy per epoch of a saved run, with the test-accuracy target."""
    accuracy = saved["history"]["val_accuracy"]
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(range(1, len(accuracy) + 1), [100 * a for a in accuracy])
    ax.axhline(100 * target, ls="--", c="gray", label="target (test)")
    ax.set(xlabel="epoch", ylabel="validation accuracy (%)", title="full profile")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig

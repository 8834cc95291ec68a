"""Chapter 1's measurements: the baseline's latency by the course's one protocol, its
checkpoint, and the chapter's metrics dict (the layout of ``results/baseline.json``).

Latency follows :func:`course_lib.measure.compare`: one thread, eager PyTorch and ONNX
Runtime timed **interleaved** at each batch size, medians with 95 % bootstrap intervals;
ONNX Runtime's speed-up over PyTorch is a ratio of two medians taken side by side.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .. import measure, paths
from ..train import History
from .settings import BaselineSettings

NOTEBOOK = "notebooks/01_baseline.ipynb"

BATCH_CALLS = {1: 10, 64: 2}
"""Batch sizes the chapter times, and the calls per round at each."""


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

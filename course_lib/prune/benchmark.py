"""Measured CPU latency of a (pruned) model, in PyTorch and ONNX Runtime, and speed-ups.

Thin wrappers over :mod:`course_lib.measure`: every model is timed on a CPU copy (the model
being trained may live on a GPU), at the batch sizes the chapter reports.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from .. import measure
from ..train import evaluate
from .storage import storage_report
from .unstructured import copy_model, make_permanent, nonzero_macs

RUNTIMES = ("torch", "onnx")


def latency(
    model: nn.Module, batch_sizes: tuple[int, ...] = (1, 64), repeats: int = 50, warmup: int = 10
) -> dict[str, dict]:
    """``{"torch_b1": Latency.as_dict(), "onnx_b1": ..., ...}`` (milliseconds) of a CPU copy
    of ``model`` in eager PyTorch and in ONNX Runtime, for every batch size. Every model is
    timed in the same (contiguous) memory format, whatever training left it in."""
    cpu_model = copy_model(model).cpu().eval().to(memory_format=torch.contiguous_format)
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        onnx_path = measure.export_onnx(cpu_model, Path(folder) / "model.onnx")
        for batch in batch_sizes:
            results[f"torch_b{batch}"] = measure.torch_latency(
                cpu_model, batch, warmup=warmup, repeats=repeats
            ).as_dict()
            results[f"onnx_b{batch}"] = measure.onnx_latency(
                onnx_path, batch, warmup=warmup, repeats=repeats
            ).as_dict()
    return results


def median_ms(latencies: dict[str, dict]) -> dict[str, float]:
    """Just the medians: ``{"torch_b1": 0.41, ...}`` (milliseconds)."""
    return {key: value["median_ms"] for key, value in latencies.items()}


def speedups(latencies: dict[str, dict], reference: dict[str, dict]) -> dict[str, float]:
    """Median-latency speed-up over ``reference`` (e.g. the dense model): >1 is faster."""
    return {
        key: reference[key]["median_ms"] / value["median_ms"]
        for key, value in latencies.items()
        if key in reference
    }


def describe(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    batch_sizes: tuple[int, ...] = (1, 64),
    repeats: int = 50,
    warmup: int = 10,
) -> dict:
    """Everything the chapter reports about one model, as a JSON-ready dict: ``accuracy``
    (fraction, on ``loader``), ``params``, ``nonzero_params``, ``macs`` (dense kernels),
    ``nonzero_macs`` (ideal sparse kernels), ``size_bytes`` (``torch.save``), ``storage_bytes``
    (dense and sparse encodings) and ``latency_ms`` of the model as deployed (pruning masks
    made permanent)."""
    deployed = make_permanent(copy_model(model)).cpu().eval()
    return {
        "accuracy": evaluate(model, loader)[1],
        "params": measure.count_params(deployed),
        "nonzero_params": measure.count_nonzero_params(deployed),
        "macs": measure.count_macs(deployed),
        "nonzero_macs": nonzero_macs(deployed),
        "size_bytes": measure.size_on_disk(deployed),
        "storage_bytes": storage_report(deployed),
        "latency_ms": latency(deployed, batch_sizes, repeats, warmup),
    }

"""Measured CPU latency of a (pruned) model, in PyTorch and ONNX Runtime, and speed-ups.

Thin wrappers over :mod:`course_lib.measure`: every model is timed on a CPU copy (the model
being trained may live on a GPU), at the batch sizes the chapter reports, interleaved with
the model it is compared against.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from .. import measure
from ..train import evaluate
from .storage import storage_report
from .unstructured import copy_model, make_permanent, nonzero_macs


def latency(
    model: nn.Module,
    reference: nn.Module | None = None,
    batch_sizes: tuple[int, ...] = (1, 64),
    rounds: int = 30,
    calls: int = 10,
    warmup: int = 10,
) -> dict[str, dict]:
    """Latency of ``model`` in eager PyTorch and ONNX Runtime at every batch size, one thread,
    timed **interleaved** with ``reference`` (e.g. the dense model) when given
    (:func:`course_lib.measure.compare`). Returns ``{"latency_ms": {"onnx_b1": Latency dict,
    ...}, "reference_ms": {...}, "speedup": {"onnx_b1": {"median", "interval"}, ...}}``
    (the last two only with a reference)."""
    out: dict[str, dict] = {"latency_ms": {}}
    if reference is not None:
        out["reference_ms"], out["speedup"] = {}, {}
    for runtime in measure.RUNTIMES:
        for batch in batch_sizes:
            key = f"{runtime}_b{batch}"
            models = {"model": model} if reference is None else {"model": model, "ref": reference}
            comparison = measure.compare_models(
                models, runtime, batch, rounds=rounds, calls=calls, warmup=warmup
            )
            out["latency_ms"][key] = comparison["model"].as_dict()
            if reference is not None:
                out["reference_ms"][key] = comparison["ref"].as_dict()
                out["speedup"][key] = comparison.speedup("model", "ref").as_dict()
    return out


def describe(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    reference: nn.Module | None = None,
    batch_sizes: tuple[int, ...] = (1, 64),
    rounds: int = 30,
    calls: int = 10,
    warmup: int = 10,
) -> dict:
    """Everything the chapter reports about one model, as a JSON-ready dict: ``accuracy``
    (fraction, on ``loader``), ``params``, ``nonzero_params``, ``macs`` (dense kernels),
    ``nonzero_macs`` (ideal sparse kernels), ``size_bytes`` (``torch.save``), ``storage_bytes``
    (dense and sparse encodings) and ``latency_ms`` of the model as deployed (pruning masks
    made permanent), timed interleaved with ``reference`` and with its ``speedup`` over it
    when a reference is given (see :func:`latency`)."""
    deployed = make_permanent(copy_model(model)).cpu().eval()
    return {
        "accuracy": evaluate(model, loader)[1],
        "params": measure.count_params(deployed),
        "nonzero_params": measure.count_nonzero_params(deployed),
        "macs": measure.count_macs(deployed),
        "nonzero_macs": nonzero_macs(deployed),
        "size_bytes": measure.size_on_disk(deployed),
        "storage_bytes": storage_report(deployed),
        **latency(deployed, reference, batch_sizes, rounds, calls, warmup),
    }

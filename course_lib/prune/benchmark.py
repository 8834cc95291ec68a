"""Measured CPU latency of (pruned) models, in PyTorch and ONNX Runtime, and speed-ups.

Thin wrappers over :func:`course_lib.measure.compare`: every model is timed on a CPU copy
(the model being trained may live on a GPU), on one thread, at the batch sizes the chapter
reports, **interleaved** with the model it is compared against, so a speed-up is always
two medians taken side by side, with the 95 % bootstrap interval of their ratio.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from .. import measure
from ..train import evaluate
from .storage import storage_report
from .unstructured import copy_model, make_permanent, nonzero_macs

Protocol = dict[int, tuple[int, int]]
"""Per batch size, ``(rounds, calls per round)`` of :func:`course_lib.measure.compare`."""


def compare(
    models: dict[str, nn.Module],
    protocol: Protocol,
    warmup: int = 10,
    baseline: str | None = None,
    runtimes: tuple[str, ...] = measure.RUNTIMES,
) -> dict[str, dict]:
    """Time ``models`` side by side in every runtime at every batch size of ``protocol``.

    Returns ``{"latency_ms": {"onnx_b1": {name: Latency dict}, ...}, "speedup": {"onnx_b1":
    {name: {"median", "interval"}}, ...}}`` (speed-ups over ``baseline``, when given)."""
    out: dict[str, dict] = {"latency_ms": {}, "speedup": {}}
    for runtime in runtimes:
        for batch, (rounds, calls) in protocol.items():
            key = f"{runtime}_b{batch}"
            comparison = measure.compare_models(
                models, runtime, batch, rounds=rounds, calls=calls, warmup=warmup
            ).as_dict(baseline)
            out["latency_ms"][key] = comparison["latency_ms"]
            if baseline is not None:
                out["speedup"][key] = comparison["speedup"]
    if baseline is None:
        del out["speedup"]
    return out


def latency(
    model: nn.Module,
    reference: nn.Module | None = None,
    protocol: Protocol | None = None,
    warmup: int = 10,
) -> dict[str, dict]:
    """Latency of ``model`` in eager PyTorch and ONNX Runtime at every batch size, one thread,
    timed **interleaved** with ``reference`` (e.g. the dense model) when given. Returns
    ``{"latency_ms": {"onnx_b1": Latency dict, ...}, "reference_ms": {...}, "speedup":
    {"onnx_b1": {"median", "interval"}, ...}}`` (the last two only with a reference)."""
    protocol = protocol or {1: (30, 10), 64: (10, 2)}
    models = {"model": model} if reference is None else {"model": model, "reference": reference}
    table = compare(models, protocol, warmup, "reference" if reference is not None else None)
    out = {"latency_ms": {k: v["model"] for k, v in table["latency_ms"].items()}}
    if reference is not None:
        out["reference_ms"] = {k: v["reference"] for k, v in table["latency_ms"].items()}
        out["speedup"] = {k: v["model"] for k, v in table["speedup"].items()}
    return out


def describe(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
    reference: nn.Module | None = None,
    protocol: Protocol | None = None,
    warmup: int = 10,
    accuracy: float | None = None,
) -> dict:
    """Everything the chapter reports about one model, as a JSON-ready dict: ``accuracy``
    (fraction, on ``loader``, unless given), ``params``, ``nonzero_params``, ``macs`` (dense
    kernels), ``nonzero_macs`` (ideal sparse kernels), ``size_bytes`` (``torch.save``),
    ``storage_bytes`` (dense and sparse encodings) and, when ``protocol`` is given, the
    latency of the model as deployed (pruning masks made permanent), timed interleaved with
    ``reference`` with its ``speedup`` over it (see :func:`latency`)."""
    if accuracy is None and loader is None:
        raise ValueError("describe needs a loader to measure accuracy on, or the accuracy")
    deployed = make_permanent(copy_model(model)).cpu().eval()
    row = {
        "accuracy": evaluate(model, loader)[1] if accuracy is None else accuracy,
        "params": measure.count_params(deployed),
        "nonzero_params": measure.count_nonzero_params(deployed),
        "macs": measure.count_macs(deployed),
        "nonzero_macs": nonzero_macs(deployed),
        "size_bytes": measure.size_on_disk(deployed),
        "storage_bytes": storage_report(deployed),
    }
    if protocol is not None:
        row.update(latency(deployed, reference, protocol, warmup))
    return row

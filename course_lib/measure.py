"""What a model costs: parameters, MACs, bytes on disk, and latency (PyTorch and ONNX Runtime).

Units. A MAC is one multiply-accumulate; FLOPs are usually counted as 2 x MACs (one
multiply, one add). Everything here counts **MACs** of convolution and linear layers only
(BatchNorm, ReLU and pooling are a few percent at most and are not counted), per forward
pass of the given input. Latencies are in milliseconds, sizes in bytes.
"""

from __future__ import annotations

import io
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

# --- size -------------------------------------------------------------------------------


def _effective_tensors(model: nn.Module):
    """(name, tensor) of every parameter, with pruning masks applied (``weight_orig`` ->
    the masked ``weight`` that the forward pass uses)."""
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            if name.endswith("_orig"):
                name = name[: -len("_orig")]
                param = getattr(module, name)
            yield f"{module_name}.{name}" if module_name else name, param


def count_params(model: nn.Module) -> int:
    """Number of parameters (pruned or not)."""
    return sum(t.numel() for _, t in _effective_tensors(model))


def count_nonzero_params(model: nn.Module) -> int:
    """Number of parameters that are not exactly zero after any pruning masks are applied."""
    return sum(int(torch.count_nonzero(t)) for _, t in _effective_tensors(model))


def size_on_disk(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())`` (dense float32 storage)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


# --- MACs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerCost:
    """One conv or linear layer: output shape of one forward pass, parameters and MACs."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macs: int


def conv2d_macs(layer: nn.Conv2d, output: torch.Tensor) -> int:
    """MACs of a conv: every output element sums ``C_in / groups * k_h * k_w`` products."""
    k_h, k_w = layer.kernel_size
    return output.numel() * (layer.in_channels // layer.groups) * k_h * k_w


def linear_macs(layer: nn.Linear, output: torch.Tensor) -> int:
    """MACs of a linear layer: every output element sums ``in_features`` products."""
    return output.numel() * layer.in_features


def layer_costs(model: nn.Module, input_size: tuple[int, ...] = (1, 3, 32, 32)) -> list[LayerCost]:
    """Per-layer MACs and parameters of one forward pass on a zero input of ``input_size``."""
    costs: list[LayerCost] = []
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.Linear):

            def hook(mod, _inputs, output, name=name):
                macs = (
                    conv2d_macs(mod, output)
                    if isinstance(mod, nn.Conv2d)
                    else linear_macs(mod, output)
                )
                params = sum(p.numel() for p in mod.parameters(recurse=False))
                costs.append(LayerCost(name, type(mod).__name__, tuple(output.shape), params, macs))

            hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros(input_size, device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return costs


def count_macs(model: nn.Module, input_size: tuple[int, ...] = (1, 3, 32, 32)) -> int:
    """Total MACs of conv and linear layers for one forward pass of ``input_size``."""
    return sum(c.macs for c in layer_costs(model, input_size))


def summary(model: nn.Module, input_size: tuple[int, ...] = (1, 3, 32, 32)) -> dict[str, int]:
    """Parameters, non-zero parameters, MACs and bytes on disk, in one dict."""
    return {
        "params": count_params(model),
        "nonzero_params": count_nonzero_params(model),
        "macs": count_macs(model, input_size),
        "size_bytes": size_on_disk(model),
    }


# --- latency ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    """Wall-clock latency of one call, over ``repeats`` timed runs after ``warmup`` runs."""

    median_ms: float
    mean_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int
    warmup: int
    threads: int
    batch_size: int
    runtime: str

    def as_dict(self) -> dict:
        return asdict(self)


def time_calls(fn: Callable[[], object], warmup: int, repeats: int) -> list[float]:
    """Milliseconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def _latency(
    times: list[float], warmup: int, threads: int, batch_size: int, runtime: str
) -> Latency:
    deciles = statistics.quantiles(times, n=10) if len(times) > 1 else [times[0]] * 9
    return Latency(
        median_ms=statistics.median(times),
        mean_ms=statistics.fmean(times),
        p10_ms=deciles[0],
        p90_ms=deciles[-1],
        repeats=len(times),
        warmup=warmup,
        threads=threads,
        batch_size=batch_size,
        runtime=runtime,
    )


def torch_latency(
    model: nn.Module,
    batch_size: int = 1,
    input_shape: tuple[int, ...] = (3, 32, 32),
    warmup: int = 10,
    repeats: int = 50,
    threads: int | None = None,
) -> Latency:
    """Latency of ``model`` in eager PyTorch (eval mode, no grad, float32) on the CPU."""
    threads = threads or torch.get_num_threads()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    model = model.eval()
    x = torch.randn(batch_size, *input_shape, device=next(model.parameters()).device)
    try:
        with torch.inference_mode():
            times = time_calls(lambda: model(x), warmup, repeats)
    finally:
        torch.set_num_threads(previous)
    return _latency(times, warmup, threads, batch_size, f"torch {torch.__version__}")


def export_onnx(
    model: nn.Module, path: str | Path, input_shape: tuple[int, ...] = (1, 3, 32, 32)
) -> Path:
    """Export ``model`` (eval mode, CPU, float32) to ONNX with a dynamic batch dimension."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu().to(memory_format=torch.contiguous_format)
    example = torch.randn(*input_shape)
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=["images"],
        output_names=["logits"],
        dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
        dynamo=False,
    )
    return path


def onnx_session(path: str | Path, threads: int = 1, parallel: bool = False):
    """An ONNX Runtime CPU session with ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = threads
    options.execution_mode = (
        ort.ExecutionMode.ORT_PARALLEL if parallel else ort.ExecutionMode.ORT_SEQUENTIAL
    )
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_latency(
    model_or_path: nn.Module | str | Path,
    batch_size: int = 1,
    input_shape: tuple[int, ...] = (3, 32, 32),
    warmup: int = 10,
    repeats: int = 50,
    threads: int | None = None,
) -> Latency:
    """Latency under ONNX Runtime (CPU). A model is exported to a temporary file first."""
    import numpy as np
    import onnxruntime as ort

    threads = threads or torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        path = model_or_path
        if isinstance(model_or_path, nn.Module):
            path = export_onnx(model_or_path, os.path.join(tmp, "model.onnx"), (1, *input_shape))
        session = onnx_session(path, threads)
        x = np.random.default_rng(0).standard_normal((batch_size, *input_shape), dtype=np.float32)
        name = session.get_inputs()[0].name
        times = time_calls(lambda: session.run(None, {name: x}), warmup, repeats)
    return _latency(times, warmup, threads, batch_size, f"onnxruntime {ort.__version__}")

"""What a model costs: parameters, MACs, bytes on disk, and latency (PyTorch and ONNX Runtime).

Units. A MAC is one multiply-accumulate; FLOPs are usually counted as 2 x MACs (one
multiply, one add). Everything here counts **MACs** of convolution and linear layers only
(BatchNorm, ReLU and pooling are a few percent at most and are not counted), per forward
pass of the given input. Latencies are in milliseconds, sizes in bytes. Saved latencies and
speed-ups are shown by :mod:`course_lib.formatting`.
"""

from __future__ import annotations

import copy
import io
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .formatting import latency_text, ratio_text

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


# --- latency: one protocol for the whole course --------------------------------------------
#
# Every timing in the course goes through :func:`compare`. Its protocol:
#
# 1. every candidate gets ``warmup`` untimed calls (allocations, caches, lazy init);
# 2. then ``rounds`` rounds; in each round every candidate runs ``calls`` timed calls, the
#    candidates **interleaved** (A, B, C, then B, C, A, ...), so that drift of a shared
#    machine (another job, frequency changes) hits all of them alike;
# 3. a candidate's latency is the median over rounds of its per-call time in that round,
#    with a 95 % bootstrap interval; a speed-up is the ratio of two medians, its interval
#    from resampling the *paired* rounds.
#
# PyTorch runs on ``threads`` intra-op threads (default one) during the measurement, ONNX
# Runtime sessions are built with their own thread count; each runner states its runtime.
# Measuring never changes the caller's model: runners work on a deep copy.

RUNTIMES = ("torch", "onnx")


@dataclass(frozen=True)
class Runner:
    """One thing to time: ``fn()`` runs one forward pass of ``batch_size`` inputs.

    ``runtime`` says what runs it (e.g. ``"torch 2.14.1 eager"``); ``threads`` is the
    runner's own thread count, or ``None`` for PyTorch code, which runs on the count
    :func:`compare` sets.
    """

    fn: Callable[[], object]
    runtime: str
    batch_size: int
    threads: int | None = None


@dataclass(frozen=True)
class Latency:
    """Milliseconds per call: the median over rounds, its 95 % bootstrap interval
    (``low_ms``-``high_ms``) and the 10th / 90th percentiles of the per-round times."""

    median_ms: float
    low_ms: float
    high_ms: float
    p10_ms: float
    p90_ms: float
    runtime: str
    threads: int
    batch_size: int
    rounds: int
    calls: int
    warmup: int

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return latency_text(self.as_dict())


@dataclass(frozen=True)
class Ratio:
    """A speed-up (or any ratio of two latencies) with its 95 % bootstrap interval."""

    median: float
    low: float
    high: float

    def as_dict(self) -> dict:
        return {"median": self.median, "interval": [self.low, self.high]}

    def __str__(self) -> str:
        return ratio_text(self.as_dict())


@dataclass(frozen=True)
class Comparison:
    """The result of :func:`compare`: per-candidate :class:`Latency` and the per-round
    times (milliseconds per call, rounds aligned across candidates) behind them."""

    latencies: dict[str, Latency]
    round_ms: dict[str, list[float]]
    bootstrap: int = 2000
    seed: int = 0

    def __getitem__(self, name: str) -> Latency:
        return self.latencies[name]

    def speedup(self, candidate: str, baseline: str) -> Ratio:
        """How many times faster ``candidate`` runs than ``baseline`` (>1: faster)."""
        base = np.asarray(self.round_ms[baseline])
        cand = np.asarray(self.round_ms[candidate])
        rng = np.random.default_rng(self.seed)
        picks = rng.integers(0, len(base), size=(self.bootstrap, len(base)))
        ratios = np.median(base[picks], axis=1) / np.median(cand[picks], axis=1)
        low, high = np.percentile(ratios, [2.5, 97.5])
        return Ratio(float(np.median(base) / np.median(cand)), float(low), float(high))

    def as_dict(self, baseline: str | None = None) -> dict:
        """``{"latency_ms": {name: Latency.as_dict()}, "speedup": {name: Ratio.as_dict()}}``
        (speed-ups over ``baseline``, when given)."""
        out: dict = {"latency_ms": {k: v.as_dict() for k, v in self.latencies.items()}}
        if baseline is not None:
            out["speedup"] = {
                k: self.speedup(k, baseline).as_dict() for k in self.latencies if k != baseline
            }
        return out


def _bootstrap_median(samples: np.ndarray, resamples: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(samples), size=(resamples, len(samples)))
    low, high = np.percentile(np.median(samples[picks], axis=1), [2.5, 97.5])
    return float(low), float(high)


def compare(
    runners: dict[str, Runner],
    rounds: int = 30,
    calls: int = 10,
    warmup: int = 10,
    threads: int = 1,
    progress: bool = False,
) -> Comparison:
    """Time every runner with the course's protocol (see the comment above) and return a
    :class:`Comparison`. PyTorch runs on ``threads`` intra-op threads meanwhile."""
    if not runners:
        raise ValueError("compare needs at least one runner")
    if rounds < 2 or calls < 1 or warmup < 0:
        raise ValueError(
            f"need rounds >= 2, calls >= 1, warmup >= 0; got {rounds}, {calls}, {warmup}"
        )
    names = list(runners)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    round_ms: dict[str, list[float]] = {name: [] for name in names}
    try:
        for name in names:
            for _ in range(warmup):
                runners[name].fn()
        for r in tqdm(range(rounds), desc="latency rounds", disable=not progress, leave=False):
            for i in range(len(names)):
                name = names[(r + i) % len(names)]
                fn = runners[name].fn
                start = time.perf_counter()
                for _ in range(calls):
                    fn()
                round_ms[name].append((time.perf_counter() - start) * 1e3 / calls)
    finally:
        torch.set_num_threads(previous)
    latencies = {}
    for name in names:
        samples = np.asarray(round_ms[name])
        low, high = _bootstrap_median(samples, 2000, 0)
        p10, p90 = np.percentile(samples, [10, 90])
        runner = runners[name]
        latencies[name] = Latency(
            median_ms=float(np.median(samples)),
            low_ms=low,
            high_ms=high,
            p10_ms=float(p10),
            p90_ms=float(p90),
            runtime=runner.runtime,
            threads=runner.threads or threads,
            batch_size=runner.batch_size,
            rounds=rounds,
            calls=calls,
            warmup=warmup,
        )
    return Comparison(latencies, round_ms)


def latency(runner: Runner, **protocol) -> Latency:
    """The latency of one runner alone (``protocol``: the arguments of :func:`compare`)."""
    return compare({"only": runner}, **protocol)["only"]


# --- runners ------------------------------------------------------------------------------


def deployable_copy(model: nn.Module) -> nn.Module:
    """A CPU, eval-mode, contiguous-format deep copy of ``model``: what gets timed or
    exported, so that the caller's model (its device, mode and memory format) is untouched."""
    clone = copy.deepcopy(model).cpu().eval()
    return clone.to(memory_format=torch.contiguous_format)


def example_input(batch_size: int, input_shape: tuple[int, ...] = (3, 32, 32)) -> torch.Tensor:
    """A fixed (seeded) float32 input batch."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch_size, *input_shape, generator=generator)


def torch_runner(
    model: nn.Module, batch_size: int = 1, input_shape: tuple[int, ...] = (3, 32, 32)
) -> Runner:
    """Eager PyTorch, float32, ``inference_mode``, on a CPU copy of ``model``."""
    clone, x = deployable_copy(model), example_input(batch_size, input_shape)

    def run() -> None:
        with torch.inference_mode():
            clone(x)

    return Runner(run, f"torch {torch.__version__} eager", batch_size)


def export_onnx(
    model: nn.Module, path: str | Path, input_shape: tuple[int, ...] = (1, 3, 32, 32)
) -> Path:
    """Export a CPU copy of ``model`` (eval mode, float32) to ONNX with a dynamic batch
    dimension. ``model`` itself is not changed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            deployable_copy(model),
            (example_input(input_shape[0], input_shape[1:]),),
            str(path),
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
            dynamo=False,
        )
    return path


def onnx_session(path: str | Path, threads: int = 1, parallel: bool = False):
    """An ONNX Runtime CPU session with ``threads`` intra-op threads (``parallel``: ONNX
    Runtime's parallel executor, one intra-op thread and ``threads`` inter-op threads)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1 if parallel else threads
    options.inter_op_num_threads = threads
    options.execution_mode = (
        ort.ExecutionMode.ORT_PARALLEL if parallel else ort.ExecutionMode.ORT_SEQUENTIAL
    )
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_runner(
    model_or_path: nn.Module | str | Path,
    batch_size: int = 1,
    input_shape: tuple[int, ...] = (3, 32, 32),
    threads: int = 1,
    parallel: bool = False,
) -> Runner:
    """ONNX Runtime (CPU) on ``threads`` threads; a model is exported to a temporary file."""
    import onnxruntime as ort

    if isinstance(model_or_path, nn.Module):
        with tempfile.TemporaryDirectory() as folder:
            path = export_onnx(model_or_path, Path(folder) / "model.onnx", (1, *input_shape))
            session = onnx_session(path, threads, parallel)
    else:
        session = onnx_session(model_or_path, threads, parallel)
    name = session.get_inputs()[0].name
    x = example_input(batch_size, input_shape).numpy()
    mode = ", parallel executor" if parallel else ""
    return Runner(
        lambda: session.run(None, {name: x}),
        f"onnxruntime {ort.__version__}{mode}",
        batch_size,
        threads,
    )


def model_runner(
    model: nn.Module,
    runtime: str = "onnx",
    batch_size: int = 1,
    threads: int = 1,
    input_shape: tuple[int, ...] = (3, 32, 32),
) -> Runner:
    """A runner of ``model`` in ``runtime`` (one of :data:`RUNTIMES`)."""
    if runtime == "torch":
        return torch_runner(model, batch_size, input_shape)
    if runtime == "onnx":
        return onnx_runner(model, batch_size, input_shape, threads)
    raise ValueError(f"unknown runtime {runtime!r}: use one of {', '.join(RUNTIMES)}")


def compare_models(
    models: dict[str, nn.Module],
    runtime: str = "onnx",
    batch_size: int = 1,
    threads: int = 1,
    input_shape: tuple[int, ...] = (3, 32, 32),
    **protocol,
) -> Comparison:
    """Latency of several models side by side in one runtime (interleaved, see
    :func:`compare`; ``protocol``: its ``rounds``, ``calls``, ``warmup``, ``progress``)."""
    runners = {
        name: model_runner(model, runtime, batch_size, threads, input_shape)
        for name, model in models.items()
    }
    return compare(runners, threads=threads, **protocol)

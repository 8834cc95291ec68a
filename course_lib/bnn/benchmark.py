"""How fast the packed kernel and the packed network run, with the course's one latency
protocol (:func:`course_lib.measure.compare`: interleaved rounds, medians, bootstrap
intervals, one thread, batch 1).

- :func:`kernel_benchmark`: one binary conv (sign + pack + XNOR/popcount + scale and bias,
  float NHWC in and out) against PyTorch's float32 conv of the same shape (k x k, ``size``
  x ``size`` map, ``C`` in and out channels), for several ``C``;
- :func:`network_benchmark`: the packed binary ResNet-20 against its float32 twin in
  PyTorch and in ONNX Runtime, and how long the packed network's full-precision stem and
  head take;
- :func:`amplitude_benchmark`: what DA-BNN's data-adaptive amplitudes cost at inference,
  the packed DA-BNN network against a packed plain binary network of the same shape.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import measure
from .binarize import sign
from .engine import PackedResNet
from .kernel import PackedConv, kernel_path
from .resnet import BinaryResNet


def conv_runners(channels: int, size: int = 8, kernel: int = 3, seed: int = 0) -> dict:
    """Runners of a float32 conv (PyTorch, NCHW) and the packed binary conv (C++ kernel,
    NHWC) of the same shape, on random weights and inputs."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, channels, size, size, generator=generator)
    w = torch.randn(channels, channels, kernel, kernel, generator=generator)
    conv = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, bias=False).eval()
    conv.weight.data.copy_(w)
    packed = PackedConv.from_signs(sign(w), torch.zeros(channels), 1, kernel // 2)
    x_nhwc = x.permute(0, 2, 3, 1).contiguous()
    scale, bias = (
        torch.rand(channels, generator=generator),
        torch.randn(channels, generator=generator),
    )
    packed.forward(x_nhwc, scale, bias, backend="cpp")  # build the kernel before timing

    def float_conv() -> None:
        with torch.inference_mode():
            conv(x)

    def binary_conv() -> None:
        packed.forward(x_nhwc, scale, bias, backend="cpp")

    return {
        "float32 conv": measure.Runner(float_conv, f"torch {torch.__version__} eager", 1),
        "binary conv": measure.Runner(binary_conv, f"course kernel ({kernel_path()})", 1),
    }


def kernel_benchmark(
    channels: tuple[int, ...] = (64, 256, 512),
    size: int = 8,
    rounds: int = 30,
    calls: int = 20,
    warmup: int = 10,
) -> dict[str, dict]:
    """``{str(C): {"latency_ms": ..., "speedup": {"median", "interval"}, "shape": ...}}``:
    binary over float32 conv, one thread, batch 1, measured side by side per ``C``."""
    out = {}
    for c in channels:
        result = measure.compare(conv_runners(c, size), rounds, calls, warmup, threads=1)
        entry = result.as_dict(baseline="float32 conv")
        entry["speedup"] = entry["speedup"]["binary conv"]
        entry["shape"] = f"{c} -> {c} channels, 3x3, {size}x{size}, batch 1"
        out[str(c)] = entry
    return out


def network_benchmark(
    binary: nn.Module, twin: nn.Module, rounds: int = 30, calls: int = 10, warmup: int = 10
) -> dict:
    """The packed binary network vs its float32 twin (PyTorch eager and ONNX Runtime), one
    thread, batch 1; plus the packed network's stem and head alone."""
    engine = PackedResNet.from_model(binary, backend="cpp")
    x = measure.example_input(1)
    features = engine.body(engine.stem(x))
    runners = {
        "float32 twin, PyTorch": measure.torch_runner(twin, 1),
        "float32 twin, ONNX Runtime": measure.onnx_runner(twin, 1),
        "binary, packed": measure.Runner(lambda: engine(x), engine.describe(), 1),
        "binary: stem only": measure.Runner(lambda: engine.stem(x), "torch (stem)", 1),
        "binary: head only": measure.Runner(lambda: engine.head(features), "torch (head)", 1),
    }
    result = measure.compare(runners, rounds, calls, warmup, threads=1)
    binary_ms = result["binary, packed"].median_ms
    full_precision_ms = (
        result["binary: stem only"].median_ms + result["binary: head only"].median_ms
    )
    return {
        **result.as_dict(baseline="float32 twin, PyTorch"),
        "speedup_vs_onnxruntime": result.speedup(
            "binary, packed", "float32 twin, ONNX Runtime"
        ).as_dict(),
        "full_precision_share": full_precision_ms / binary_ms,
    }


def amplitude_benchmark(
    plain: BinaryResNet,
    adaptive: BinaryResNet,
    rounds: int = 30,
    calls: int = 10,
    warmup: int = 10,
) -> dict:
    """The packed DA-BNN network (``adaptive``: the kernel, then the amplitudes, BatchNorm,
    shortcut and activation as PyTorch operations) against the packed ``plain`` network of
    the same shape (everything fused in the kernel), one thread, batch 1. Returns
    :meth:`~course_lib.measure.Comparison.as_dict` with the plain network as the baseline
    (a speed-up below 1: the amplitudes' slowdown), plus ``amplitude_parameters``."""
    x = measure.example_input(1)
    engines = {
        "plain binary, packed": PackedResNet.from_model(plain),
        "DA-BNN, packed": PackedResNet.from_model(adaptive),
    }
    runners = {
        name: measure.Runner(lambda e=engine: e(x), engine.describe(), 1)
        for name, engine in engines.items()
    }
    result = measure.compare(runners, rounds, calls, warmup, threads=1)
    out = result.as_dict(baseline="plain binary, packed")
    out["amplitude_parameters"] = sum(
        p.numel() for name, p in adaptive.named_parameters() if ".amp" in name
    )
    return out

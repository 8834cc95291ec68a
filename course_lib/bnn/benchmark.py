"""How fast the packed kernel and the packed network run, with the course's one latency
protocol (:func:`course_lib.measure.compare`: interleaved rounds, medians, bootstrap
intervals, one thread, batch 1).

- :func:`kernel_benchmark`: one binary conv (sign + pack + XNOR/popcount + scale and bias,
  float NHWC in and out) against the float32 conv of the same shape in PyTorch and in ONNX
  Runtime (k x k, ``size`` x ``size`` map, ``C`` in and out channels), for several ``C``;
  with the conv's XOR + popcount word operations and the fraction of the machine's rate for
  the inner loop alone (:func:`popcount_rate`) that the whole conv reaches;
- :func:`network_benchmark`: the packed binary ResNet-20 against its float32 twin in
  PyTorch and in ONNX Runtime (and, given a file from :func:`course_lib.quantize.quantize_int8`,
  the twin in int8), and how long the packed network's full-precision stem and head take;
- :func:`amplitude_benchmark`: what DA-BNN's data-adaptive amplitudes cost at inference,
  the packed DA-BNN network against a packed plain binary network of the same shape.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .. import measure
from .binarize import sign
from .engine import PackedResNet
from .kernel import PackedConv, kernel_path, load_kernel
from .resnet import BinaryResNet


def conv_word_ops(channels: int, size: int, kernel: int = 3) -> int:
    """64-bit XOR + popcount operations of one ``channels`` -> ``channels`` binary conv
    (stride 1, same padding) on a ``size`` x ``size`` map, as the kernel lays the words
    out: each kernel row padded to whole words, output channels to a multiple of 8."""
    row_words = -(-kernel * -(-channels // 8) // 8)
    return size * size * kernel * row_words * (-(-channels // 8) * 8)


def popcount_rate(
    pixels: int = 64, k_words: int = 36, out_channels: int = 256, repeats: int = 7, reps: int = 200
) -> float:
    """The inner loop alone (the popcount GEMM on words already in cache, no packing,
    gathering or epilogue), in word operations per second: the best of ``repeats`` runs.
    The default shape is the 256-channel 3x3 conv's on an 8x8 map."""
    k = load_kernel()
    seconds = min(k.gemm_seconds(pixels, k_words, out_channels, reps) for _ in range(repeats))
    return pixels * k_words * out_channels * reps / seconds


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
        "float32 conv, ONNX Runtime": measure.onnx_runner(conv, 1, (channels, size, size)),
        "binary conv": measure.Runner(binary_conv, f"course kernel ({kernel_path()})", 1),
    }


def kernel_benchmark(
    channels: tuple[int, ...] = (64, 256, 512),
    size: int = 8,
    rounds: int = 30,
    calls: int = 20,
    warmup: int = 10,
) -> dict[str, dict]:
    """``{str(C): {"latency_ms", "speedup", "speedup_vs_onnxruntime", "word_ops",
    "peak_fraction", "shape"}}``: the binary conv over the float32 conv in PyTorch
    (``speedup``) and in ONNX Runtime, one thread, batch 1, measured side by side per ``C``;
    ``peak_fraction``: the conv's word operations per second over :func:`popcount_rate`
    (``"popcount_rate"`` in every entry, words per second, measured once)."""
    rate = popcount_rate()  # one thread: the GEMM alone runs on the calling thread
    out: dict = {}
    for c in channels:
        result = measure.compare(conv_runners(c, size), rounds, calls, warmup, threads=1)
        entry = result.as_dict(baseline="float32 conv")
        entry["speedup"] = entry["speedup"]["binary conv"]
        entry["speedup_vs_onnxruntime"] = result.speedup(
            "binary conv", "float32 conv, ONNX Runtime"
        ).as_dict()
        entry["word_ops"] = conv_word_ops(c, size)
        binary_s = result["binary conv"].median_ms / 1e3
        entry["popcount_rate"] = rate
        entry["peak_fraction"] = entry["word_ops"] / binary_s / rate
        entry["shape"] = f"{c} -> {c} channels, 3x3, {size}x{size}, batch 1"
        out[str(c)] = entry
    return out


def network_benchmark(
    binary: nn.Module,
    twin: nn.Module,
    rounds: int = 30,
    calls: int = 10,
    warmup: int = 10,
    threads: int = 1,
    int8: str | Path | None = None,
) -> dict:
    """The packed binary network vs its float32 twin (PyTorch eager and ONNX Runtime, and
    the ``int8`` ONNX file of the twin if given), on ``threads`` threads each, batch 1;
    plus the packed network's stem and head alone."""
    engine = PackedResNet.from_model(binary, backend="cpp", threads=threads)
    x = measure.example_input(1)
    features = engine.body(engine.stem(x))
    runners = {
        "float32 twin, PyTorch": measure.torch_runner(twin, 1),
        "float32 twin, ONNX Runtime": measure.onnx_runner(twin, 1, threads=threads),
        "binary, packed": measure.Runner(lambda: engine(x), engine.describe(), 1, threads),
        "binary: stem only": measure.Runner(lambda: engine.stem(x), "torch (stem)", 1),
        "binary: head only": measure.Runner(lambda: engine.head(features), "torch (head)", 1),
    }
    if int8 is not None:
        runners["int8 twin, ONNX Runtime"] = measure.onnx_runner(int8, 1, threads=threads)
    result = measure.compare(runners, rounds, calls, warmup, threads=threads)
    binary_ms = result["binary, packed"].median_ms
    full_precision_ms = (
        result["binary: stem only"].median_ms + result["binary: head only"].median_ms
    )
    out = {
        **result.as_dict(baseline="float32 twin, PyTorch"),
        "threads": threads,
        "speedup_vs_onnxruntime": result.speedup(
            "binary, packed", "float32 twin, ONNX Runtime"
        ).as_dict(),
        "full_precision_share": full_precision_ms / binary_ms,
    }
    if int8 is not None:
        out["speedup_vs_int8"] = result.speedup(
            "binary, packed", "int8 twin, ONNX Runtime"
        ).as_dict()
        out["int8_vs_float32_onnxruntime"] = result.speedup(
            "int8 twin, ONNX Runtime", "float32 twin, ONNX Runtime"
        ).as_dict()
    return out


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

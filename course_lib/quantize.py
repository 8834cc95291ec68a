"""Eight-bit integers, the float network's usual competitor on a CPU: ONNX Runtime's own
post-training static quantization.

A deployer who wants a smaller, faster float network does not write a kernel: they run
ONNX Runtime's quantization tools. :func:`quantize_int8` does what its documentation
recommends for a CNN on x86:

1. export the float32 model to ONNX and pre-process it (shape inference, graph fusions);
2. calibrate: run ``calibration`` images (training images, never test ones) through the
   float graph and record every activation's range (min-max);
3. quantize: weights to signed 8 bits per output channel, activations to unsigned 8 bits
   per tensor, written as QuantizeLinear/DequantizeLinear pairs (QDQ) that ONNX Runtime
   fuses into integer convolutions when it loads the file.

``reduce_range`` stores weights in 7 bits: ONNX Runtime's documentation recommends it on
x86 CPUs without VNNI (AVX2 and plain AVX-512), whose u8 x s8 multiply-add can saturate
its 16-bit intermediate sums with full 8-bit ranges.

Chapter 5 times the result beside the float network and the packed binary one and measures
its accuracy: what one bit buys over eight.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .measure import export_onnx, onnx_session


def _batches(images: torch.Tensor, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    for start in range(0, len(images), batch_size):
        yield {"images": images[start : start + batch_size].float().numpy()}


def quantize_int8(
    model: nn.Module,
    calibration: torch.Tensor,
    path: str | Path,
    reduce_range: bool = True,
    batch_size: int = 32,
) -> Path:
    """Write ``model`` quantized to int8 (QDQ, per-channel weights, min-max calibration on
    the ``calibration`` images, NCHW float32, normalized as the model expects) to ``path``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration) == 0:
        raise ValueError("quantize_int8 needs at least one calibration image")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = _batches(calibration, batch_size)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        float_path = export_onnx(model, Path(folder) / "float.onnx")
        prepared = Path(folder) / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared))
        quantize_static(
            str(prepared),
            str(path),
            Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=reduce_range,
            calibrate_method=CalibrationMethod.MinMax,
        )
    return path


def onnx_predictions(path: str | Path, images: torch.Tensor, batch_size: int = 100) -> torch.Tensor:
    """Class predictions of the ONNX file at ``path`` for ``images`` (one thread)."""
    session = onnx_session(path, threads=1)
    out = [session.run(None, feed)[0].argmax(axis=1) for feed in _batches(images, batch_size)]
    return torch.from_numpy(np.concatenate(out))

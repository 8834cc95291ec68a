"""What pruning buys when the network is deployed: ONNX Runtime latency at batch 1 (the
course's protocol, :func:`course_lib.measure.compare`, with 95 % intervals), bytes on
disk (``torch.save`` and the ONNX file), parameters and MACs."""

from __future__ import annotations

import tempfile
from pathlib import Path

from torch import nn

from .. import measure


def deployment(
    models: dict[str, nn.Module],
    baseline: str,
    rounds: int,
    calls: int,
    warmup: int,
    input_shape: tuple[int, ...] = (3, 32, 32),
    threads: int = 1,
) -> dict:
    """Measure every model of ``models`` side by side (interleaved rounds, ``threads``
    ONNX Runtime threads, batch 1). Returns ``{"latency_ms", "speedup"}`` from
    :meth:`course_lib.measure.Comparison.as_dict` (speed-ups over ``baseline``, with their
    intervals), and per model ``params``, ``macs`` (one image), ``torch_bytes`` and
    ``onnx_bytes``. The models themselves are not changed."""
    if baseline not in models:
        raise ValueError(f"baseline {baseline!r} is not one of {list(models)}")
    sizes = {}
    with tempfile.TemporaryDirectory() as folder:
        runners = {}
        for name, model in models.items():
            path = measure.export_onnx(model, Path(folder) / f"{name}.onnx", (1, *input_shape))
            runners[name] = measure.onnx_runner(path, 1, input_shape, threads)
            sizes[name] = {
                "params": measure.count_params(model),
                "macs": measure.count_macs(model, (1, *input_shape)),
                "torch_bytes": measure.size_on_disk(model),
                "onnx_bytes": path.stat().st_size,
            }
        comparison = measure.compare(runners, rounds, calls, warmup, threads)
    return {**comparison.as_dict(baseline=baseline), "models": sizes, "baseline": baseline}

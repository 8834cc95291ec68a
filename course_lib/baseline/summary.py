"""Chapter 1's tables, drawn from its metrics dict, so that this run and the saved full run
go through the same functions. Accuracies are fractions shown in percent; latencies in ms.
"""

from __future__ import annotations

import torch
from IPython.display import Markdown
from torch import nn

from .. import measure
from ..data import CLASSES
from ..formatting import latency_text, pct, ratio_text
from ..legacy import baseline_onnx_b1
from ..report import markdown_table

TARGETS = {"test_accuracy": 0.88, "train_wall_time_min": 30}
"""What the course asks of the baseline: test accuracy (fraction), training time (min)."""


def layer_table(model: nn.Module) -> Markdown:
    """Output shape, parameters and MACs of every conv and linear layer, and the totals."""
    costs = measure.layer_costs(model)
    rows = [
        (c.name, c.kind, "x".join(map(str, c.output_shape[1:])), c.params, c.macs) for c in costs
    ]
    rows.append(("**total**", "", "", sum(c.params for c in costs), sum(c.macs for c in costs)))
    return markdown_table(rows, ["layer", "type", "output", "params", "MACs"])


def class_table(per_class: torch.Tensor) -> Markdown:
    """Test accuracy of every class (fractions in, percent out)."""
    rows = [(name, pct(acc, 1)) for name, acc in zip(CLASSES, per_class.tolist(), strict=True)]
    return markdown_table(rows, ["class", "accuracy (%)"])


def latency_table(m: dict) -> Markdown:
    """The latency measured in :func:`latency` (or saved before the interleaved protocol,
    then labelled), with throughput and ONNX Runtime's speed-up over PyTorch."""
    rows = []
    for name, saved in m["latency_ms"].items():
        runtime, batch = name.rsplit("_b", 1)
        speedup = m.get("onnx_speedup", {}).get(f"b{batch}") if runtime != "torch" else None
        images_per_s = 1e3 * int(batch) / saved["median_ms"]
        rows.append(
            (
                saved["runtime"],
                batch,
                saved["threads"],
                latency_text(saved),
                f"{images_per_s:,.0f}",
                ratio_text(speedup) if speedup else "",
            )
        )
    headers = ["runtime", "batch", "threads", "median (95 % interval)", "images/s"]
    return markdown_table(rows, [*headers, "speed-up over PyTorch"])


def full_results_table(saved: dict, this_run: dict, profile: str) -> Markdown:
    """The saved full-profile metrics beside this run's, with the chapter's targets."""
    rows = [
        ("test accuracy (%)", pct(saved["test_accuracy"]), f">= {pct(TARGETS['test_accuracy'], 0)}", pct(this_run["test_accuracy"])),
        ("training wall time (min)", f"{saved['train_wall_time_s'] / 60:.1f}", f"<= {TARGETS['train_wall_time_min']}", f"{this_run['train_wall_time_s'] / 60:.1f}"),
        ("parameters", saved["params"], "", this_run["params"]),
        ("MACs", saved["macs"], "", this_run["macs"]),
        ("ONNX Runtime, batch 1", latency_text(baseline_onnx_b1(saved)), "", latency_text(baseline_onnx_b1(this_run))),
    ]  # fmt: skip
    return markdown_table(
        rows, ["metric", "full profile (saved)", "target", f"this run ({profile})"]
    )

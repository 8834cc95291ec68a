"""Reading results saved in older layouts (``results/*.json`` from before the interleaved
latency protocol gave every latency and speed-up a 95 % interval), so that the chapters
draw old and new results with the same functions. What an old result is labelled with
when shown is in :mod:`course_lib.formatting` (``NO_INTERVAL``, ``MEDIANS_ONLY``).

Nothing here imports the rest of the package.
"""

from __future__ import annotations

import copy


def ratio_parts(saved: dict | float) -> tuple[float, float | None, float | None]:
    """``(median, low, high)`` of a saved speed-up: a :meth:`~course_lib.measure.Ratio.as_dict`
    or, saved before the interleaved protocol, a bare float or a dict whose ``interval`` is
    empty (then ``low = high = None``)."""
    if not isinstance(saved, dict):
        return float(saved), None, None
    interval = saved.get("interval")
    if not interval:
        return float(saved["median"]), None, None
    low, high = interval
    return float(saved["median"]), float(low), float(high)


def baseline_onnx_b1(m: dict) -> dict:
    """Chapter 1's ONNX Runtime batch-1 latency (a Latency dict) from its metrics ``m``
    (results saved before the interleaved protocol named it ``onnxruntime_b1``)."""
    saved = m["latency_ms"]
    return saved["onnx_b1"] if "onnx_b1" in saved else saved["onnxruntime_b1"]


# --- chapter 4 (NAS) ---------------------------------------------------------------------------


def nas_is_legacy(m: dict) -> bool:
    """True for chapter 4's metrics saved before the latency protocol (no intervals)."""
    first = next(iter(m.get("sync_configs", {}).values()), None)
    return first is not None and "latency_ms" not in first


def _nas_assessment(a: dict) -> dict:
    a = dict(a)
    a.setdefault("retrain", "from_scratch")
    if "latency_ms" not in a:
        a["latency_ms"] = {
            name: {"median_ms": a.get(key), "low_ms": None, "high_ms": None}
            for name, key in (
                ("onnx", "latency_median_ms"),
                ("parallel", "parallel_latency_median_ms"),
                ("sequential", "sequential_latency_median_ms"),
            )
            if a.get(key) is not None
        }
    if not isinstance(a.get("parallel_speedup"), dict):
        a["parallel_speedup"] = {"median": a.get("parallel_speedup"), "interval": None}
    return a


def nas_metrics(m: dict) -> dict:
    """Chapter 4's metrics ``m`` in the current layout (a copy, ``legacy`` set). Older
    results get the same keys, intervals ``None`` and ``retrain`` ``"from_scratch"``."""
    m = copy.deepcopy(m)
    if not nas_is_legacy(m):
        m.setdefault("legacy", False)
        return m
    m["legacy"] = True
    m.setdefault("profile", "full")
    m["sync_configs"] = {k: _nas_assessment(v) for k, v in m.get("sync_configs", {}).items()}
    sweep = []
    for e in m.get("beta_sweep", []):
        e = _nas_assessment(e)
        e.setdefault(
            "searches",
            [
                {
                    "seed": m.get("protocol", {}).get("seeds", [0])[0],
                    "structure": e["structure"],
                    "architecture": e["architecture"],
                    "op_probs": e.get("op_probs"),
                    "sync_probs": e.get("sync_probs"),
                }
            ],
        )
        sweep.append(e)
    m["beta_sweep"] = sweep
    if "best_network" in m:
        m["best_network"] = _nas_assessment(m["best_network"])
    speedup = m.get("parallel_speedup_b1")
    if speedup is not None and not isinstance(speedup, dict):
        m["parallel_speedup_b1"] = speedup
        m["parallel_speedup_b1_interval"] = None
    m.setdefault("retrain", "from_scratch")
    return m

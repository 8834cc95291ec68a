"""The chapter's closing summary, computed from a metrics dict (any profile's, or the saved
full-profile one): the targets table and a data-driven conclusion."""

from __future__ import annotations

from IPython.display import Markdown

TARGETS = {
    "iterative_80_drop_points": 1.0,
    "structured_50_speedup_b1": 1.8,
    "structured_50_drop_points": 2.0,
}


def conclusion(m: dict) -> Markdown:
    """A data-driven summary of the comparison, for any profile's metrics."""
    base = m["baseline"]
    drop = lambda row: 100 * (base["accuracy"] - row["accuracy"])  # noqa: E731
    kept = lambda row: 100 * row["nonzero_params"] / base["params"]  # noqa: E731
    lines = []
    for tolerance in (1.0, 2.0):
        best_sparse = max(
            (r for r in (*m["oneshot"].values(), *m["iterative"].values()) if drop(r) <= tolerance),
            key=lambda r: r["sparsity"],
            default=None,
        )
        best_channels = max(
            (r for r in m["structured"].values() if drop(r) <= tolerance),
            key=lambda r: r["channels_removed"],
            default=None,
        )
        sparse_text = (
            f"unstructured pruning keeps {kept(best_sparse):.0f} % of the parameters ({100 * best_sparse['sparsity']:.0f} % sparsity)"
            if best_sparse
            else "no unstructured model stays within it"
        )
        channel_text = (
            (
                f"structured pruning keeps {kept(best_channels):.0f} % ({100 * best_channels['channels_removed']:.0f} % of channels removed, "
                f"{best_channels['speedup']['onnx_b1']:.2f}x faster in ONNX Runtime at batch 1)"
            )
            if best_channels
            else "no structured model stays within it"
        )
        lines.append(
            f"- Within **{tolerance:.0f} point{'s' if tolerance > 1 else ''}** of the dense accuracy, {sparse_text}; {channel_text}."
        )
    s80, c50 = m["iterative"]["0.8"], m["structured"]["0.5"]
    verdict = (
        "unstructured pruning kept more accuracy at stronger compression"
        if drop(s80) <= drop(c50) and kept(s80) <= kept(c50)
        else "structured pruning kept more accuracy at stronger compression"
        if drop(c50) <= drop(s80) and kept(c50) <= kept(s80)
        else "neither family dominates: one compresses more, the other keeps more accuracy"
    )
    lines.append(
        f"- Head to head: iterative 80 % keeps {kept(s80):.0f} % of the parameters at {drop(s80):+.2f} points of accuracy loss; "
        f"structured 50 % keeps {kept(c50):.0f} % at {drop(c50):+.2f} points. On parameters kept, {verdict}."
    )
    lines.append(
        f"- Only structured pruning changes latency: {c50['speedup']['onnx_b1']:.2f}x (batch 1) and {c50['speedup']['onnx_b64']:.2f}x (batch 64) "
        f"in ONNX Runtime at 50 % of channels, against {m['iterative']['0.8']['latency_ms']['onnx_b1']['median_ms'] / base['latency_ms']['onnx_b1']['median_ms']:.2f}x the dense latency for the 80 %-sparse model."
    )
    lines.append(
        "- **What to deploy:** if the constraint is *storage* (flash), unstructured pruning with a sparse file format gives the smallest file at almost no accuracy cost, "
        "but decompresses to a dense model of the same speed; if the constraint is *latency or energy* on a CPU without sparse kernels, prune channels, "
        "and accept the larger accuracy cost per parameter removed. The two combine: prune channels for speed, then weights for storage."
    )
    return Markdown("\n".join(lines))


def target_rows(m: dict) -> list[tuple]:
    """(target, measured, required, met/missed) rows of the chapter's three targets."""
    return [
        (
            "iterative 80 %: accuracy drop (points)",
            f"{m['iterative_80_accuracy_drop_points']:.2f}",
            "<= 1",
            "met"
            if m["iterative_80_accuracy_drop_points"] <= TARGETS["iterative_80_drop_points"]
            else "missed",
        ),
        (
            "structured 50 %: ONNX b1 speed-up",
            f"{m['structured_50_onnx_speedup_b1']:.2f}x",
            ">= 1.8x",
            "met"
            if m["structured_50_onnx_speedup_b1"] >= TARGETS["structured_50_speedup_b1"]
            else "missed",
        ),
        (
            "structured 50 %: accuracy drop (points)",
            f"{m['structured_50_accuracy_drop_points']:.2f}",
            "<= 2",
            "met"
            if m["structured_50_accuracy_drop_points"] <= TARGETS["structured_50_drop_points"]
            else "missed",
        ),
        (
            "best importance / pruner (validation)",
            f"{m['best_importance']} / {m['best_pruner']}",
            "",
            "",
        ),
    ]

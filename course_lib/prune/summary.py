"""The chapter's tables and sentences, computed from a metrics dict (any profile's, or the
saved full-profile one), so that no measured number is ever typed into the page.

Results saved before the interleaved latency protocol (speed-ups as bare floats, latencies
without an interval, one seed per selection candidate) are read too, and labelled.
"""

from __future__ import annotations

import statistics

from IPython.display import Markdown

from ..chapter import time_table as time_table  # the chapter shows its run's times
from ..formatting import NO_INTERVAL, latency_text, pct, ratio_text
from ..legacy import ratio_parts
from ..report import markdown_table
from ..uncertainty import TIE_STANDARD_ERRORS, binomial_se, difference_se
from . import ranking

TARGETS = {
    "iterative_80_drop_points": 1.0,
    "structured_50_speedup_b1": 1.8,
    "structured_50_drop_points": 2.0,
    "aligned_min_speedup_b1": 1.0,
}


def headline(m: dict) -> dict:
    """The headline numbers the chapter's :data:`TARGETS` are checked on, read off the
    sections' metrics (accuracy drops in points, speed-ups as ratios of medians)."""
    dense = m["baseline"]["accuracy"]
    half = m["structured"]["0.5"]
    speedup = half["speedup"]["onnx_b1"]
    aligned = m["alignment"]["aligned"]
    return {
        "iterative_80_accuracy_drop_points": 100 * (dense - m["iterative"]["0.8"]["accuracy"]),
        "structured_50_onnx_speedup_b1": speedup["median"],
        "structured_50_onnx_speedup_b1_interval": speedup["interval"],
        "structured_50_accuracy_drop_points": 100 * (dense - half["accuracy"]),
        "aligned_min_onnx_speedup_b1": min(
            r["speedup"]["onnx_b1"]["median"] for r in aligned.values()
        ),
    }


def points(fraction: float) -> str:
    """A difference of two accuracies (fractions), in signed percentage points."""
    return f"{100 * fraction:+.2f}"


def keys(table: dict) -> list[str]:
    return sorted(table, key=float)


def test_images(m: dict) -> int:
    """Test images of the run (results saved before this count was recorded used all 10,000)."""
    return m["baseline"].get("test_images", 10_000)


def tie_points(m: dict) -> float:
    """Two standard errors of a difference of two accuracies near the dense one, on the run's
    test images, in points: differences below it are ties (test-sampling noise alone)."""
    p, n = m["baseline"]["accuracy"], test_images(m)
    se = binomial_se(p, n)
    return 100 * TIE_STANDARD_ERRORS * difference_se(se, se)


# --- part 1: unstructured ----------------------------------------------------------------


def baseline_table(m: dict) -> Markdown:
    base = m["baseline"]
    rows = [
        ("test accuracy (%)", pct(base["accuracy"])),
        ("validation accuracy (%)", pct(base["val_accuracy"])),
        ("parameters", base["params"]),
        ("MACs per image", base["macs"]),
        ("torch.save size (bytes)", base["size_bytes"]),
    ]
    rows += [(f"latency {k}", latency_text(v)) for k, v in base["latency_ms"].items()]
    return markdown_table(rows, ["dense baseline", "value (latency: median, 95 % interval)"])


def scope_text(m: dict) -> Markdown:
    """Which scope won on validation, and how unevenly global pruning spreads its zeros."""
    table, chosen = m["scope_comparison"], m["unstructured_scope"]
    worst = max(keys(table), key=lambda k: table[k]["global"] - table[k]["layer"])
    per_layer = m["global_layer_sparsity"][worst]
    lo, hi = min(per_layer, key=per_layer.get), max(per_layer, key=per_layer.get)
    return Markdown(
        f"Chosen on validation (mean accuracy over the homework's sweep): **{chosen}** "
        f"pruning. The gap is largest at {pct(float(worst), 0)} % sparsity: global "
        f"{pct(table[worst]['global'])} % against layer-wise {pct(table[worst]['layer'])} %. "
        f"There, global pruning takes {pct(per_layer[hi], 0)} % of `{hi}` and only "
        f"{pct(per_layer[lo], 0)} % of `{lo}`."
    )


def sweep_table(m: dict) -> Markdown:
    oneshot, iterative, dense = m["oneshot"], m["iterative"], m["baseline"]["accuracy"]
    rows = [
        (
            pct(float(k), 0),
            pct(oneshot[k]["sparsity"]),
            oneshot[k]["nonzero_params"],
            pct(oneshot[k]["accuracy_pruned"]),
            pct(oneshot[k]["accuracy"]),
            pct(iterative[k]["accuracy"]),
            points(iterative[k]["accuracy"] - oneshot[k]["accuracy"]),
            points(iterative[k]["accuracy"] - dense),
            f"{oneshot[k]['finetune_epochs']} / {iterative[k]['finetune_epochs']}",
        )
        for k in keys(oneshot)
    ]
    headers = ["target (%)", "measured (%)", "non-zero params", "one-shot, no FT (%)"]
    headers += ["one-shot + FT (%)", "iterative (%)", "iterative - one-shot (points)"]
    headers += ["iterative - dense (points)", "FT epochs (one-shot / iterative)"]
    return markdown_table(rows, headers)


def iterative_vs_oneshot(m: dict) -> dict:
    """Per sparsity, iterative minus one-shot accuracy (points), and which sparsities are
    wins, ties (within :func:`tie_points`) and losses for iterative pruning."""
    tie = tie_points(m)
    diff = {
        k: 100 * (m["iterative"][k]["accuracy"] - m["oneshot"][k]["accuracy"])
        for k in keys(m["oneshot"])
    }
    return {
        "difference_points": diff,
        "tie_points": tie,
        "iterative_better": [k for k, d in diff.items() if d > tie],
        "tie": [k for k, d in diff.items() if abs(d) <= tie],
        "oneshot_better": [k for k, d in diff.items() if d < -tie],
    }


def _listing(sparsity_keys: list[str]) -> str:
    return ", ".join(f"{pct(float(k), 0)} %" for k in sparsity_keys)


def iterative_text(m: dict) -> Markdown:
    """The answer to "is iterative better than one-shot at equal budget?", from the data."""
    v = iterative_vs_oneshot(m)
    lines = [
        f"Differences below {v['tie_points']:.2f} points (two standard errors of a difference "
        f"on {test_images(m):,} test images, one training seed) are ties."
    ]
    if v["tie"]:
        lines.append(f"- Ties at {_listing(v['tie'])}.")
    for name, group in (("iterative", "iterative_better"), ("one-shot", "oneshot_better")):
        if v[group]:
            gains = ", ".join(f"{v['difference_points'][k]:+.2f}" for k in v[group])
            lines.append(f"- **{name} is better** at {_listing(v[group])} ({gains} points).")
    high = keys(m["oneshot"])[-1]
    verdict = (
        "iterating pays"
        if high in v["iterative_better"]
        else "iterating does not pay"
        if high in v["tie"]
        else "one-shot's single long fine-tune wins"
    )
    lines.append(
        f"- At the highest sparsity, {pct(float(high), 0)} %, {verdict}: one-shot falls to "
        f"{pct(m['oneshot'][high]['accuracy_pruned'])} % before fine-tuning and recovers to "
        f"{pct(m['oneshot'][high]['accuracy'])} %; iterative reaches "
        f"{pct(m['iterative'][high]['accuracy'])} %."
    )
    return Markdown("\n".join(lines))


def storage_table(m: dict) -> Markdown:
    base, iterative = m["baseline"]["storage_bytes"], m["iterative"]
    encodings = list(base)
    rows = [("dense", "0", *[base[e] for e in encodings], "100")]
    for k in keys(iterative):
        sizes = iterative[k]["storage_bytes"]
        smallest = 100 * min(sizes.values()) / base["dense_raw"]
        rows.append(
            ("iterative", pct(float(k), 0), *[sizes[e] for e in encodings], f"{smallest:.1f}")
        )
    names = ["dense float32" if e == "dense_raw" else e.replace("_", " + ") for e in encodings]
    headers = ["model", "sparsity (%)", *[f"{n} (bytes)" for n in names], "smallest / dense (%)"]
    return markdown_table(rows, headers)


def comparison_latency_table(table: dict) -> Markdown:
    """Latency of side-by-side models (``benchmark.compare`` layout) with speed-ups."""
    settings = list(table["latency_ms"])
    names = list(table["latency_ms"][settings[0]])
    rows = []
    for name in names:
        cells = [latency_text(table["latency_ms"][s][name]) for s in settings]
        speedups = [
            ratio_text(table["speedup"][s][name]) if name in table["speedup"][s] else "1 (baseline)"
            for s in settings
        ]
        rows.append((name, *cells, *speedups))
    headers = [name for name in (f"{s} (ms)" for s in settings)]
    headers += [f"{s} speed-up" for s in settings]
    return markdown_table(rows, ["model", *headers])


def unstructured_latency_text(m: dict) -> Markdown:
    table = m["unstructured_latency"]["speedup"]
    lines = []
    for name, ratio in table["onnx_b1"].items():
        median, low, high = ratio_parts(ratio)
        verdict = "no faster" if low <= 1 <= high else "faster" if low > 1 else "slower"
        lines.append(f"- {name}: {ratio_text(ratio)} in ONNX Runtime at batch 1: {verdict}.")
    return Markdown("\n".join(lines))


# --- part 2: structured ------------------------------------------------------------------


def alignment_table(m: dict) -> Markdown:
    a = m["alignment"]
    setting = next(iter(a["aligned"][keys(a["aligned"])[0]]["speedup"]))
    rows = []
    for k in keys(a["aligned"]):
        un, al = a["unaligned"][k], a["aligned"][k]
        rows.append(
            (
                pct(float(k), 0),
                "/".join(map(str, un["widths"][::2][:3])),
                ratio_text(un["speedup"][setting]),
                "/".join(map(str, al["widths"][::2][:3])),
                pct(al["channels_removed"], 1),
                ratio_text(al["speedup"][setting]),
            )
        )
    headers = ["target (%)", "widths", f"speed-up {setting}", f"widths (round_to={a['round_to']})"]
    headers += ["channels removed (%)", f"speed-up {setting}, aligned"]
    return markdown_table(rows, headers)


def alignment_text(m: dict) -> Markdown:
    a = m["alignment"]
    gains = {
        k: ratio_parts(a["aligned"][k]["speedup"]["onnx_b1"])[0]
        / ratio_parts(a["unaligned"][k]["speedup"]["onnx_b1"])[0]
        for k in keys(a["aligned"])
        if a["aligned"][k]["widths"] != a["unaligned"][k]["widths"]
    }
    slowest = min(keys(a["aligned"]), key=lambda k: a["aligned"][k]["speedup"]["onnx_b1"]["median"])
    text = (
        f"Slowest aligned model: {pct(float(slowest), 0)} % "
        f"({ratio_text(a['aligned'][slowest]['speedup']['onnx_b1'])} at batch 1). "
    )
    if gains:
        best = max(gains, key=gains.get)
        text += (
            f"Where rounding changed the widths, aligned models ran {min(gains.values()):.2f}x to "
            f"{max(gains.values()):.2f}x as fast as unaligned ones at the same target (most at "
            f"{pct(float(best), 0)} %), partly because rounding down removes a few more channels."
        )
    return Markdown(text)


def screening_table(m: dict) -> Markdown:
    table = m["importance_screening"]
    rows = [
        (name, *_accuracy_cells(row), row["params"], row.get("same_as") or "")
        for name, row in sorted(table.items(), key=lambda kv: -ranking.mean(kv[1]))
    ]
    headers = ["importance", "val. acc., mean (%)", "spread (points)", "per seed (%)"]
    return markdown_table(rows, [*headers, "params", "identical to"])


def _accuracy_cells(row: dict, metric: str = "val_accuracy") -> tuple[str, str, str]:
    """Mean over seeds, standard deviation (points; "-" for one seed) and every seed's value."""
    values = ranking.values(row, metric)
    spread = pct(statistics.stdev(values)) if len(values) > 1 else "-"
    return pct(statistics.fmean(values)), spread, ", ".join(pct(v, 1) for v in values)


def selection_table(table: dict) -> Markdown:
    smallest = min(row["params"] for row in table.values())
    rows = []
    for name, row in sorted(table.items(), key=lambda kv: -ranking.mean(kv[1])):
        right_after = pct(ranking.mean(row, "val_accuracy_pruned"))
        equal = "yes" if row["params"] <= ranking.EQUAL_COST * smallest else "no (more params)"
        rows.append((name, right_after, *_accuracy_cells(row), row["params"], equal))
    headers = ["candidate", "right after the last step (%)", "after fine-tuning, mean (%)"]
    return markdown_table(
        rows, [*headers, "spread (points)", "per seed (%)", "params", "equal cost"]
    )


def selection_text(table: dict, what: str) -> Markdown:
    v = ranking.verdict(table)
    if v["runner_up"] is None:
        return Markdown(f"Only one eligible {what}: **{v['best']}**.")
    seeds, spread = v["seeds"], v["spread_points"]
    solid = seeds > 1 and v["wins"] == seeds and v["difference_points"] > (spread or 0)
    conclusion = (
        "a ranking that holds on every seed and exceeds the spread"
        if solid
        else "within the seed-to-seed noise: the two are tied, and either is a sound choice"
    )
    return Markdown(
        f"Best {what} on validation: **{v['best']}**, {v['difference_points']:.2f} points ahead "
        f"of {v['runner_up']} on average, ahead on {v['wins']} of {seeds} seed(s); "
        f"candidates vary by up to {spread or 0:.2f} points (standard deviation) from seed "
        f"to seed: {conclusion}."
    )


def schedule_text(m: dict) -> Markdown:
    """The final channel-pruning schedule, stated from the settings and the run."""
    run = m["structured_schedule"]
    s = run["schedule"]
    epochs = run["epochs"]
    reg = run["reg"]
    text = (
        f"Importance **{run['importance']}**, pruner **{run['pruner']}**, widths rounded down "
        f"to multiples of {run['round_to']}. Sparsity training: {epochs['sparse_train']} "
        f"epoch(s) at learning rate {s['sparse_train']['lr']:g}; then {s['steps']} steps, each "
        f"followed by {s['step_finetune']['epochs']} epoch(s) of fine-tuning (cosine from "
        f"{s['step_finetune']['lr']:g}); then a final fine-tune of {s['final_finetune']['epochs']} "
        f"epochs (cosine from {s['final_finetune']['lr']:g}): {sum(epochs.values())} epochs, "
        f"{run['wall_time_s'] / 60:.1f} min of training in all."
    )
    if reg is not None:
        text += (
            f" Regularization strength {reg['final']:.3g} (selection: {reg['selection']:g}), "
            f"so that strength x sum of the learning rate over the sparsity-training steps is "
            f"{reg['final_dose']:.3g} here and {reg['selection_dose']:.3g} in the selection "
            f"({reg['final_steps']} vs {reg['selection_steps']} steps)."
        )
    return Markdown(text)


def structured_table(m: dict) -> Markdown:
    base, table = m["baseline"], m["structured"]
    settings = list(base["latency_ms"])
    rows = [("dense", "0", base["params"], base["macs"], "1.00x", pct(base["accuracy"]), "", "")]
    rows[0] += tuple(latency_text(base["latency_ms"][s]) for s in settings)
    rows[0] += ("1",) * len(settings)
    for k in keys(table):
        row = table[k]
        cells = (pct(float(k), 0), pct(row["channels_removed"], 1), row["params"], row["macs"])
        cells += (f"{base['macs'] / row['macs']:.2f}x", pct(row["accuracy_pruned"]))
        cells += (pct(row.get("accuracy_step", row["accuracy"])), pct(row["accuracy"]))
        cells += tuple(latency_text(row["latency_ms"][s]) for s in settings)
        rows.append(cells + tuple(ratio_text(row["speedup"][s]) for s in settings))
    headers = ["target (%)", "channels removed (%)", "params", "MACs", "MAC reduction"]
    headers += ["right after the step (%)", "after the step's FT (%)", "final test acc. (%)"]
    headers += [f"{s} (ms)" for s in settings] + [f"{s} speed-up" for s in settings]
    return markdown_table(rows, headers)


# --- part 3: both families ---------------------------------------------------------------


def speedup_over_dense(m: dict, family: str, k: str) -> dict | float | None:
    """The measured ONNX batch-1 speed-up of one model over dense (a ratio with interval),
    or ``None`` if it was not timed. Results saved before the interleaved protocol timed
    every model alone: their ratio of medians is returned as a bare float (no interval)."""
    name = {"one-shot": "oneshot"}.get(family, family)
    row = m[name][k]
    if "speedup" in row:
        return row["speedup"]["onnx_b1"]
    if "latency_ms" in row:
        dense = m["baseline"]["latency_ms"]["onnx_b1"]["median_ms"]
        return dense / row["latency_ms"]["onnx_b1"]["median_ms"]
    timed = m.get("unstructured_latency", {}).get("speedup", {}).get("onnx_b1", {})
    return timed.get(f"{k} sparse, prune.remove") if family == "iterative" else None


def onnx_b1_speedup(m: dict, family: str, k: str) -> str:
    """:func:`speedup_over_dense` as text, "-" where the model was not timed."""
    return ratio_text(speedup_over_dense(m, family, k))


def comparison_table(m: dict) -> Markdown:
    base = m["baseline"]
    rows = [("dense", "-", "100.0", base["macs"], min(base["storage_bytes"].values()), "1")]
    rows[0] += (pct(base["accuracy"]), "0.00")
    for family, name, unit in (
        ("one-shot", "oneshot", "sparsity"),
        ("iterative", "iterative", "sparsity"),
        ("structured", "structured", "channels"),
    ):
        for k in keys(m[name]):
            row = m[name][k]
            cells = (
                family,
                f"{pct(float(k), 0)} % {unit}",
                pct(row["nonzero_params"] / base["params"], 1),
            )
            cells += (
                row["macs"],
                min(row["storage_bytes"].values()),
                onnx_b1_speedup(m, family, k),
            )
            rows.append(cells + (pct(row["accuracy"]), points(row["accuracy"] - base["accuracy"])))
    headers = ["family", "setting", "non-zero params kept (%)", "MACs computed"]
    headers += ["smallest file (bytes)", "ONNX b1 speed-up", "test acc. (%)", "vs dense (points)"]
    return markdown_table(rows, headers)


def conclusion(m: dict) -> Markdown:
    """A data-driven summary of the comparison, for any profile's metrics."""
    base = m["baseline"]

    def drop(row: dict) -> float:
        return 100 * (base["accuracy"] - row["accuracy"])

    def kept(row: dict) -> float:
        return 100 * row["nonzero_params"] / base["params"]

    lines = []
    for tolerance in (1.0, 2.0):
        unstructured = [*m["oneshot"].values(), *m["iterative"].values()]
        best_sparse = max(
            (r for r in unstructured if drop(r) <= tolerance),
            key=lambda r: r["sparsity"],
            default=None,
        )
        best_channels = max(
            (r for r in m["structured"].values() if drop(r) <= tolerance),
            key=lambda r: r["channels_removed"],
            default=None,
        )
        sparse_text = (
            f"unstructured pruning keeps {kept(best_sparse):.0f} % of the parameters "
            f"({pct(best_sparse['sparsity'], 0)} % sparsity)"
            if best_sparse
            else "no unstructured model stays within it"
        )
        channel_text = (
            f"structured pruning keeps {kept(best_channels):.0f} % "
            f"({pct(best_channels['channels_removed'], 0)} % of the channels removed, "
            f"{ratio_text(best_channels['speedup']['onnx_b1'])} in ONNX Runtime at batch 1)"
            if best_channels
            else "no structured model stays within it"
        )
        plural = "s" if tolerance > 1 else ""
        lines.append(
            f"- Within **{tolerance:.0f} point{plural}** of the dense accuracy, {sparse_text}; {channel_text}."
        )
    s80, c50 = m["iterative"]["0.8"], m["structured"]["0.5"]
    if drop(s80) <= drop(c50) and kept(s80) <= kept(c50):
        verdict = "unstructured pruning kept more accuracy at stronger compression"
    elif drop(c50) <= drop(s80) and kept(c50) <= kept(s80):
        verdict = "structured pruning kept more accuracy at stronger compression"
    else:
        verdict = "neither family dominates: one compresses more, the other keeps more accuracy"
    lines.append(
        f"- Head to head: iterative 80 % keeps {kept(s80):.0f} % of the parameters at "
        f"{drop(s80):+.2f} points of accuracy loss; structured 50 % keeps {kept(c50):.0f} % "
        f"at {drop(c50):+.2f} points. On parameters kept, {verdict}."
    )
    lines.append(
        f"- Only structured pruning changes latency: {ratio_text(c50['speedup']['onnx_b1'])} "
        f"(batch 1) and {ratio_text(c50['speedup']['onnx_b64'])} (batch 64) in ONNX Runtime "
        f"at 50 % of the channels, against {onnx_b1_speedup(m, 'iterative', '0.8')} for the "
        f"80 %-sparse model."
    )
    lines.append(
        "- **What to deploy:** if the constraint is *storage* (flash), unstructured pruning "
        "with a sparse file format gives the smallest file, but decompresses to a dense model "
        "of the same speed; if the constraint is *latency or energy* on a CPU without sparse "
        "kernels, prune channels, with widths the CPU likes. The two combine: prune channels "
        "for speed, then weights for storage."
    )
    return Markdown("\n".join(lines))


# --- targets and the saved run -----------------------------------------------------------


def _status(met: bool) -> str:
    return "met" if met else "**missed**"


def target_rows(m: dict) -> list[tuple]:
    """(target, measured, required, met/missed) rows of the chapter's targets. The
    speed-up target is met when the *lower* end of its interval reaches 1.8x."""
    median = m["structured_50_onnx_speedup_b1"]
    interval = m.get("structured_50_onnx_speedup_b1_interval")
    low = interval[0] if interval else median
    rows = [
        (
            "iterative 80 %: accuracy drop (points)",
            f"{m['iterative_80_accuracy_drop_points']:.2f}",
            "<= 1",
            _status(m["iterative_80_accuracy_drop_points"] <= TARGETS["iterative_80_drop_points"]),
        ),
        (
            "structured 50 %: ONNX b1 speed-up (interval)",
            ratio_text({"median": median, "interval": interval}),
            ">= 1.8x (lower end)",
            _status(low >= TARGETS["structured_50_speedup_b1"]),
        ),
        (
            "structured 50 %: accuracy drop (points)",
            f"{m['structured_50_accuracy_drop_points']:.2f}",
            "<= 2",
            _status(
                m["structured_50_accuracy_drop_points"] <= TARGETS["structured_50_drop_points"]
            ),
        ),
    ]
    if "aligned_min_onnx_speedup_b1" in m:
        slowest = m["aligned_min_onnx_speedup_b1"]
        rows.append(
            (
                "aligned widths: slowest ONNX b1 speed-up (median)",
                f"{slowest:.2f}x",
                ">= 1.0x",
                _status(slowest >= TARGETS["aligned_min_speedup_b1"]),
            )
        )
    rows.append(
        (
            "best importance / pruner (validation)",
            f"{m['best_importance']} / {m['best_pruner']}",
            "",
            "",
        )
    )
    return rows


def targets_table(m: dict, label: str) -> Markdown:
    return markdown_table(target_rows(m), ["target", label, "required", "status"])


def budget_text(m: dict) -> Markdown:
    """What the budget allowed, from the run's own settings."""
    s = m["settings"]
    un, sel = s["unstructured"], s["selection"]
    sel_data = sel["data"]["train_per_class"]
    subset = "all" if sel_data is None else f"{10 * sel_data:,}"
    protocol = (
        ", ".join(
            f"batch {b}: {r} rounds of {c} calls" for b, (r, c) in s["latency"]["protocol"].items()
        )
        if "latency" in s
        else f"median of {s.get('latency_repeats')} runs ({NO_INTERVAL})"
    )
    return Markdown(
        f"Budget of this run: unstructured models fine-tune {un['finetune']['epochs']} epochs "
        f"(iterative: {un['rounds']} rounds of {un['finetune']['epochs'] // un['rounds']}); the "
        f"selection runs on {subset} training images; latency: {protocol}."
    )


def missed_targets(m: dict) -> list[str]:
    return [row[0] for row in target_rows(m) if row[3] == _status(False)]


def saved_run_note(record: dict | None) -> Markdown:
    """What a reader must know about the saved run before reading its numbers."""
    if record is None:
        return Markdown("*No full-profile result has been saved yet.*")
    m = record["metrics"]
    notes = []
    missed = missed_targets(m)
    if missed:
        notes.append(f"**The saved run misses:** {'; '.join(missed)}.")
    if "structured_50_onnx_speedup_b1_interval" not in m:
        notes.append(
            f"Its latencies and speed-ups were measured before the interleaved protocol "
            f"({NO_INTERVAL}): each is one measurement taken minutes apart from its baseline."
        )
    if not isinstance(next(iter(m["importance_comparison"].values()))["val_accuracy"], list):
        notes.append("Its selection ran one seed per candidate: no spread is known.")
    return Markdown(" ".join(notes) if notes else "The saved run meets every target.")

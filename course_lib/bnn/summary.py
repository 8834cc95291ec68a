"""The chapter's tables and closing summary, computed from a metrics dict (any profile's,
or the saved full-profile one)."""

from __future__ import annotations

from IPython.display import Markdown

from .. import measure
from ..formatting import latency_text, pct, ratio_text
from ..report import markdown_table
from ..uncertainty import (
    PAIRED_ALPHA,
    TIE_STANDARD_ERRORS,
    accuracy_sign,
    binomial_se,
    difference_se,
    holm_separated,
)
from .layers import binary_layers
from .settings import METHOD_LABELS, REPORT_EPOCHS, REPORT_ROWS, REPORT_TABLE1_RESNET20

TARGETS = {
    "binary_accuracy": 0.82,
    "kernel_speedup_256": 15.0,
    "network_speedup_vs_ort": 3.0,
    "packed_size_ratio": 20.0,
}
"""The issues' targets: binary ResNet-20 test accuracy (fraction); the packed binary conv's
speed-up over PyTorch float32 at 256 channels and the packed network's over the float32 twin
in ONNX Runtime (batch 1, one thread), both at the lower end of their 95 % intervals; the
packed network's size ratio to float32."""


def table1(m: dict) -> Markdown:
    """The report's Table 1 (ResNet-20 on CIFAR-10) beside this run."""
    p = m["protocol"]
    rows = [
        (
            name,
            "1/1" if name != "full precision" else "32/32",
            f"{acc:.1f}",
            "not stated",
        )
        for name, acc in REPORT_TABLE1_RESNET20.items()
    ]
    rows += [
        (
            "ours: binary (ReCU + Bi-Real + KD)",
            "1/1",
            pct(m["binary_resnet20_test_accuracy"]),
            f"{p['binary_epochs']} (2-core CPU)",
        ),
        (
            "ours: full precision",
            "32/32",
            pct(m["fp_resnet20_test_accuracy"]),
            f"{p['twin_epochs']} (2-core CPU)",
        ),
    ]
    table = markdown_table(rows, ["ResNet-20, CIFAR-10", "W/A", "test accuracy (%)", "epochs"])
    note = (
        f"\n\nThe report gives neither the epochs nor the hardware of its rows; ReCU's own paper "
        f"trains for {REPORT_EPOCHS} epochs."
    )
    return Markdown(table.data + note)


def kernel_table(m: dict) -> Markdown:
    rows = []
    for e in m["kernel"].values():
        lat = e["latency_ms"]
        rows.append(
            (
                e["shape"],
                f"{lat['float32 conv']['median_ms']:.4f}",
                f"{lat['binary conv']['median_ms']:.4f}",
                ratio_text(e["speedup"], 1),
            )
        )
    return markdown_table(
        rows, ["layer", "float32 conv (ms)", "binary conv (ms)", "speed-up (95 % interval)"]
    )


def network_table(m: dict) -> Markdown:
    n = m["network"]
    rows = [
        (
            name,
            f"{lat['median_ms']:.3f}",
            f"{lat['low_ms']:.3f}-{lat['high_ms']:.3f}",
            lat["runtime"],
        )
        for name, lat in n["latency_ms"].items()
    ]
    return markdown_table(
        rows, ["ResNet-20, batch 1, 1 thread", "median (ms)", "95 % interval", "runtime"]
    )


def size_table(m: dict) -> Markdown:
    s = m["sizes"]
    rows = [
        ("float32 twin (torch.save)", s["fp32_twin_bytes"], 1.0),
        (
            "binary model, float32 latent weights (torch.save)",
            s["fp32_latent_bytes"],
            s["fp32_twin_bytes"] / s["fp32_latent_bytes"],
        ),
        (
            "binary model, packed (1 bit per binary weight)",
            s["packed_bytes"],
            s["packed_size_ratio"],
        ),
    ]
    return markdown_table(
        [(a, f"{b:,}", f"{c:.1f}x") for a, b, c in rows],
        ["file", "bytes", "smaller than float32 by"],
    )


def target_rows(m: dict) -> list[tuple]:
    verdict = lambda ok: "met" if ok else "missed"  # noqa: E731
    acc, k, r = m["binary_resnet20_test_accuracy"], m["kernel_speedup_256"], m["packed_size_ratio"]
    rows = [
        (
            "binary ResNet-20 test accuracy",
            f"{pct(acc)} %",
            f">= {pct(TARGETS['binary_accuracy'], 0)} %",
            verdict(acc >= TARGETS["binary_accuracy"]),
        ),
        (
            "binary conv speed-up over PyTorch float32, 256 channels",
            ratio_text({"median": k, "interval": m["kernel_speedup_256_interval"]}, 1),
            f">= {TARGETS['kernel_speedup_256']:.0f}x (interval's lower end)",
            verdict(m["kernel_speedup_256_interval"][0] >= TARGETS["kernel_speedup_256"]),
        ),
        (
            "packed size vs float32",
            f"{r:.1f}x",
            f">= {TARGETS['packed_size_ratio']:.0f}x",
            verdict(r >= TARGETS["packed_size_ratio"]),
        ),
    ]
    if "network_speedup_vs_ort_b1" in m:  # results saved before 2026-12-07 lack it
        interval = m["network_speedup_vs_ort_b1_interval"]
        rows.append(
            (
                "whole network over the float32 twin in ONNX Runtime, batch 1",
                ratio_text({"median": m["network_speedup_vs_ort_b1"], "interval": interval}, 2),
                f">= {TARGETS['network_speedup_vs_ort']:.0f}x (interval's lower end)",
                verdict(interval[0] >= TARGETS["network_speedup_vs_ort"]),
            )
        )
    rows.append(
        (
            "whole network over the twin in PyTorch, batch 1",
            f"{m['network_speedup_b1']:.1f}x",
            "reported",
            "",
        )
    )
    return rows


def targets(m: dict) -> Markdown:
    return markdown_table(target_rows(m), ["target", "measured", "required", ""])


def conclusion(m: dict) -> Markdown:
    """What the numbers say, in sentences formatted from them."""
    n, p = m["network"], m["protocol"]
    gap = 100 * (m["fp_resnet20_test_accuracy"] - m["binary_resnet20_test_accuracy"])
    lines = [
        f"- **Accuracy.** After {p['binary_epochs']} epochs the binary ResNet-20 reaches "
        f"{pct(m['binary_resnet20_test_accuracy'])} %; its full-precision twin "
        f"{pct(m['fp_resnet20_test_accuracy'])} % after {p['twin_epochs']} epochs, a gap of {gap:.1f} points "
        f"(the report's: {REPORT_TABLE1_RESNET20['full precision'] - REPORT_TABLE1_RESNET20['ReCU']:.1f} points, "
        f"epochs not stated; ReCU's paper trains for {REPORT_EPOCHS}).",
        f"- **One layer.** At 256 channels the packed binary conv runs {ratio_text({'median': m['kernel_speedup_256'], 'interval': m['kernel_speedup_256_interval']}, 1)} "
        f"faster than PyTorch's float32 conv of the same shape.",
        f"- **The whole network.** At batch 1 the packed network runs at {ratio_text(n['speedup']['binary, packed'], 1)} the speed "
        f"of the float32 twin in PyTorch and {ratio_text(n['speedup_vs_onnxruntime'], 2)} its speed in ONNX Runtime; the full-precision "
        f"stem and head take {pct(n['full_precision_share'], 0)} % of the packed network's time.",
        f"- **Storage.** The packed file is {m['sizes']['packed_bytes']:,} bytes, "
        f"{m['packed_size_ratio']:.1f}x smaller than the float32 twin.",
    ]
    return Markdown("\n".join(lines))


def architecture(binary, twin) -> Markdown:
    """Parameters and MACs of the binary ResNet-20 and its twin, split into the binary
    layers (1 bit per weight, XNOR/popcount) and the full-precision rest."""
    binary_names = {id(m) for m in binary_layers(binary)}
    costs = {c.name: c for c in measure.layer_costs(binary)}
    modules = dict(binary.named_modules())
    bin_params = sum(c.params for n, c in costs.items() if id(modules[n]) in binary_names)
    bin_macs = sum(c.macs for n, c in costs.items() if id(modules[n]) in binary_names)
    total_params, total_macs = measure.count_params(binary), measure.count_macs(binary)
    rows = [
        ("full-precision ResNet-20", measure.count_params(twin), measure.count_macs(twin), "-"),
        (
            "binary ResNet-20: binary convs",
            bin_params,
            bin_macs,
            f"{100 * bin_macs / total_macs:.1f} %",
        ),
        (
            "binary ResNet-20: the rest (stem, head, BN)",
            total_params - bin_params,
            total_macs - bin_macs,
            f"{100 * (total_macs - bin_macs) / total_macs:.1f} %",
        ),
    ]
    return markdown_table(rows, ["", "parameters", "MACs per image", "share of MACs"])


def headline(m: dict) -> dict:
    """The issue's result keys, read off the sections' metrics."""
    k = m["kernel"]["256"]["speedup"]
    return {
        "binary_resnet20_test_accuracy": m["accuracy"]["binary"],
        "fp_resnet20_test_accuracy": m["accuracy"]["twin"],
        "kernel_speedup_256": k["median"],
        "kernel_speedup_256_interval": k["interval"],
        "network_speedup_b1": m["network"]["speedup"]["binary, packed"]["median"],
        "network_speedup_vs_ort_b1": m["network"]["speedup_vs_onnxruntime"]["median"],
        "network_speedup_vs_ort_b1_interval": m["network"]["speedup_vs_onnxruntime"]["interval"],
        "packed_size_ratio": m["sizes"]["packed_size_ratio"],
    }


# -- the methods' comparison (notebook 06, metrics of results/bnn_methods.json) ----------------


def seeds_text(seeds: list[int]) -> str:
    return ", ".join(str(s) for s in seeds)


def paired_text(entry: dict) -> str:
    """``p = ...`` of a method's paired test against plain STE, '-' without one."""
    paired = entry.get("paired")
    if paired is None:
        return "-"
    return f"p = {paired['p_value']:.2g} ({paired['a_only']} / {paired['b_only']})"


def methods_table(m: dict) -> Markdown:
    """Every method's mean test accuracy over its seeds beside the report's Table 1
    (ResNet-20, CIFAR-10, W/A = 1/1; full precision 32/32), with its paired test against
    plain STE where the run made one (McNemar's p-value; the images only the method gets
    right / only plain STE gets right)."""
    has_paired = any("paired" in e for e in m["methods"].values())
    rows = []
    for method, e in m["methods"].items():
        report = REPORT_TABLE1_RESNET20.get(REPORT_ROWS.get(method, ""))
        row = [
            METHOD_LABELS.get(method, method),
            pct(e["test_accuracy_mean"]),
            seeds_text(e["seeds"]),
            e["epochs"],
            f"{e['minutes']:.2f}",
            "-" if report is None else f"{report:.1f}",
        ]
        if has_paired:
            row.insert(2, paired_text(e))
        rows.append(tuple(row))
    headers = [
        "method",
        "ours: test accuracy (%)",
        "seeds",
        "epochs",
        "training minutes per seed",
        "report's Table 1 (%, from the papers' long trainings)",
    ]
    if has_paired:
        headers.insert(2, "vs plain STE, paired (McNemar p; images won / lost)")
    return markdown_table(rows, headers)


def paired_sentence(m: dict) -> str | None:
    """Which methods the paired tests separate from plain STE (None without tests): each
    test at p < :data:`PAIRED_ALPHA`, and which of those survive Holm's correction for the
    number of methods tested."""
    tested = {k: e["paired"] for k, e in m["methods"].items() if "paired" in e}
    if not tested:
        return None
    label = lambda k: METHOD_LABELS.get(k, k)  # noqa: E731
    above = [k for k, p in tested.items() if p["p_value"] < PAIRED_ALPHA and p["difference"] > 0]
    below = [k for k, p in tested.items() if p["p_value"] < PAIRED_ALPHA and p["difference"] < 0]
    tied = [k for k in tested if k not in above and k not in below]
    kept = holm_separated({k: p["p_value"] for k, p in tested.items()})
    weak = {k for k in above + below if k not in kept}
    images = next(iter(tested.values()))["images"]

    def names(keys: list[str]) -> str:
        return (
            "; ".join(
                f"{label(k)} (p = {tested[k]['p_value']:.2g}"
                + (", not kept by Holm's correction" if k in weak else "")
                + ")"
                for k in keys
            )
            or "none"
        )

    return (
        f"- **Paired against plain STE** (McNemar's exact test on the same {images:,} test "
        f"images, first seeds; an order only where p < {PAIRED_ALPHA}, and firm only where it "
        f"survives Holm's correction for the {len(tested)} methods tested). Above plain STE: "
        f"{names(above)}. Below: {names(below)}. Not separated: {names(tied)}."
    )


def ranking(m: dict) -> list[str]:
    """The methods, best mean test accuracy first."""
    methods = m["methods"]
    return sorted(methods, key=lambda k: -methods[k]["test_accuracy_mean"])


def report_order_pairs(m: dict) -> tuple[list[str], list[str], list[str]]:
    """The orderings 'A above B' of Table 1 (both methods run here) that this run
    reproduces, those it reverses, and those within the noise: a gap under
    :data:`~course_lib.uncertainty.TIE_STANDARD_ERRORS` standard errors of the difference
    (:mod:`course_lib.uncertainty`, binomial errors on the run's test images)."""
    ours = {k: m["methods"][k]["test_accuracy_mean"] for k in REPORT_ROWS if k in m["methods"]}
    ordered = sorted(ours, key=lambda k: -REPORT_TABLE1_RESNET20[REPORT_ROWS[k]])
    n = m["test_images"]
    same, reversed_, noise = [], [], []
    for i, a in enumerate(ordered):
        for b in ordered[i + 1 :]:
            text = f"{METHOD_LABELS[a]} above {METHOD_LABELS[b]}"
            se_a, se_b = binomial_se(ours[a], n), binomial_se(ours[b], n)
            sign = accuracy_sign((ours[a], se_a), (ours[b], se_b))
            if sign == 0:
                gap, se = ours[a] - ours[b], difference_se(se_a, se_b)
                noise.append(f"{text} ({pct(gap, 2)} points, standard error {pct(se, 2)})")
            else:
                (same if sign > 0 else reversed_).append(text)
    return same, reversed_, noise


def methods_conclusion(m: dict) -> Markdown:
    """What the comparison says, in sentences formatted from its metrics."""
    order = ranking(m)
    e = m["methods"]
    label = lambda k: METHOD_LABELS.get(k, k)  # noqa: E731
    same, reversed_, noise = report_order_pairs(m)
    epochs = {v["epochs"] for v in e.values()}
    start = (
        f"from chapter 5's full-precision twin ({pct(m['start_accuracy'], 1)} % on the test "
        f"images), "
        if "start_accuracy" in m
        else ""
    )
    lines = [
        f"- **Ranking.** After {', '.join(str(x) for x in sorted(epochs))} epoch(s) {start}on "
        f"{m['train_images']:,} training images (tested on {m['test_images']:,}): "
        + " > ".join(f"{label(k)} ({pct(e[k]['test_accuracy_mean'], 1)} %)" for k in order)
        + ".",
        f"- **Table 1's orderings** (a gap counts beyond {TIE_STANDARD_ERRORS:.0f} standard "
        f"errors of the difference; an accuracy p on n = {m['test_images']:,} test images has "
        f"a standard error of sqrt(p (1 - p) / n)). Reproduced here: "
        f"{'; '.join(same) or 'none'}. Reversed here: {'; '.join(reversed_) or 'none'}. "
        f"Within the noise, so not settled by this run: {'; '.join(noise) or 'none'}.",
    ]
    paired = paired_sentence(m)
    if paired is not None:
        lines.append(paired)
    if m["close"] and paired is None:  # with paired tests, they order the methods instead
        seeds = "; ".join(f"{label(k)}: seeds {seeds_text(e[k]['seeds'])}" for k in m["close"])
        lines.append(
            f"- **Within {pct(m['close_within'], 0)} point of another method** after the "
            f"first seeds: {seeds}. Their order is not settled by this run."
        )
    if m["skipped"]:
        skipped = ", ".join(f"{label(s['method'])} (seed {s['seed']})" for s in m["skipped"])
        lines.append(f"- **Second seeds the budget left out:** {skipped}.")
    lines.append(
        f"- **Budget.** {m['minutes']:.1f} min in all, against a stated budget of "
        f"{m['budget_minutes']:.0f} min."
    )
    return Markdown("\n".join(lines))


def deployment_table(m: dict) -> Markdown:
    """Every trained binary network (first seed) run by the packed engine on the test images
    beside the PyTorch model, and what DA-BNN's amplitudes cost at batch 1."""
    packed = m.get("packed") or {}
    if not packed:
        return Markdown("*This run did not pack its networks (results saved before that step).*")
    rows = [
        (
            METHOD_LABELS.get(method, method),
            f"{e['images']:,}",
            pct(e["same_prediction"]),
            f"{e['max_abs_logit_difference']:.2g}",
            pct(e["packed_accuracy"]),
        )
        for method, e in packed.items()
    ]
    table = markdown_table(
        rows,
        [
            "method",
            "test images",
            "same prediction as PyTorch (%)",
            "largest logit difference",
            "packed accuracy (%)",
        ],
    )
    cost = m.get("amplitude_cost")
    if cost is None:
        return table
    plain, adaptive = (cost["latency_ms"][k] for k in ("plain binary, packed", "DA-BNN, packed"))
    slowdown = {
        "median": 1 / cost["speedup"]["DA-BNN, packed"]["median"],
        "interval": [1 / x for x in reversed(cost["speedup"]["DA-BNN, packed"]["interval"])],
    }
    text = (
        f"\n\n**DA-BNN's amplitudes at inference.** Packed, at batch 1 on one thread, the "
        f"DA-BNN network takes {latency_text(adaptive)} against "
        f"{latency_text(plain)} for the plain binary network of the same shape: "
        f"{ratio_text(slowdown, 1)} the time, for {cost['amplitude_parameters']:,} extra "
        "parameters. The amplitudes cannot fold into the kernel's scale and bias, so after "
        "every layer's popcounts the engine runs pooling, two small convolutions, sigmoids, "
        "products and the BatchNorm as float arithmetic of its own (runtime: "
        f"{adaptive.get('runtime', 'not recorded')})."
    )
    return Markdown(table.data + text)

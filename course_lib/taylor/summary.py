"""The chapter's tables and conclusions, computed from its ``metrics`` dict (this run's or
the saved full run's), beside the seed's numbers."""

from __future__ import annotations

import statistics

from IPython.display import Markdown

from ..formatting import pct, ratio_text  # 03_taylor.ipynb calls summary.pct too
from ..report import markdown_table
from ..uncertainty import accuracy_sign, binomial_se
from .network import VGG16_WIDTHS

SEED_TABLE3 = (22, 29, 48, 39, 66, 62, 61, 64, 53, 61, 59, 46, 30)
"""The seed's Table 3: VGG16's conv widths after Taylor pruning (of ``VGG16_WIDTHS``)."""
SEED_ACCURACY = {"fine-tuned": 0.92, "pruned": 0.96}
"""The seed's test accuracies, before and after pruning, on ``SEED_TEST_IMAGES`` images."""
SEED_TEST_IMAGES = 64
SEED_PARAMS = {"unpruned": 134_268_738, "pruned": 23_109_104}
"""VGG16 with a 2-class head before and after pruning (the seed's Tables 1 and 3)."""
TARGETS = {"params_removed_fraction": 0.83, "accuracy_drop_points": 1.0}


def headline(comparison: dict, seed: int, test_images: int) -> dict:
    """The results keys of the chapter, from :meth:`~.compare.Comparison.as_dict`: the
    Taylor run of ``seed`` against the unpruned network of the same seed."""
    run = comparison["criteria"]["taylor"][str(seed)]
    first, last = run["rounds"][0], run["rounds"][-1]
    unpruned = comparison["unpruned"][str(seed)]["test_accuracy"]
    return {
        "headline": {"criterion": "taylor", "seed": seed, "rounds": last["round"]},
        "params_removed_fraction": last["params_removed"],
        "macs_removed_fraction": last["macs_removed"],
        "unpruned_test_accuracy": unpruned,
        "pruned_test_accuracy": last["accuracy"],
        "accuracy_drop_points": 100 * (unpruned - last["accuracy"]),
        "test_images": test_images,
        "layer_widths": {
            "before": first["widths"],
            "after": last["widths"],
            "vgg16": list(VGG16_WIDTHS),
            "seed_table3": list(SEED_TABLE3),
        },
    }


def final_rounds(m: dict, criterion: str) -> dict[str, dict]:
    """The last round of every seed's run of ``criterion``."""
    return {seed: run["rounds"][-1] for seed, run in m["criteria"][criterion].items()}


def transfer_table(m: dict) -> Markdown:
    """The source network and the fine-tuned, unpruned target network of every seed."""
    source = m["source"]
    rows = [
        (
            f"source: {len(source['classes'])} classes",
            pct(source["val_accuracy"]),
            pct(source["test_accuracy"]),
            f"{source['test_images']:,}",
        )
    ]
    for seed, scores in m["unpruned"].items():
        rows.append(
            (
                f"target {' vs '.join(m['pair'])}, seed {seed}",
                pct(scores["val_accuracy"]),
                pct(scores["test_accuracy"]),
                f"{m['test_images']:,}",
            )
        )
    return markdown_table(rows, ["network", "val. acc. (%)", "test acc. (%)", "test images"])


def rounds_table(run: dict) -> Markdown:
    """One row per round of a pruning run."""
    rows = [
        (
            r["round"],
            sum(r["widths"]),
            r["params"],
            pct(r["params_removed"], 1),
            pct(r["macs_removed"], 1),
            pct(r["accuracy_pruned"]),
            pct(r["accuracy"]),
        )
        for r in run["rounds"]
    ]
    headers = ["round", "filters", "params", "params removed (%)", "MACs removed (%)"]
    return markdown_table(rows, [*headers, "test acc. after removal (%)", "after fine-tuning (%)"])


def criteria_table(m: dict) -> Markdown:
    """Per criterion, over seeds: parameters removed, rounds, test accuracy at the budget
    (mean and the seeds' range) and its drop from each seed's unpruned network."""
    rows = []
    for criterion in m["criteria"]:
        finals = final_rounds(m, criterion)
        accuracy = [r["accuracy"] for r in finals.values()]
        drops = [
            100 * (m["unpruned"][s]["test_accuracy"] - r["accuracy"]) for s, r in finals.items()
        ]
        rows.append(
            (
                criterion,
                len(finals),
                pct(statistics.mean(r["params_removed"] for r in finals.values()), 1),
                pct(statistics.mean(r["macs_removed"] for r in finals.values()), 1),
                f"{pct(statistics.mean(accuracy))} ({pct(min(accuracy))}-{pct(max(accuracy))})",
                f"{statistics.mean(drops):+.2f}",
            )
        )
    headers = ["criterion", "seeds", "params removed (%)", "MACs removed (%)"]
    return markdown_table(rows, [*headers, "test acc. (%), mean (range)", "drop (points)"])


def widths_table(m: dict) -> Markdown:
    """Per conv layer: VGG16 and the seed's Table 3 beside our widths before and after."""
    w = m["layer_widths"]
    rows = [
        (i + 1, vgg, seed, pct(seed / vgg, 0), ours, after, pct(after / ours, 0))
        for i, (vgg, seed, ours, after) in enumerate(
            zip(w["vgg16"], w["seed_table3"], w["before"], w["after"], strict=True)
        )
    ]
    headers = ["conv", "VGG16", "seed, pruned", "seed kept (%)", "ours", "ours, pruned"]
    return markdown_table(rows, [*headers, "ours kept (%)"])


def widths_observation(m: dict) -> Markdown:
    """Where the filters stayed, ours and the seed's, in one sentence each."""
    w = m["layer_widths"]
    ours = [a / b for a, b in zip(w["after"], w["before"], strict=True)]
    seed = [a / b for a, b in zip(w["seed_table3"], w["vgg16"], strict=True)]
    half = len(ours) // 2

    def describe(kept: list[float]) -> str:
        early, late = statistics.mean(kept[:half]), statistics.mean(kept[half:])
        top = sorted(range(len(kept)), key=lambda i: -kept[i])[:3]
        return (
            f"the first {half} convolutions keep {pct(early, 0)} % of their filters on "
            f"average, the last {len(kept) - half} keep {pct(late, 0)} %; most kept: conv "
            f"{', '.join(str(i + 1) for i in sorted(top))}"
        )

    return Markdown(f"- Seed (Table 3): {describe(seed)}.\n- Ours: {describe(ours)}.")


def error_bars(m: dict) -> Markdown:
    """The binomial standard error of the seed's accuracies on 64 images and of ours."""
    rows = [
        (f"seed, {name}", pct(acc, 0), SEED_TEST_IMAGES, pct(binomial_se(acc, SEED_TEST_IMAGES)))
        for name, acc in SEED_ACCURACY.items()
    ]
    for name, key in (
        ("ours, unpruned", "unpruned_test_accuracy"),
        ("ours, pruned", "pruned_test_accuracy"),
    ):
        acc = m[key]
        rows.append(
            (name, pct(acc), f"{m['test_images']:,}", pct(binomial_se(acc, m["test_images"])))
        )
    return markdown_table(rows, ["", "test accuracy (%)", "test images", "standard error (points)"])


def deployment_table(m: dict) -> Markdown:
    """Parameters, MACs, bytes and ONNX Runtime batch-1 latency (median and 95 % interval)."""
    d = m["deployment"]
    rows = []
    for name, sizes in d["models"].items():
        latency = d["latency_ms"][name]
        speedup = d["speedup"].get(name)
        rows.append(
            (
                name,
                sizes["params"],
                sizes["macs"],
                sizes["torch_bytes"],
                sizes["onnx_bytes"],
                f"{latency['median_ms']:.3f} ({latency['low_ms']:.3f}-{latency['high_ms']:.3f})",
                "1 (baseline)" if speedup is None else ratio_text(speedup),
            )
        )
    headers = ["network", "params", "MACs", "torch.save (bytes)", "ONNX (bytes)"]
    return markdown_table(rows, [*headers, "ONNX Runtime b1 (ms, 95 % CI)", "speed-up (95 % CI)"])


def target_rows(m: dict) -> list[tuple]:
    """(target, measured, required, met/missed) for the chapter's two targets."""
    removed, drop = m["params_removed_fraction"], m["accuracy_drop_points"]
    return [
        (
            "parameters removed (%)",
            pct(removed, 1),
            f">= {pct(TARGETS['params_removed_fraction'], 0)}",
            "met" if removed >= TARGETS["params_removed_fraction"] else "missed",
        ),
        (
            "test accuracy lost vs the fine-tuned unpruned network (points)",
            f"{drop:.2f}",
            f"<= {TARGETS['accuracy_drop_points']:.0f}",
            "met" if drop <= TARGETS["accuracy_drop_points"] else "missed",
        ),
    ]


def targets_table(m: dict, label: str) -> Markdown:
    return markdown_table(target_rows(m), ["target", label, "required", "status"])


def conclusion(m: dict) -> Markdown:
    """What this run's numbers say about the criteria, computed from them."""
    accuracy = {
        c: statistics.mean(r["accuracy"] for r in final_rounds(m, c).values())
        for c in m["criteria"]
    }
    damage = {
        c: statistics.mean(
            statistics.mean(r["accuracy_pruned"] for r in run["rounds"][1:])
            for run in m["criteria"][c].values()
        )
        for c in m["criteria"]
    }
    best, worst = max(accuracy, key=accuracy.get), min(accuracy, key=accuracy.get)
    gentlest = max(damage, key=damage.get)
    se = binomial_se(m["unpruned_test_accuracy"], m["test_images"])
    tied = [
        c
        for c in accuracy
        if c != best and accuracy_sign((accuracy[best], se), (accuracy[c], se)) == 0
    ]
    verdict = (
        "within two standard errors of the difference, so not distinguishable here: "
        + ", ".join(tied)
        if tied
        else "every other criterion ends more than two standard errors of the difference below"
    )
    return Markdown(
        f"- At the budget, **{best}** ends most accurate ({pct(accuracy[best])} %, mean over "
        f"seeds) and **{worst}** least ({pct(accuracy[worst])} %). One test accuracy here has a "
        f"standard error of about {100 * se:.1f} points; {verdict}.\n"
        f"- Right after each removal, before fine-tuning, **{gentlest}** does the least damage "
        f"(mean accuracy {pct(damage[gentlest])} % over rounds, against "
        + ", ".join(f"{c} {pct(v)} %" for c, v in damage.items() if c != gentlest)
        + "): fine-tuning repairs much of the rest, which is why the final accuracies are "
        "closer together than the damage."
    )


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    for rank, i in enumerate(order):
        ranks[i] = float(rank)
    return ranks


def rank_correlation(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation of two equally long lists (ties ranked by position)."""
    return statistics.correlation(_ranks(a), _ranks(b))


def first_order_summary(check: dict) -> Markdown:
    """How the first-order estimates compare with the measured loss changes."""
    estimated, actual = check["estimated"], check["actual"]
    agree = sum((e > 0) == (a > 0) for e, a in zip(estimated, actual, strict=True))
    ratio = sum(abs(e) for e in estimated) / max(sum(abs(a) for a in actual), 1e-12)
    return Markdown(
        f"{len(actual)} filters of `{check['layer']}`: rank correlation (Spearman) between "
        f"|estimate| and |measured change| **{rank_correlation([abs(e) for e in estimated], [abs(a) for a in actual]):.2f}**; "
        f"same sign in {agree} of {len(actual)}; the estimates add up to "
        f"{ratio:.2f}x the measured changes."
    )

"""The chapter's tables and sentences, computed from a metrics dict: this run's
(:attr:`course_lib.nas.experiments.ChapterRun.metrics`, any profile) or the saved full run's
(``results/nas.json``), drawn by the same functions. ``normalize``
(:func:`course_lib.legacy.nas_metrics`) reads results saved before latencies carried
intervals: they are shown without them, and the captions say so
(:data:`course_lib.formatting.MEDIANS_ONLY`).

Accuracies are stored as fractions and shown in percent; latencies in milliseconds (both
through :mod:`course_lib.formatting`).
"""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
from IPython.display import Markdown

from .. import legacy, measure
from ..data import DataSettings
from ..formatting import MEDIANS_ONLY, fmt, latency_text, latency_us_text, pct, ratio_text
from ..report import markdown_table
from ..uncertainty import accuracy_sign, binomial_se
from .multicore import find
from .settings import DECIDED, SPEEDUP_MIN, nas_settings
from .space import SearchSpace, make_op

#: What the course asks of the chapter (issue tracker; the paper's headline is 84 %).
TARGETS = {"best_test_accuracy": 0.84, "parallel_speedup_b1_paper_widths": 1.6, "wall_time_min": 90}

#: The paper's Table 2 (structures found per beta).
PAPER_TABLE2 = {
    1.0: ["3x3 - 3x3, no sync"] * 4,
    0.1: ["3x3 - 3x3, no sync"] * 3 + ["3x3 - 5x5, no sync"],
    0.01: ["3x3 - 5x5, no sync", "5x5 - 5x5, no sync", "5x5 - 5x5, no sync", "5x5 - 5x5, sync"],
    0.001: ["5x5 - 5x5, no sync", "5x5 - 5x5, sync", "5x5 - 5x5, no sync", "5x5 - 5x5, sync"],
}

#: 04_nas.ipynb reads its saved results with ``summary.normalize``.
normalize = legacy.nas_metrics


# --- small helpers ---------------------------------------------------------------------------


def margin(probs: list) -> float:
    """The smallest winning probability of any decision (op or sync) at the end of a
    search: near ``1 / choices`` means the search barely decided."""
    return float(np.asarray(probs).max(axis=-1).min())


def epochs(n: int) -> str:
    return f"{n} epoch{'' if n == 1 else 's'}"


def short(cells: list[str]) -> list[str]:
    return [c.replace("conv", "") for c in cells]


# --- uncertainty: what counts as a difference ------------------------------------------------

#: Beside a choice the search left undecided (winning probability below ``DECIDED``).
UNDECIDED = "†"


def undecided_note() -> str:
    return (
        f"{UNDECIDED} Undecided: the search ended with a winning probability below {DECIDED} for "
        f"this choice (0.5 is a coin toss between two). Such choices are marked, and no "
        f"comparison counts them as a difference or a structure change."
    )


def images(m: dict, split: str) -> int:
    """How many images the run's ``split`` (``"val"`` or ``"test"``) held: the protocol's
    record, or (results saved before it recorded them) the profile's settings."""
    n = m.get("protocol", {}).get(f"{split}_images")
    if n is not None:
        return int(n)
    try:
        return nas_settings(m.get("profile", "full")).data.images(split)
    except ValueError:  # an unknown profile: the whole split
        return DataSettings().images(split)


def accuracy_se(p: float, n: int, accuracies: list[float] | None = None) -> float:
    """The standard error of an accuracy ``p`` (a fraction) on ``n`` images: the binomial
    ``sqrt(p (1 - p) / n)``, or, where several seeds give ``accuracies``, their standard error
    ``s / sqrt(k)`` if that is larger (two seeds can agree by chance)."""
    se = binomial_se(p, n)
    if accuracies is not None and len(accuracies) > 1:
        se = max(se, statistics.stdev(accuracies) / math.sqrt(len(accuracies)))
    return se


def latency_sign(a: dict | None, b: dict | None) -> int:
    """+1 when latency ``a`` (a saved ``Latency``, ms) is slower than ``b`` beyond noise: their
    95 % intervals apart (so the ratio's interval, ``a.low / b.high`` to ``a.high / b.low``,
    excludes 1) and the medians' ratio at least ``SPEEDUP_MIN``; -1 when faster; 0 a tie
    (also when a latency has no interval)."""
    if not a or not b or a.get("low_ms") is None or b.get("low_ms") is None:
        return 0
    if a["low_ms"] > b["high_ms"] and a["median_ms"] >= SPEEDUP_MIN * b["median_ms"]:
        return 1
    if b["low_ms"] > a["high_ms"] and b["median_ms"] >= SPEEDUP_MIN * a["median_ms"]:
        return -1
    return 0


def _accuracies(e: dict) -> list[float]:
    """The per-seed test accuracies behind an entry's mean (its warm starts' in the sweep)."""
    if e.get("warm_start"):
        return [w["accuracy_mean"] for w in e["warm_start"]]
    return list(e.get("accuracies") or [e["accuracy_mean"]])


def _decisions(s: dict) -> list[tuple[str, float | None]] | None:
    """Every choice of one search, level by level (each path's op, then the sync point), with
    its winning probability (``None`` where the search's probabilities were not saved)."""
    arch = s.get("architecture")
    if arch is None:
        return None
    op_probs, sync_probs = s.get("op_probs"), s.get("sync_probs")
    out = []
    for level, (ops, sync) in enumerate(zip(arch["ops"], arch["syncs"], strict=True)):
        for path, op in enumerate(ops):
            out.append((op, None if op_probs is None else max(op_probs[level][path])))
        out.append(
            ("sync" if sync else "no sync", None if sync_probs is None else max(sync_probs[level]))
        )
    return out


def _undecided(p: float | None) -> bool:
    return p is not None and p < DECIDED


def marked_structure(s: dict) -> list[str]:
    """A search's structure, one cell per level (``"3x3 - 5x5, sync"``), with ``UNDECIDED``
    beside every choice whose winning probability is below ``DECIDED``."""
    decisions = _decisions(s)
    if decisions is None:
        return short(s["structure"])
    paths = len(s["architecture"]["ops"][0])
    cells = []
    for level in range(len(s["architecture"]["ops"])):
        chunk = decisions[level * (paths + 1) : (level + 1) * (paths + 1)]
        names = [
            name.replace("conv", "") + (UNDECIDED if _undecided(p) else "") for name, p in chunk
        ]
        cells.append(" - ".join(names[:-1]) + ", " + names[-1])
    return cells


def differences(a: dict, b: dict) -> tuple[int, int]:
    """``(decided, all)``: how many choices differ between searches ``a`` and ``b``, and how
    many of those both searches decided (winning probability at least ``DECIDED``)."""
    da, db = _decisions(a), _decisions(b)
    if da is None or db is None:
        same = a.get("architecture") == b.get("architecture") and a["structure"] == b["structure"]
        return (0, 0) if same else (1, 1)
    differ = [(pa, pb) for (va, pa), (vb, pb) in zip(da, db, strict=True) if va != vb]
    decided = sum(not _undecided(pa) and not _undecided(pb) for pa, pb in differ)
    return decided, len(differ)


def source(m: dict) -> str:
    """Which run the numbers come from, in a few words."""
    if m.get("legacy"):
        return "the saved full-profile run"
    if m.get("profile") in ("quick", "full"):
        return f"this {m['profile']}-profile run"
    return f"this {m.get('profile', 'unlabelled')} run"


def caption(m: dict) -> str:
    """A table's italic caption: where its numbers come from, and what they are worth."""
    notes = {
        "quick": " Small subsets, one epoch: a smoke test whose accuracies can sit "
        "near chance; the full run's numbers are in the last section.",
    }
    note = f" It was {MEDIANS_ONLY}." if m.get("legacy") else notes.get(m.get("profile"), "")
    return f"*From {source(m)}.{note}*"


# --- the search space --------------------------------------------------------------------------


def cost_rows(space: SearchSpace) -> list[tuple]:
    """Eq. 7-8 per level and op of one path, checked against ``measure.count_macs`` (an
    independent counter hooking the real layers): a mismatch raises."""
    from .costs import op_cost

    rows = []
    for level in range(space.levels):
        d_in, d_out, size = space.in_channels_of(level), space.widths[level], space.conv_size(level)
        for op in space.ops:
            cost = op_cost(op, d_in, d_out, size)
            counted = measure.count_macs(make_op(op, d_in, d_out), (1, d_in, size, size))
            if cost.mults != counted:
                raise AssertionError(
                    f"eq. 7 gives {cost.mults} for {op} at level {level}, the layers {counted}"
                )
            rows.append(
                (
                    level + 1,
                    op,
                    f"{d_in}->{d_out}",
                    f"{size}x{size}",
                    cost.mults,
                    cost.adds,
                    counted,
                )
            )
    return rows


def cost_table(space: SearchSpace) -> Markdown:
    from .costs import sync_cost_table

    ops = markdown_table(
        cost_rows(space),
        [
            "level",
            "op",
            "channels",
            "output",
            "multiplications (eq. 7)",
            "additions (eq. 8)",
            "MACs (measure)",
        ],
    )
    syncs = markdown_table(
        [
            (level + 1, space.merge, f"{space.out_size(level)}x{space.out_size(level)}", int(c))
            for level, c in enumerate(sync_cost_table(space).tolist())
        ],
        ["sync point after level", "merge", "at", "C_sync (FLOPs of the merge)"],
    )
    return Markdown(ops.data + "\n\n" + syncs.data)


# --- learning rates -------------------------------------------------------------------------


def lr_table(m: dict) -> Markdown:
    rows = []
    for name, r in m["lr_check"].items():
        op_probs, sync_probs = r["op_probs"], r["sync_probs"]
        p_last = _mean([p[-1] for level in op_probs for p in level])
        p_sync = _mean([p[0] for p in sync_probs])
        rows.append(
            (
                name,
                r["weights_lr"],
                r.get("weights_momentum", "-"),
                r["decision_lr"],
                pct(r["val_accuracy"]),
                f"{p_last:.3f}",
                f"{p_sync:.3f}",
            )
        )
    setup = m["protocol"].get("lr_check", {})
    header = caption(m) + "\n\n"
    if setup:
        header = (
            f"*{setup['train_images']} training images, {epochs(setup['epochs'])}, "
            f"beta = {setup['beta']}.* " + header
        )
    table = markdown_table(
        rows,
        [
            "learning rates",
            "weights lr",
            "momentum",
            "decision lr",
            "supernet val. accuracy (%)",
            "mean P(last op)",
            "mean P_sync",
        ],
    )
    return Markdown(header + table.data)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


# --- experiment 1 -------------------------------------------------------------------------------


def sync_configs_table(m: dict) -> Markdown:
    rows = [
        (
            name,
            pct(a["accuracy_mean"], sd=a["accuracy_std"]),
            a["macs"],
            latency_text(a["latency_ms"].get("onnx"), no_interval=None),
            latency_text(a["latency_ms"].get("parallel"), no_interval=None),
            ratio_text(a["parallel_speedup"], no_interval=None),
        )
        for name, a in m["sync_configs"].items()
    ]
    table = markdown_table(
        rows,
        [
            "sync points",
            "accuracy (%)",
            "MACs",
            "ONNX Runtime, 1 thread",
            "path-parallel",
            "path-parallel speed-up",
        ],
    )
    return Markdown(caption(m) + "\n\n" + table.data)


def _order(values: dict[str, float]) -> list[str]:
    return sorted(values, key=values.get, reverse=True)


#: The paper's Fig. 7 as pairs ``(a, b)``: ``a`` is more accurate, and slower, than ``b``.
FIG7_PAIRS = (
    ("all", "first two"),
    ("all", "last two"),
    ("all", "none"),
    ("first two", "none"),
    ("last two", "none"),
)


FIG7_CLAIM = "all > first two, last two > none"

#: The verdict where latencies were saved without intervals: nothing to test a step against.
UNTESTED = "untested: medians only, no intervals"


def _fig7_series(m: dict) -> dict[str, tuple[dict[str, float], object]]:
    """Per quantity, the configurations' point values and a ``sign(a, b)`` comparing two
    configurations beyond noise (+1: ``a`` higher)."""
    sc = m["sync_configs"]
    n = images(m, "test")
    se = {
        k: (v["accuracy_mean"], accuracy_se(v["accuracy_mean"], n, _accuracies(v)))
        for k, v in sc.items()
    }
    out = {
        "accuracy": (
            {k: v["accuracy_mean"] for k, v in sc.items()},
            lambda a, b: accuracy_sign(se[a], se[b]),
        )
    }
    for key, label in (("onnx", "ONNX latency"), ("parallel", "path-parallel latency")):
        lat = {k: v["latency_ms"].get(key) for k, v in sc.items()}
        if all(x and x.get("median_ms") is not None for x in lat.values()):
            untested = any(x.get("low_ms") is None for x in lat.values())
            out[label] = (
                {k: x["median_ms"] for k, x in lat.items()},
                None if untested else lambda a, b, lat=lat: latency_sign(lat[a], lat[b]),
            )
    return out


def fig7_orderings(m: dict) -> Markdown:
    """The paper's Fig. 7 claims (all syncs: most accurate and slowest; none: least
    accurate and fastest; the others in between), pair by pair, against this run: a pair
    holds only where the difference exceeds its uncertainty (accuracies: two standard
    errors of the difference; latencies: 95 % intervals apart and at least 5 % apart)."""
    rows = []
    for label, (values, sign) in _fig7_series(m).items():
        if sign is None:
            rows.append((label, FIG7_CLAIM, " > ".join(_order(values)), "-", UNTESTED))
            continue
        pairs = [(a, b) for a, b in FIG7_PAIRS if a in values and b in values]
        signs = {(a, b): sign(a, b) for a, b in pairs}
        held = [f"{a} > {b}" for (a, b), v in signs.items() if v > 0]
        ties = [f"{a} ≈ {b}" for (a, b), v in signs.items() if v == 0]
        reversed_ = [f"{a} < {b}" for (a, b), v in signs.items() if v < 0]
        if len(held) == len(pairs):
            verdict = "yes"
        elif held:
            verdict = f"partly: {len(held)} of {len(pairs)} pairs"
        else:
            verdict = f"no: 0 of {len(pairs)} pairs"
        beyond = "; ".join(
            part
            for part in (
                ", ".join(held),
                ("ties: " + ", ".join(ties)) if ties else "",
                ("reversed: " + ", ".join(reversed_)) if reversed_ else "",
            )
            if part
        )
        rows.append((label, FIG7_CLAIM, " > ".join(_order(values)), beyond, verdict))
    note = (
        f"*Point values order the third column; the fourth keeps only differences beyond noise: "
        f"accuracies two standard errors of the difference apart ({images(m, 'test'):,} test "
        f"images, binomial, or the seeds' spread if larger), latencies with their 95 % intervals "
        f"apart and at least {100 * (SPEEDUP_MIN - 1):.0f} % apart. ≈ is a tie.*"
    )
    table = markdown_table(
        rows, ["ordered by", "paper (Fig. 7)", "ours (point values)", "beyond noise", "reproduced"]
    )
    return Markdown(note + "\n\n" + table.data)


# --- experiment 2 ---------------------------------------------------------------------------


def _agreement_text(e: dict) -> str | None:
    """Whether an entry's search seeds derive the same network, counting only decided
    choices as differences."""
    searches = e.get("searches", [])
    if len(searches) < 2:
        return None
    counts = [differences(searches[0], other) for other in searches[1:]]
    decided, total = max(c[0] for c in counts), max(c[1] for c in counts)
    decisions = len(_decisions(searches[0]) or []) or e.get("agreement", {}).get("decisions")
    if total == 0:
        return "same network"
    if decided == 0:
        return f"same decisions: {total} of {decisions} choices differ, all undecided {UNDECIDED}"
    return f"{decided} of {decisions} decided choices differ" + (
        f" (and {total - decided} undecided {UNDECIDED})" if total > decided else ""
    )


def structures_table(m: dict, key: str = "beta_sweep") -> Markdown:
    """Derived structures per beta and search seed (ours), beside the paper's Table 2, with
    every undecided choice marked."""
    rows = []
    for e in m[key]:
        searches = e.get("searches", [e])
        for s in searches:
            weakest = s.get("decision_margin")
            if weakest is None and s.get("op_probs") is not None:
                weakest = min(margin(s["op_probs"]), margin(s["sync_probs"]))
            rows.append(
                (
                    f"{e['beta']:g}",
                    f"ours, seed {s.get('seed', '-')}",
                    *marked_structure(s),
                    "-" if weakest is None else f"{weakest:.2f}",
                )
            )
        verdict = _agreement_text(e)
        if verdict is not None:
            levels = len(e["structure"])
            rows.append(("", "seeds agree?", verdict, *[""] * levels))
        if e["beta"] in PAPER_TABLE2:
            rows.append(("", "paper", *PAPER_TABLE2[e["beta"]], ""))
    levels = len(m[key][0]["structure"]) if m[key] else 4
    headers = ["beta", "", *[f"level {i + 1}" for i in range(levels)], "weakest decision (max P)"]
    return Markdown(
        caption(m) + "\n\n" + markdown_table(rows, headers).data + "\n\n" + undecided_note()
    )


def stability_text(m: dict) -> Markdown:
    sweep = m["beta_sweep"]
    multi = [e for e in sweep if len(e.get("searches", [])) > 1]
    if not multi:
        return Markdown(f"*{source(m).capitalize()} has one search per beta: no stability check.*")
    same = [f"{e['beta']:g}" for e in multi if e["agreement"]["same"]]
    differ = []
    for e in (e for e in multi if not e["agreement"]["same"]):
        decided = max(differences(e["searches"][0], o)[0] for o in e["searches"][1:])
        differ.append(
            f"{e['beta']:g} ({e['agreement']['differing']} of {e['agreement']['decisions']} "
            f"choices differ, {decided or 'none'} of them decided)"
        )
    weakest = min((s["decision_margin"], e["beta"]) for e in multi for s in e["searches"])
    text = (
        f"With {len(multi[0]['searches'])} search seeds per beta ({source(m)}): the seeds derive the same network "
        f"at beta = {', '.join(same) or 'none'}; they disagree at {', '.join(differ) or 'none'}. "
        f"A choice counts as decided where its winning probability is at least {DECIDED}. The "
        f"least decided choice of any search has a winning probability of {weakest[0]:.2f} "
        f"(beta = {weakest[1]:g}); 0.5 would be a coin toss."
    )
    return Markdown(text)


def sweep_table(m: dict) -> Markdown:
    rows = []
    for e in m["beta_sweep"]:
        scratch = e.get("from_scratch")
        rows.append(
            (
                f"{e['beta']:g}",
                e.get("retrain", "-").replace("_", " "),
                pct(e["accuracy_mean"], sd=e["accuracy_std"]),
                "-" if not scratch else pct(scratch["accuracy_mean"]),
                e["macs"],
                latency_text(e["latency_ms"].get("onnx"), no_interval=None),
                latency_text(e["latency_ms"].get("parallel"), no_interval=None),
                ratio_text(e["parallel_speedup"], no_interval=None),
            )
        )
    table = markdown_table(
        rows,
        [
            "beta",
            "second training",
            "accuracy (%)",
            "from scratch (%)",
            "MACs",
            "ONNX Runtime, 1 thread",
            "path-parallel",
            "path-parallel speed-up",
        ],
    )
    return Markdown(caption(m) + "\n\n" + table.data)


def warm_start_text(m: dict) -> Markdown:
    pairs = [
        (e["beta"], e["warm_start"][0]["accuracy_mean"], e["from_scratch"]["accuracy_mean"])
        for e in m["beta_sweep"]
        if e.get("warm_start") and e.get("from_scratch")
    ]
    if not pairs:
        return Markdown(
            f"*{source(m).capitalize()} retrained every derived network from scratch only.*"
        )
    test = images(m, "test")
    signs = [
        accuracy_sign((w, accuracy_se(w, test)), (s, accuracy_se(s, test))) for _, w, s in pairs
    ]
    gain = _mean([w - s for _, w, s in pairs])
    n = m["protocol"]["retrain_epochs"]
    ties, worse = signs.count(0), signs.count(-1)
    return Markdown(
        f"Same network, same {epochs(n)} of second training ({source(m)}): starting from the search's "
        f"weights beat starting from scratch by more than two standard errors of the difference "
        f"({test:,} test images) for {signs.count(1)} of {len(pairs)} values of beta"
        + (f" (ties: {ties}, worse: {worse})" if ties or worse else "")
        + f", by {100 * gain:+.2f} points on average."
    )


def _network_key(e: dict) -> str:
    """What an entry of the sweep derived: the set of its searches' architectures."""
    archs = {
        json.dumps(s.get("architecture", s["structure"]), sort_keys=True)
        for s in e.get("searches", [e])
    }
    return json.dumps(sorted(archs))


def same_network_groups(sweep: list[dict]) -> list[list[dict]]:
    """The sweep in order of beta, neighbours that derived the same network(s) merged into
    one group: one network is one point of Fig. 8, however many betas derived it."""
    groups: list[list[dict]] = []
    for e in sorted(sweep, key=lambda e: e["beta"]):
        if groups and _network_key(groups[-1][-1]) == _network_key(e):
            groups[-1].append(e)
        else:
            groups.append([e])
    return groups


def _group_latency(group: list[dict], key: str) -> dict | None:
    """One network measured once per beta that derived it: the mean of the medians, and the
    union of the intervals."""
    lats = [e["latency_ms"].get(key) for e in group]
    if any(not x or x.get("median_ms") is None for x in lats):
        return None
    out = {"median_ms": _mean([x["median_ms"] for x in lats]), "low_ms": None, "high_ms": None}
    if all(x.get("low_ms") is not None for x in lats):
        out["low_ms"] = min(x["low_ms"] for x in lats)
        out["high_ms"] = max(x["high_ms"] for x in lats)
    return out


def _betas(group: list[dict]) -> str:
    names = [f"{e['beta']:g}" for e in group]
    return names[0] if len(names) == 1 else "{" + ", ".join(names) + "}"


def fig8_orderings(m: dict) -> Markdown:
    """The paper's Fig. 8 claims (larger beta: cheaper, faster, less accurate) against this
    run, step by step over beta. Betas that derived the same network are one point; a step
    counts only where the difference exceeds its uncertainty (as :func:`fig7_orderings`;
    MACs are exact counts)."""
    groups = same_network_groups(m["beta_sweep"])
    n = images(m, "test")
    acc = []
    for g in groups:
        values = [a for e in g for a in _accuracies(e)]
        p = _mean(values)
        acc.append((p, accuracy_se(p, n, values)))
    series = {
        "accuracy": ([a[0] for a in acc], lambda i, j: accuracy_sign(acc[i], acc[j])),
        "MACs": (
            [g[0]["macs"] for g in groups],
            lambda i, j: int(np.sign(groups[i][0]["macs"] - groups[j][0]["macs"])),
        ),
    }
    for key, label in (("onnx", "ONNX latency"), ("parallel", "path-parallel latency")):
        lat = [_group_latency(g, key) for g in groups]
        if all(x is not None for x in lat):
            untested = any(x["low_ms"] is None for x in lat)
            series[label] = (
                [x["median_ms"] for x in lat],
                None if untested else lambda i, j, lat=lat: latency_sign(lat[i], lat[j]),
            )
    steps = len(groups) - 1
    rows = []
    for name, (values, sign) in series.items():
        order = sorted(range(len(groups)), key=lambda i: values[i], reverse=True)
        ranking = " > ".join(_betas(groups[i]) for i in order)
        if sign is None:
            rows.append((name, "falls as beta grows", ranking, UNTESTED))
            continue
        signs = [sign(i, i + 1) for i in range(steps)]  # +1: the smaller beta's value is higher
        falls, ties = signs.count(1), signs.count(0)
        if steps == 0:
            verdict = "one network: nothing to order"
        else:
            verdict = "yes" if falls == steps else f"{falls} of {steps} steps"
        if ties:
            verdict += f", {ties} tie{'s' if ties > 1 else ''}"
        if signs.count(-1):
            verdict += f", {signs.count(-1)} reversed"
        rows.append((name, "falls as beta grows", ranking, verdict))
    merged = "; ".join(
        "beta = " + " and ".join(f"{e['beta']:g}" for e in g) for g in groups if len(g) > 1
    )
    note = (
        "*Steps between neighbouring betas, smallest first"
        + (f"; betas that derived the same network are one point ({merged})" if merged else "")
        + f": {steps} step{'s' if steps != 1 else ''}. A step falls only beyond noise "
        f"(accuracies: two standard errors of the difference on {n:,} test images; latencies: "
        f"95 % intervals apart and at least {100 * (SPEEDUP_MIN - 1):.0f} % apart); otherwise it "
        "is a tie.*"
    )
    table = markdown_table(
        rows, ["", "paper (Fig. 8)", "ours: betas by this value, largest first", "reproduced"]
    )
    return Markdown(note + "\n\n" + table.data)


# --- sync cost --------------------------------------------------------------------------


def sync_cost_table(m: dict) -> Markdown:
    """How much one sync point weighs in the search loss under each price, against
    switching one block of the same level from the last op to the first (e.g. 5x5 to 3x3)."""
    c = m["sync_cost"]
    flops = c["op_flops"]
    total_merge = sum(c["merge_flops"])
    rows = []
    for level, (merge, timed) in enumerate(zip(c["merge_flops"], c["sync_costs"], strict=True)):
        switch = (flops[level][-1] - flops[level][0]) / c["ops_normalizer"]
        rows.append(
            (
                level + 1,
                int(merge),
                f"{merge / total_merge:.3f}",
                f"{1e3 * c['sync_ms'][level]:.1f}",
                f"{timed / c['ops_normalizer']:.3f}",
                f"{switch:.3f}",
            )
        )
    h = c["handoff_ms"]
    header = (
        f"*From {source(m)}: one fork + wait costs {latency_us_text(h)}; the candidate ops run at "
        f"{c['flops_per_ms'] / 1e6:.2f} GFLOP/s on one thread.*\n\n"
    )
    table = markdown_table(
        rows,
        [
            "sync point after level",
            "merge FLOPs",
            "weight, FLOPs price (default)",
            "measured time (µs)",
            "weight, time price",
            f"weight of one {c['ops'][-1]} -> {c['ops'][0]} switch",
        ],
    )
    return Markdown(header + table.data)


def latency_sweep_table(m: dict) -> Markdown:
    """The first search seed's structures with ``C_sync`` priced in FLOPs and in measured
    time, undecided choices marked; a structure changes only where a decided choice does."""
    flops_model = {e["beta"]: e["searches"][0] for e in m["beta_sweep"]}
    rows = []
    changed = differ = 0
    for e in m["latency_cost_sweep"]:
        before = flops_model[e["beta"]]
        rows.append(
            (
                f"{e['beta']:g}",
                "FLOPs price",
                *marked_structure(before),
                sum(before["architecture"]["syncs"]),
            )
        )
        rows.append(("", "time price", *marked_structure(e), sum(e["architecture"]["syncs"])))
        decided, total = differences(before, e)
        if total == 0 and not e.get("same_as_flops_model", True):
            decided = total = 1  # no probabilities saved: the recorded verdict
        changed += decided > 0
        differ += total > 0
    levels = len(m["latency_cost_sweep"][0]["structure"])
    n = len(m["latency_cost_sweep"])
    table = markdown_table(
        rows, ["beta", "C_sync", *[f"level {i + 1}" for i in range(levels)], "syncs kept"]
    )
    undecided = differ - changed
    header = (
        f"*From {source(m)}: {changed} of {n} derived structures change by a decided choice"
        + (
            f"; {undecided} more differ only in undecided choices ({UNDECIDED}), which is no change.*"
            if undecided
            else ".*"
        )
    )
    return Markdown(header + "\n\n" + table.data + "\n\n" + undecided_note())


# --- best network ------------------------------------------------------------------------


def deploy_budget(m: dict) -> int:
    """The MAC budget of the network to deploy: the run's record, or the profile's
    ``deploy_macs`` (:mod:`course_lib.nas.settings`) for results saved before it."""
    budget = m.get("protocol", {}).get("deploy_macs")
    if budget is not None:
        return int(budget)
    try:
        return nas_settings(m.get("profile", "full")).deploy_macs
    except ValueError:
        return nas_settings("full").deploy_macs


def deploy_choice(m: dict, budget_macs: int | None = None) -> dict:
    """The network the chapter deploys, from the sweep's second trainings (every beta and
    search seed): among those within ``budget_macs`` (default :func:`deploy_budget`; all of
    them, if none fits), the ones whose validation accuracy is within two standard errors of
    the difference of the best one's (binomial, on the validation images); of those, the
    cheapest (fewest MACs, then the higher validation accuracy).

    Returns ``beta``, ``index`` (of the warm start, i.e. of the search seed), ``search_seed``,
    ``entry`` (the second training), and ``budget``, ``fits`` (candidates within the budget),
    ``candidates``, ``within_noise`` (how many), ``best_val`` (the best validation accuracy
    within the budget) and ``over_budget`` (no candidate fitted)."""
    budget = deploy_budget(m) if budget_macs is None else budget_macs
    n = images(m, "val")
    candidates = []
    for e in m["beta_sweep"]:
        entries = e.get("warm_start") or [e]
        for i, w in enumerate(entries):
            searches = e.get("searches") or [{}]
            val = w.get("val_accuracy_mean", w.get("accuracy_mean"))
            seed = searches[min(i, len(searches) - 1)].get("seed")
            candidates.append(
                {"beta": e["beta"], "index": i, "search_seed": seed, "entry": w, "val": val}
            )
    fits = [c for c in candidates if c["entry"]["macs"] <= budget]
    pool = fits or candidates
    best = max(pool, key=lambda c: c["val"])
    best_se = accuracy_se(best["val"], n)
    near = [
        c
        for c in pool
        if accuracy_sign((best["val"], best_se), (c["val"], accuracy_se(c["val"], n))) == 0
    ]
    choice = min(near, key=lambda c: (c["entry"]["macs"], -c["val"]))
    return {
        **{k: choice[k] for k in ("beta", "index", "search_seed", "entry")},
        "budget": budget,
        "fits": len(fits),
        "candidates": len(candidates),
        "within_noise": len(near),
        "best_val": best["val"],
        "over_budget": not fits,
    }


def _rule_text(m: dict, c: dict) -> str:
    fits = (
        f"{c['fits']} of the {c['candidates']} derived networks (every beta and search seed) fit"
        if not c["over_budget"]
        else f"none of the {c['candidates']} derived networks fits, so all of them compete"
    )
    return (
        f"The rule: a budget of {fmt(c['budget'])} MACs per image (`deploy_macs` in "
        f"`course_lib/nas/settings.py`); {fits}. Among those, the ones whose validation accuracy "
        f"after the sweep's second training is within two standard errors of the difference "
        f"from the best one's ({pct(c['best_val'])} %, {images(m, 'val'):,} validation images) are equally good "
        f"({c['within_noise']} here), and the cheapest of them is deployed."
    )


def best_text(m: dict) -> Markdown:
    """The network to deploy (:func:`deploy_choice`) and its longer training; for results
    saved before the rule, what the rule picks beside what that run trained longer."""
    b = m["best_network"]
    c = deploy_choice(m)
    sweep = next((e for e in m["beta_sweep"] if e["beta"] == b["beta"]), None)
    start = "from the search's weights" if b.get("retrain") == "warm_start" else "from scratch"
    trained = (
        f"Trained {start} for {epochs(b['epochs'])}: test accuracy {pct(b['accuracy_mean'])} %"
        + (
            f" (the sweep's short second training: {pct(sweep['accuracy_mean'])} %)"
            if sweep
            else ""
        )
        + f", {b['macs']:,} MACs, ONNX Runtime {latency_text(b['latency_ms'].get('onnx'), no_interval=None)} at batch 1."
    )
    same = c["beta"] == b["beta"] and c["search_seed"] in (None, b.get("search_seed"))
    if same:
        text = (
            f"Network to deploy, from {source(m)}: beta = {b['beta']:g}, "
            f"{'; '.join(short(b['structure']))}. {trained}\n\n{_rule_text(m, c)}"
        )
        return Markdown(text)
    w = c["entry"]
    seed = "" if c["search_seed"] is None else f" (search seed {c['search_seed']})"
    text = (
        f"Network to deploy, from {source(m)}: beta = {c['beta']:g}{seed}, "
        f"{'; '.join(short(w['structure']))}: {w['macs']:,} MACs, validation accuracy "
        f"{pct(c['entry'].get('val_accuracy_mean'))} %, test accuracy {pct(w['accuracy_mean'])} % "
        f"after the sweep's {epochs(m['protocol']['retrain_epochs'])}"
        + (
            f", ONNX Runtime {latency_text(w['latency_ms'].get('onnx'), no_interval=None)} at batch 1."
            if w.get("latency_ms", {}).get("onnx")
            else "."
        )
        + f"\n\n{_rule_text(m, c)}\n\n"
        f"These results were saved before this rule: that run trained longer the network of "
        f"highest validation accuracy in a single run, beta = {b['beta']:g}, "
        f"{'; '.join(short(b['structure']))}"
        + (" (over the budget)" if b["macs"] > c["budget"] else "")
        + f". {trained}"
        + _lead_text(m, b, c)
    )
    return Markdown(text)


def _lead_text(m: dict, b: dict, c: dict) -> str:
    """How the network a run trained longer compared, in the sweep, with the rule's choice."""
    e = next((e for e in m["beta_sweep"] if e["beta"] == b["beta"]), None)
    seeds = [s.get("seed") for s in (e or {}).get("searches", [])]
    if not e or not e.get("warm_start") or b.get("search_seed") not in seeds:
        return ""
    prior = e["warm_start"][seeds.index(b["search_seed"])].get("val_accuracy_mean")
    ours = c["entry"].get("val_accuracy_mean")
    if prior is None or ours is None:
        return ""
    n = images(m, "val")
    tie = accuracy_sign((prior, accuracy_se(prior, n)), (ours, accuracy_se(ours, n))) == 0
    return (
        f" In the sweep its validation accuracy was {pct(prior)} % against {pct(ours)} % for the "
        f"network to deploy: {'within' if tie else 'more than'} two standard errors of the "
        "difference."
    )


# --- multicore ------------------------------------------------------------------------------

COLUMNS = {
    "sequential": "TorchScript, paths in sequence",
    "path-parallel": "TorchScript, paths forked",
    "sessions, sequential": "sessions in sequence",
    "sessions, parallel": "sessions, Python threads",
    "onnx, 1 thread": "ORT, 1 thread",
    "onnx, P intra-op": "ORT, 2 intra-op",
    "ORT_PARALLEL": "ORT_PARALLEL",
}


def parallel_table(m: dict, widths: str) -> Markdown:
    """Latencies of every way of using the cores, one row per network and batch size."""
    rows = []
    for r in (r for r in m.get("parallel_table", []) if r["widths"] == widths):
        rows.append(
            (
                r["network"],
                r["batch"],
                r["syncs"],
                f"{r['flop_bound']:.2f}x",
                *[latency_text(r["latency_ms"].get(k), no_interval=None) for k in COLUMNS],
                ratio_text(r["speedup"].get("path-parallel"), no_interval=None),
                ratio_text(r["speedup"].get("intra-op"), no_interval=None),
            )
        )
    if not rows:
        return Markdown(f"*No measurements at the {widths} widths in {source(m)}.*")
    channels = next(r["channels"] for r in m["parallel_table"] if r["widths"] == widths)
    headers = [
        "network",
        "batch",
        "syncs",
        "bound (FLOPs)",
        *COLUMNS.values(),
        "path-parallel speed-up",
        "intra-op speed-up",
    ]
    return Markdown(
        f"*{widths.capitalize()} widths {channels}, from {source(m)}.*\n\n"
        + markdown_table(rows, headers).data
    )


def _per_sync_ms(free: dict, synced: dict, runner: str) -> float:
    """What one sync point adds to ``runner``'s latency: the balanced network with every
    sync point against the one with none."""
    added = synced["latency_ms"][runner]["median_ms"] - free["latency_ms"][runner]["median_ms"]
    return added / max(synced["syncs"], 1)


def _sync_cost_us(free: dict, synced: dict, runner: str) -> float | None:
    """``_per_sync_ms`` in µs where it is a measurable cost: positive (at least 1 µs) and the
    two latencies' 95 % intervals apart; ``None`` otherwise (zero, negative, or within the
    intervals)."""
    us = 1e3 * _per_sync_ms(free, synced, runner)
    a, b = synced["latency_ms"][runner], free["latency_ms"][runner]
    apart = (
        a.get("low_ms") is not None and b.get("high_ms") is not None and a["low_ms"] > b["high_ms"]
    )
    return us if us >= 1 and apart else None


def _per_sync_text(free: dict, synced: dict) -> str:
    """What each sync point costs the forked and the sequential run, in words."""
    costs = {
        where: _sync_cost_us(free, synced, runner)
        for runner, where in (
            ("path-parallel", "the forked run"),
            ("sequential", "the sequential one"),
        )
    }
    if all(us is None for us in costs.values()):
        text = "each sync point has no measurable cost in either run"
    else:
        text = "each sync point " + " and ".join(
            f"adds {us:.0f} µs to {where}"
            if us is not None
            else f"has no measurable cost in {where}"
            for where, us in costs.items()
        )
    return (
        text + " (a cost counts where the 95 % intervals with and without sync points are apart)."
    )


def multicore_text(m: dict) -> Markdown:
    """The chapter's answer to the multicore question, from the table."""
    rows = m.get("parallel_table")
    if not rows:
        return Markdown("*No multicore measurements in these results.*")
    lines = [f"From {source(m)}:"]
    handoff = m.get("sync_cost", {}).get("handoff_ms")
    if handoff:
        lines.append(
            f"- **What is left of a hand-off:** one fork + wait of a tiny task costs {latency_us_text(handoff)} "
            f"beyond the task itself (the session executor pays Python queues and one session "
            f"call per path and join instead)."
        )
    for widths in ("paper", "course"):
        best = find(rows, widths, "best searched", 1)
        free = find(rows, widths, "balanced 5x5, no sync", 1)
        synced = find(rows, widths, "balanced 5x5, all syncs", 1)
        if not (best and free and synced):
            continue
        s, lat = best["speedup"], best["latency_ms"]
        kernels = lat["sequential"]["median_ms"] / lat["onnx, 1 thread"]["median_ms"]
        lines.append(
            f"- **{widths.capitalize()} widths, batch 1.** The best searched network ({best['syncs']} sync "
            f"points) runs {ratio_text(s['path-parallel'], no_interval=None)} as fast with its paths forked as in sequence "
            f"(FLOP bound {best['flop_bound']:.2f}x). Two intra-op threads in ONNX Runtime give "
            f"{ratio_text(s.get('intra-op'), no_interval=None)}, ORT_PARALLEL {ratio_text(s.get('ORT_PARALLEL'), no_interval=None)}, the session executor "
            f"{ratio_text(s.get('sessions'), no_interval=None)}. In absolute terms the forked run reaches "
            f"{ratio_text(s.get('path-parallel vs onnx'), no_interval=None)} the speed of ONNX Runtime on one thread: PyTorch's "
            f"kernels alone, in sequence, take {kernels:.2f}x ONNX Runtime's time for the same network. "
            f"A balanced network without sync points reaches {ratio_text(free['speedup']['path-parallel'], no_interval=None)}, "
            f"with all {synced['syncs']} {ratio_text(synced['speedup']['path-parallel'], no_interval=None)}: "
            f"{_per_sync_text(free, synced)}" + _twin_text(best)
        )
    lines += [
        f"- Batch {r['batch']}, {r['widths']} widths, best searched network: path-parallel "
        f"{ratio_text(r['speedup']['path-parallel'], no_interval=None)}, intra-op {ratio_text(r['speedup'].get('intra-op'), no_interval=None)}."
        for r in rows
        if r["batch"] > 1 and r["network"] == "best searched"
    ]
    lines.append(target_verdict(rows))
    return Markdown("\n".join(lines))


def _twin_text(row: dict) -> str:
    """What a single path of (almost) the same MACs does, if the row timed one."""
    lat, s = row["latency_ms"], row["speedup"]
    if "single path, onnx, 1 thread" not in lat:
        return ""
    return (
        f" A single path of the same MACs, the network one would deploy without this chapter, "
        f"takes {latency_text(lat['single path, onnx, 1 thread'], no_interval=None)} in ONNX Runtime on one thread and "
        f"{latency_text(lat['single path, onnx, P intra-op'], no_interval=None)} on two; the forked paths run "
        f"{ratio_text(s.get('path-parallel vs single path'), no_interval=None)} as fast as the first, two intra-op threads "
        f"on the paths {ratio_text(s.get('intra-op vs single path'), no_interval=None)} as fast as the second."
    )


def target_verdict(rows: list[dict]) -> str:
    """Met or missed, the course's target (path-parallel >= 1.6x over sequential, batch
    1, best searched network, paper's widths), and the measured reasons for a miss."""
    goal = TARGETS["parallel_speedup_b1_paper_widths"]
    best = find(rows, "paper", "best searched", 1)
    nosync = find(rows, "paper", "best searched, no sync", 1)
    free = find(rows, "paper", "balanced 5x5, no sync", 1)
    if best is None:
        return f"- The target ({goal}x at the paper's widths) was not measured."
    got = best["speedup"]["path-parallel"]
    if got["median"] >= goal:
        return f"- **Target met:** {ratio_text(got, no_interval=None)} against {goal}x for the best searched network at the paper's widths."
    reasons = []
    if best["flop_bound"] < goal:
        reasons.append(
            f"its paths are unbalanced: even with free hand-offs it could reach only {best['flop_bound']:.2f}x"
        )
    if nosync is not None and best["syncs"]:
        reasons.append(
            f"its {best['syncs']} sync points: without them the same ops reach {ratio_text(nosync['speedup']['path-parallel'], no_interval=None)}"
        )
    if free is not None:
        reasons.append(
            f"what is left per stage (hand-off, waiting, shared caches): a balanced network without any sync "
            f"point reaches {ratio_text(free['speedup']['path-parallel'], no_interval=None)} of its {free['flop_bound']:.2f}x bound"
        )
    return (
        f"- **Target missed:** {ratio_text(got, no_interval=None)} against {goal}x. Measured reasons: "
        + "; ".join(reasons)
        + "."
    )


# --- targets and the saved run ------------------------------------------------------------


def headline(m: dict) -> dict:
    """The headline numbers the chapter's :data:`TARGETS` are checked on (the sections
    :meth:`~.experiments.ChapterRun.best_network` and ``multicore`` record them): the best
    derived network's test accuracy (fraction) and its path-parallel speed-up at batch 1
    (ratio of medians, with its interval) at the paper's and the course's widths."""
    keys = (
        "best_test_accuracy",
        "parallel_speedup_b1_paper_widths",
        "parallel_speedup_b1_paper_widths_interval",
        "parallel_speedup_b1",
        "parallel_speedup_b1_interval",
    )
    return {k: m[k] for k in keys if k in m}


def targets(m: dict, wall_time_s: float | None) -> Markdown:
    rows = []
    acc = m.get("best_test_accuracy")
    if acc is not None:
        rows.append(
            (
                "best derived network, test accuracy (%)",
                pct(acc),
                "84",
                ">= 84",
                "met" if acc >= TARGETS["best_test_accuracy"] else "missed",
            )
        )
    sp = m.get("parallel_speedup_b1_paper_widths")
    if sp is not None:
        interval = m.get("parallel_speedup_b1_paper_widths_interval")
        rows.append(
            (
                "path-parallel speed-up, batch 1, paper's widths, best network",
                ratio_text({"median": sp, "interval": interval}, no_interval=None),
                "-",
                ">= 1.6x",
                "met" if sp >= TARGETS["parallel_speedup_b1_paper_widths"] else "missed",
            )
        )
    elif m.get("parallel_speedup_b1") is not None:
        value = m["parallel_speedup_b1"]
        r = (
            value
            if isinstance(value, dict)
            else {"median": value, "interval": m.get("parallel_speedup_b1_interval")}
        )
        rows.append(
            (
                "path-parallel speed-up, batch 1, course's widths (no paper-width run saved)",
                ratio_text(r, no_interval=None),
                "-",
                ">= 1.6x",
                "met" if r["median"] >= TARGETS["parallel_speedup_b1_paper_widths"] else "missed",
            )
        )
    if wall_time_s is not None:
        rows.append(
            (
                "wall time of the chapter (min)",
                f"{wall_time_s / 60:.1f}",
                "-",
                "<= 90",
                "met" if wall_time_s / 60 <= TARGETS["wall_time_min"] else "missed",
            )
        )
    return Markdown(
        caption(m) + "\n\n" + markdown_table(rows, ["", "ours", "paper", "course target", ""]).data
    )


def report(m: dict, wall_time_s: float | None = None) -> list[Markdown]:
    """Every table and sentence the metrics hold, in the chapter's order (what the saved
    full run shows at the end of the chapter)."""
    parts = [Markdown(caption(m))]
    if "lr_check" in m:
        parts.append(lr_table(m))
    parts += [sync_configs_table(m), fig7_orderings(m), structures_table(m), sweep_table(m)]
    if any(e.get("searches") and len(e["searches"]) > 1 for e in m["beta_sweep"]):
        parts.append(stability_text(m))
    parts += [warm_start_text(m), fig8_orderings(m)]
    if "sync_cost" in m:
        parts.append(sync_cost_table(m))
    if "latency_cost_sweep" in m:
        parts.append(latency_sweep_table(m))
    if "best_network" in m:
        parts.append(best_text(m))
    if m.get("parallel_table"):
        parts += [parallel_table(m, "paper"), parallel_table(m, "course"), multicore_text(m)]
    parts.append(targets(m, wall_time_s))
    return parts

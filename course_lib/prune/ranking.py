"""How the selection ranks candidates from their seeds' validation accuracies: the mean over
seeds, candidates of equal cost only, and what the ranking can conclude (:func:`verdict`).
Read by :mod:`.selection` while it runs and by :mod:`.summary` when it draws the tables.
"""

from __future__ import annotations

import statistics

EQUAL_COST = 1.02
"""A candidate is eligible when it keeps at most 2 % more parameters than the smallest."""


def values(row: dict, metric: str = "val_accuracy") -> list[float]:
    """A candidate's accuracies, one per seed (results saved before the multi-seed
    selection hold a single number)."""
    value = row[metric]
    return list(value) if isinstance(value, list) else [value]


def mean(row: dict, metric: str = "val_accuracy") -> float:
    return statistics.fmean(values(row, metric))


def eligible(table: dict) -> list[str]:
    """Candidates of equal cost (parameters within :data:`EQUAL_COST` of the smallest) that
    are not duplicates of an earlier one, best mean first."""
    smallest = min(row["params"] for row in table.values())
    names = [
        name
        for name, row in table.items()
        if row["params"] <= EQUAL_COST * smallest and not row.get("same_as")
    ]
    return sorted(names, key=lambda name: -mean(table[name]))


def verdict(table: dict) -> dict:
    """The best eligible candidate, the runner-up, the mean difference (points), on how many
    seeds the best beat the runner-up, and the largest per-candidate spread (points,
    standard deviation over seeds): what the selection can conclude."""
    ranking = eligible(table)
    best = ranking[0]
    out = {"best": best, "runner_up": None, "difference_points": None, "wins": None}
    scores = [values(table[name]) for name in ranking]
    out["seeds"] = len(scores[0])
    out["spread_points"] = max(
        (100 * statistics.stdev(s) for s in scores if len(s) > 1), default=None
    )
    if len(ranking) > 1:
        runner_up = ranking[1]
        a, b = values(table[best]), values(table[runner_up])
        out["runner_up"] = runner_up
        out["difference_points"] = 100 * (statistics.fmean(a) - statistics.fmean(b))
        out["wins"] = sum(x > y for x, y in zip(a, b, strict=True))
    return out

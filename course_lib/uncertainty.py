"""What counts as a difference between two test accuracies: the course's one rule.

An accuracy ``p`` (a fraction) measured on ``n`` test images has the binomial standard
error ``sqrt(p (1 - p) / n)``; two accuracies differ only when their gap exceeds
:data:`TIE_STANDARD_ERRORS` standard errors of the difference, ``sqrt(se_a^2 + se_b^2)``
(the two treated as independent). Smaller gaps are ties. Speed-ups have their own rule in
:mod:`course_lib.measure` (an interval that excludes 1).

When both classifiers ran on the **same** images, a paired test is sharper: only the images
on which they disagree carry information. :func:`mcnemar` counts them both ways and gives
the exact two-sided p-value of McNemar's test (McNemar, 1947): under "equally accurate",
each disagreement is a fair coin.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

#: Gaps under this many standard errors of the difference are ties.
TIE_STANDARD_ERRORS = 2.0


def binomial_se(p: float, n: int) -> float:
    """Standard error of an accuracy ``p`` (a fraction) measured on ``n`` images."""
    return math.sqrt(p * (1 - p) / n)


def difference_se(se_a: float, se_b: float) -> float:
    """Standard error of the difference of two independent estimates."""
    return math.hypot(se_a, se_b)


def accuracy_sign(a: tuple[float, float], b: tuple[float, float]) -> int:
    """``a`` and ``b`` are ``(accuracy, standard error)`` on the same test set: +1 when ``a``
    is higher by more than :data:`TIE_STANDARD_ERRORS` standard errors of the difference,
    -1 when lower, 0 a tie."""
    diff = a[0] - b[0]
    if abs(diff) <= TIE_STANDARD_ERRORS * difference_se(a[1], b[1]):
        return 0
    return 1 if diff > 0 else -1


#: A paired difference counts when McNemar's p-value is below this.
PAIRED_ALPHA = 0.05


@dataclass(frozen=True)
class PairedTest:
    """Two classifiers on the same ``images``: ``a_only`` images only ``a`` gets right,
    ``b_only`` only ``b``; ``difference`` = accuracy of ``a`` minus ``b`` (a fraction);
    ``statistic`` = McNemar's chi-square with continuity correction,
    ``(|a_only - b_only| - 1)^2 / (a_only + b_only)`` (0 when they never disagree);
    ``p_value`` = the exact two-sided binomial test on the disagreements."""

    images: int
    a_only: int
    b_only: int
    difference: float
    statistic: float
    p_value: float

    def separates(self, alpha: float = PAIRED_ALPHA) -> bool:
        """Whether the two accuracies differ at level ``alpha``."""
        return self.p_value < alpha

    def as_dict(self) -> dict:
        return asdict(self)


def binomial_two_sided_p(k: int, n: int) -> float:
    """P(a count at least as far from n / 2 as ``k``) for Binomial(``n``, 1/2), both tails
    (1 when ``n`` is 0); summed in log space, exact for any ``n``."""
    if n == 0:
        return 1.0
    low = min(k, n - k)
    log_terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2)
        for i in range(low + 1)
    ]
    top = max(log_terms)
    tail = math.exp(top) * sum(math.exp(t - top) for t in log_terms)
    return min(1.0, 2 * tail)


def mcnemar(correct_a: torch.Tensor, correct_b: torch.Tensor) -> PairedTest:
    """McNemar's test of two classifiers from their per-image correctness (booleans, one
    entry per test image, the same images in the same order)."""
    a, b = torch.as_tensor(correct_a).bool().flatten(), torch.as_tensor(correct_b).bool().flatten()
    if a.shape != b.shape or a.numel() == 0:
        raise ValueError(
            f"a paired test needs both classifiers' results on the same images: got "
            f"{a.numel()} and {b.numel()} entries"
        )
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    disagree = a_only + b_only
    statistic = (abs(a_only - b_only) - 1) ** 2 / disagree if disagree else 0.0
    return PairedTest(
        images=a.numel(),
        a_only=a_only,
        b_only=b_only,
        difference=(a_only - b_only) / a.numel(),
        statistic=float(statistic),
        p_value=binomial_two_sided_p(a_only, disagree),
    )


def holm_separated(p_values: dict[str, float], alpha: float = PAIRED_ALPHA) -> set[str]:
    """The tests Holm's step-down correction keeps at family-wise level ``alpha``: sort the
    ``m`` p-values, compare the ``i``-th smallest (from 0) with ``alpha / (m - i)`` and stop
    at the first that is not below it. With several methods each tested against one
    baseline, some p < 0.05 are expected by chance alone; these are the ones that are not."""
    kept = set()
    ordered = sorted(p_values, key=lambda k: (p_values[k], k))
    for i, name in enumerate(ordered):
        if p_values[name] >= alpha / (len(ordered) - i):
            break
        kept.add(name)
    return kept

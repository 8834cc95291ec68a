"""What counts as a difference between two test accuracies: the course's one rule.

An accuracy ``p`` (a fraction) measured on ``n`` test images has the binomial standard
error ``sqrt(p (1 - p) / n)``; two accuracies differ only when their gap exceeds
:data:`TIE_STANDARD_ERRORS` standard errors of the difference, ``sqrt(se_a^2 + se_b^2)``
(the two treated as independent). Smaller gaps are ties. Speed-ups have their own rule in
:mod:`course_lib.measure` (an interval that excludes 1).
"""

from __future__ import annotations

import math

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

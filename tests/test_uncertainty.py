"""The course's rules for differences between accuracies: independent and paired."""

import itertools
import math

import pytest
import torch

from course_lib.uncertainty import (
    PAIRED_ALPHA,
    accuracy_sign,
    binomial_se,
    binomial_two_sided_p,
    mcnemar,
)


def brute_force_p(k: int, n: int) -> float:
    """Every outcome of n fair coins at least as unlikely as k heads, summed."""
    if n == 0:
        return 1.0
    pmf = [math.comb(n, i) / 2**n for i in range(n + 1)]
    return min(1.0, sum(p for p in pmf if p <= pmf[k] * (1 + 1e-12)))


@pytest.mark.parametrize("n", [0, 1, 2, 7, 10, 31])
def test_the_exact_p_value_is_the_sum_over_outcomes_as_unlikely(n):
    for k in range(n + 1):
        assert binomial_two_sided_p(k, n) == pytest.approx(brute_force_p(k, n), rel=1e-9)


def test_the_p_value_stays_exact_for_thousands_of_disagreements():
    # 1,100 against 900 of 2,000 disagreements: z = 200 / sqrt(2000) = 4.47, p about 8e-6
    p = binomial_two_sided_p(900, 2000)
    assert 5e-6 < p < 1.2e-5
    assert binomial_two_sided_p(1000, 2000) == 1.0


def test_mcnemar_counts_the_disagreements_both_ways():
    a = torch.tensor([1, 1, 1, 0, 0, 1, 0, 1], dtype=torch.bool)
    b = torch.tensor([1, 0, 0, 0, 1, 1, 0, 0], dtype=torch.bool)
    test = mcnemar(a, b)
    assert (test.images, test.a_only, test.b_only) == (8, 3, 1)
    assert test.difference == pytest.approx((5 - 3) / 8)  # accuracy 5/8 against 3/8
    assert test.statistic == pytest.approx((3 - 1 - 1) ** 2 / 4)
    assert test.p_value == pytest.approx(brute_force_p(1, 4))
    assert not test.separates()
    assert mcnemar(b, a).difference == -test.difference


def test_agreeing_classifiers_are_never_separated():
    same = torch.rand(100, generator=torch.Generator().manual_seed(0)) > 0.3
    test = mcnemar(same, same)
    assert (test.a_only, test.b_only, test.p_value, test.statistic) == (0, 0, 1.0, 0.0)


def test_a_paired_test_separates_what_the_independent_rule_calls_a_tie():
    # two networks that agree on all but 60 of 10,000 images, 45 of them won by the first:
    # 0.3 points apart, far inside two independent standard errors, but p < 0.001 paired
    n = 10_000
    a = torch.zeros(n, dtype=torch.bool)
    a[:8000] = True
    b = a.clone()
    b[:45] = False  # a right, b wrong
    b[8000:8015] = True  # b right, a wrong
    acc_a, acc_b = a.float().mean().item(), b.float().mean().item()
    independent = accuracy_sign((acc_a, binomial_se(acc_a, n)), (acc_b, binomial_se(acc_b, n)))
    assert independent == 0
    paired = mcnemar(a, b)
    assert (paired.a_only, paired.b_only) == (45, 15)
    assert paired.p_value < 0.001 and paired.separates(PAIRED_ALPHA)


def test_mcnemar_refuses_results_on_different_images():
    with pytest.raises(ValueError, match="same images"):
        mcnemar(torch.ones(5, dtype=torch.bool), torch.ones(6, dtype=torch.bool))
    with pytest.raises(ValueError, match="same images"):
        mcnemar(torch.ones(0, dtype=torch.bool), torch.ones(0, dtype=torch.bool))


def test_every_split_of_a_few_disagreements_is_symmetric():
    for a_only, b_only in itertools.product(range(6), repeat=2):
        n = a_only + b_only
        assert binomial_two_sided_p(a_only, n) == pytest.approx(binomial_two_sided_p(b_only, n))


def test_holm_keeps_only_what_survives_the_number_of_tests():
    from course_lib.uncertainty import holm_separated

    # chapter 5b's saved run: nine methods against plain STE; 0.046 < 0.05 alone, but it is the
    # seventh smallest of nine and Holm compares it with 0.05 / 3
    p = {"a": 0.0, "b": 1e-100, "c": 1e-80, "d": 5e-6, "e": 1e-4, "f": 0.0017, "g": 0.046}
    p |= {"h": 0.23, "i": 0.74}
    assert holm_separated(p) == {"a", "b", "c", "d", "e", "f"}
    assert holm_separated({"x": 0.04}) == {"x"}
    assert holm_separated({"x": 0.04, "y": 0.03}) == set()  # 0.03 is not below 0.05 / 2

"""ReCU, the rectified clamp unit (Xu et al., 2021; seed 004, eq. 13-28).

Latent weights far out in the tails of their distribution rarely change sign during
training ("dead weights"). ReCU clamps them to the ``tau`` and ``1 - tau`` quantiles before
binarization (eq. 13). Latent weights are close to a zero-mean Laplace distribution of
scale ``b``, estimated as ``b = mean |W|``, whose ``tau`` quantile has a closed form
(eq. 14-15): ``Q(tau) = -b ln(2 - 2 tau)`` (for ``tau >= 1/2``; ``Q(1 - tau) = -Q(tau)``).

Under that model this module computes, as functions of ``tau``:

- ``alpha(tau) = E|ReCU(W)|`` (eq. 16-18), the XNOR scale of the clamped weights;
- the quantization error ``QE(tau)`` of eq. 8 after the clamp (eq. 19-22): as the report
  prints it (minimum near ``tau = 0.82``), as we solve the integral, numerically and on
  sampled weights (the last three agree, and rise with ``tau``; see the chapter);
- the information entropy ``H(tau)`` of the clamped weights (eq. 23), closed form and numerical;

and the two training-time pieces: weight standardization to a chosen ``b*`` (eq. 24-27) and
the exponential schedule of ``tau`` from ``tau_s`` to ``tau_e`` (eq. 28).
"""

from __future__ import annotations

import math

import numpy as np
import torch


def check_tau(tau: float) -> float:
    if not 0.5 <= tau <= 1.0:
        raise ValueError(f"tau must be in [0.5, 1] (a quantile above the median), got {tau}")
    return tau


def laplace_quantile(tau: float, b: float | torch.Tensor) -> float | torch.Tensor:
    """Eq. 15: the ``tau`` quantile of a zero-mean Laplace of scale ``b``: ``-b ln(2 - 2 tau)``.
    ``tau = 1`` gives ``inf`` (no clamp)."""
    check_tau(tau)
    if tau == 1.0:
        return b * math.inf
    return -b * math.log(2 - 2 * tau)


def recu_clamp(
    w: torch.Tensor, tau: float | torch.Tensor, estimate: str = "laplace"
) -> torch.Tensor:
    """Eq. 13: clamp ``w`` to ``[Q(1 - tau), Q(tau)]`` (``tau = 1``: unchanged).

    ``estimate="laplace"``: ``Q`` from eq. 15 with ``b = mean |w|`` over the whole tensor
    (cheap, the paper's choice; ``tau`` may be a 0-d tensor, so that a compiled training
    step does not recompile when the schedule moves it); ``"empirical"``: the exact sample
    quantiles of ``w`` (``torch.quantile``). Clamped weights get no gradient.
    """
    if estimate == "laplace":
        tau = torch.as_tensor(tau, dtype=torch.float32, device=w.device)
        b = w.detach().abs().mean().float()
        q = torch.where(tau < 1, -b * torch.log(2 - 2 * tau), torch.inf).to(w.dtype)
        return torch.minimum(torch.maximum(w, -q), q)
    if estimate == "empirical":
        tau = float(check_tau(float(tau)))
        if tau == 1.0:
            return w
        flat = w.detach().flatten().float()
        low, high = torch.quantile(flat, torch.tensor([1 - tau, tau], dtype=flat.dtype))
        return w.clamp(low.item(), high.item())
    raise ValueError(f"unknown estimate {estimate!r}: use 'laplace' or 'empirical'")


def standardize(w: torch.Tensor, b_star: float, eps: float = 1e-8) -> torch.Tensor:
    """Eq. 24-27: ``W' = W / (sigma(W) / (sqrt(2) b*))`` per output channel, so that the
    Laplace scale of every channel (``sigma / sqrt(2)``) becomes ``b*``."""
    dims = tuple(range(1, w.dim()))
    sigma = w.std(dim=dims, keepdim=True)
    return w * (math.sqrt(2) * b_star / (sigma + eps))


def tau_schedule(step: int, total_steps: int, tau_start: float, tau_end: float) -> float:
    """Eq. 28: ``tau_i = (tau_e - tau_s) / (e - 1) * e^(i / I) + (e tau_s - tau_e) / (e - 1)``,
    rising from ``tau_s`` (step 0) to ``tau_e`` (step ``I = total_steps``), fastest at the end."""
    check_tau(tau_start)
    check_tau(tau_end)
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    i = min(max(step, 0), total_steps) / total_steps
    e = math.e
    return (tau_end - tau_start) / (e - 1) * math.exp(i) + (e * tau_start - tau_end) / (e - 1)


# --- the Laplace model of eq. 16-23 ----------------------------------------------------------
#
# With t = e^(-Q/b) = 2 - 2 tau, every quantity below has a short closed form. The report's
# printed eq. 22 differs from the integral it stands for (eq. 19) by exactly 2 b^2 t^3; that
# printed form is the one with a minimum near tau = 0.82 (:func:`qe_printed`). Integrating
# eq. 19 numerically, or sampling weights, gives :func:`qe_of_tau`, which rises with tau.


def alpha_of_tau(tau: float, b: float = 1.0) -> float:
    """Eq. 16-18: ``E|ReCU(W)| = b - (Q + b) e^(-Q/b) + 2 Q (1 - tau)`` for Laplace ``W``
    (which simplifies to ``b (2 tau - 1)``)."""
    if tau == 1.0:
        return b
    q = laplace_quantile(tau, b)
    return b - (q + b) * math.exp(-q / b) + 2 * q * (1 - tau)


def qe_printed(tau: float, b: float = 1.0) -> float:
    """Eq. 22 as the report prints it: ``(alpha - b)^2 (1 + e^(-Q/b)) + b^2 - ((b + Q)^2 -
    2 alpha Q) e^(-Q/b) + 2 (1 - tau)(Q - alpha)^2``. Its minimum is near ``tau = 0.82``."""
    if tau == 1.0:
        return b * b
    q, a = laplace_quantile(tau, b), alpha_of_tau(tau, b)
    tail = math.exp(-q / b)
    return (
        (a - b) ** 2 * (1 + tail)
        + b * b
        - ((b + q) ** 2 - 2 * a * q) * tail
        + 2 * (1 - tau) * (q - a) ** 2
    )


def qe_of_tau(tau: float, b: float = 1.0) -> float:
    """Eq. 19 (the quantization error of ``alpha sign(ReCU(W))`` for Laplace ``W``), solved
    by us: ``(alpha - b)^2 + b^2 - 2 b t (Q + b - alpha) = b^2 (1 - t^2 + 2 t ln t)`` with
    ``t = 2 - 2 tau``. Agrees with :func:`qe_numerical` and with sampled weights."""
    if tau == 1.0:
        return b * b
    t = 2 - 2 * tau
    return b * b * (1 - t * t + 2 * t * math.log(t))


def clamped_laplace(tau: float, b: float, points: int = 200_001):
    """The distribution of ``ReCU(W)`` for Laplace ``W``: a grid on ``(-Q, Q)`` with the
    density there, ``Q``, and the mass ``1 - tau`` of each of the two atoms at ``+-Q``."""
    q = laplace_quantile(tau, b) if tau < 1.0 else 40.0 * b
    w = np.linspace(-q, q, points)
    return w, np.exp(-np.abs(w) / b) / (2 * b), q, 1.0 - tau


def qe_numerical(tau: float, b: float = 1.0) -> float:
    """Eq. 19 by numerical integration (trapezoid rule) over the clamped distribution,
    without any closed form."""
    w, density, q, atom = clamped_laplace(tau, b)
    alpha = np.trapezoid(np.abs(w) * density, w) + 2 * atom * q
    inner = np.trapezoid(density * (w - alpha * np.sign(w)) ** 2, w)
    return float(inner + 2 * atom * (q - alpha) ** 2)


def qe_sampled(w: torch.Tensor, tau: float) -> float:
    """Eq. 19 on actual weights: ``mean((ReCU(w) - alpha sign(ReCU(w)))^2)`` with the
    empirical quantiles and ``alpha = mean |ReCU(w)|`` (one scale for the tensor)."""
    clamped = recu_clamp(w.detach().float().flatten(), tau, "empirical")
    alpha = clamped.abs().mean()
    return float((clamped - alpha * torch.where(clamped >= 0, 1.0, -1.0)).pow(2).mean())


def entropy_of_tau(tau: float, b: float = 1.0) -> float:
    """Eq. 23 in closed form: the entropy (nats) of ``ReCU(W)`` for Laplace ``W``,
    ``2 (ln b + 1) tau + ln(2 / b) - 1``: linear in ``tau``, rising only if ``b > 1/e``."""
    return 2 * (math.log(b) + 1) * tau + math.log(2 / b) - 1


def entropy_numerical(tau: float, b: float = 1.0) -> float:
    """Eq. 23 by numerical integration: the differential entropy of the continuous part on
    ``(-Q, Q)`` plus ``-p ln p`` of the two atoms of mass ``p = 1 - tau``."""
    w, density, _, atom = clamped_laplace(tau, b)
    continuous = -np.trapezoid(density * np.log(density), w)
    discrete = -2 * atom * math.log(atom) if atom > 0 else 0.0
    return float(continuous + discrete)


def argmin_tau(qe, b: float = 1.0, grid: int = 5001) -> float:
    """The ``tau`` in [0.5, 1) where ``qe(tau, b)`` is smallest, on a fine grid."""
    taus = np.linspace(0.5, 0.9999, grid)
    return float(taus[int(np.argmin([qe(t, b) for t in taus]))])


def analysis(
    taus: np.ndarray | None = None, b_values: tuple[float, ...] = (0.2, 1 / math.e, 0.7, 2.0)
) -> dict:
    """QE(tau) three ways (the report's printed eq. 22, ours, numerical) for ``b = 1``, the
    entropy for several ``b`` and the minimizers: the chapter's ReCU figure, as plain lists."""
    taus = np.linspace(0.5, 0.999, 200) if taus is None else taus
    grid = [float(t) for t in taus]
    return {
        "tau": grid,
        "qe_printed": [qe_printed(t) for t in grid],
        "qe_solved": [qe_of_tau(t) for t in grid],
        "qe_numerical": [qe_numerical(t) for t in grid[::10]],
        "tau_numerical": grid[::10],
        "entropy": {f"{b:.3g}": [entropy_of_tau(t, b) for t in grid] for b in b_values},
        "argmin_printed": argmin_tau(qe_printed),
        "argmin_solved": argmin_tau(qe_of_tau),
        "max_gap_solved_numerical": max(
            abs(qe_of_tau(t) - qe_numerical(t)) for t in np.linspace(0.5, 0.999, 25)
        ),
    }


def sampled_curve(weights: list[torch.Tensor], taus: list[float]) -> list[float]:
    """QE(tau) (eq. 19) of actual weight tensors, each scaled to ``b = mean|w| = 1`` and
    averaged over the tensors: the trained network's version of the curve."""
    curve = []
    for t in taus:
        errors = [qe_sampled(w / w.abs().mean(), t) for w in weights]
        curve.append(float(np.mean(errors)))
    return curve

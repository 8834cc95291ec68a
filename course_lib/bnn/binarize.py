"""Binarization: ``sign`` and the gradients it is trained with (seed 004, eq. 2-4 and 9).

``sign`` maps a real number to -1 or +1 (eq. 2: **+1 at zero**, unlike ``torch.sign``, which
returns 0 there). We read it off the IEEE sign bit (``copysign(1, x)``): +1 for ``x >= 0``,
-1 for ``x < 0``; the one float where this differs from eq. 2 is ``-0.0`` (-1). The packed
kernel (:mod:`.kernel`) stores exactly that bit, so the two agree on every input. It is also
the fast way: on CPUs, a comparison followed by ``torch.where`` costs about ten times more
than ``copysign``. Its derivative is zero almost everywhere, so backpropagation would never
move a latent weight. The *straight-through estimator* (STE, eq. 9) keeps the forward
``sign`` and replaces its derivative in the backward pass by a surrogate:

- :class:`SignSTE`: the clipped identity of Hubara et al. (2016): ``d sign(x)/dx ~ 1`` where
  ``|x| <= 1`` and 0 outside (the derivative of ``hardtanh``);
- :class:`ApproxSign`: Bi-Real Net's piecewise-quadratic approximation (Liu et al., 2018),
  whose derivative ``2 - 2|x|`` (for ``|x| < 1``) is a triangle: closer to the true
  (Dirac) derivative of ``sign`` than the box of the clipped identity;
- :class:`IdentitySTE`: the plain estimator of eq. 9 (``dL/dw_real ~ dL/dw_binary``), used
  for the latent weights, which ReCU clamps already.
"""

from __future__ import annotations

import torch


def sign(x: torch.Tensor) -> torch.Tensor:
    """Eq. 2: +1 where ``x >= 0``, -1 where ``x < 0`` (the sign bit; same dtype as ``x``)."""
    return torch.ones_like(x).copysign_(x)


class SignSTE(torch.autograd.Function):
    """``sign`` forward; clipped identity backward: ``grad * 1{|x| <= 1}`` (Hubara et al.)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return sign(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


class ApproxSign(SignSTE):
    """``sign`` forward (that of :class:`SignSTE`); Bi-Real's ApproxSign backward:
    ``grad * max(2 - 2|x|, 0)``.

    ApproxSign is ``2x + x^2`` on [-1, 0), ``2x - x^2`` on [0, 1) and ``sign`` outside: its
    derivative is a triangle of area 2, peaked at 0 (where ``sign`` jumps).
    """

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * (2 - 2 * x.abs()).clamp_min(0).to(grad.dtype)


class IdentitySTE(torch.autograd.Function):
    """``sign`` forward; identity backward (eq. 9), for latent weights."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return sign(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


ESTIMATORS: dict[str, type[torch.autograd.Function]] = {
    "ste": SignSTE,
    "approx": ApproxSign,
    "identity": IdentitySTE,
}


def binarize(x: torch.Tensor, estimator: str = "ste") -> torch.Tensor:
    """``sign(x)`` with the backward pass of ``estimator`` (one of :data:`ESTIMATORS`)."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}: use one of {', '.join(ESTIMATORS)}")
    return ESTIMATORS[estimator].apply(x)


def approx_sign_forward(x: torch.Tensor) -> torch.Tensor:
    """The smooth function whose derivative ApproxSign uses (for plots): ``2x -+ x^2`` on
    (-1, 1), ``sign`` outside."""
    inside = 2 * x - x * x.abs()
    return torch.where(x.abs() < 1, inside, sign(x))


def surrogate_curves(x: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
    """Forward value and backward gradient of every estimator on the points ``x``
    (measured by autograd, not written down): ``{name: {"forward", "gradient"}}``."""
    curves = {}
    for name in ("ste", "approx"):
        point = x.detach().clone().requires_grad_(True)
        out = binarize(point, name)
        (grad,) = torch.autograd.grad(out.sum(), point)
        curves[name] = {"forward": out.detach(), "gradient": grad}
    return curves

"""Uncertainty-aware BNN: the certainty-aware sign (seed 004, eq. 36-38).

A latent weight close to zero can change sign at every small step: its binary value
oscillates and the optimization direction it gives is unstable. Far from zero the sign is
settled. The method measures this as an *uncertainty* per weight and refuses to flip the
weights it is unsure about:

- eq. 36: the uncertainty of a weight ``x`` is a Gaussian bump ``f(x) = exp(-x^2 / (2
  sigma^2))``: 1 at zero, falling towards 0 for ``|x| >> sigma``. (The report writes the
  normal density, with its factor ``1 / (sqrt(2 pi) sigma)``; we drop that constant so that
  ``f`` lies in (0, 1] and eq. 37 stays a probability. ``sigma`` is a hyper-parameter, by
  default the standard deviation of the layer's latent weights at that step.)
- eq. 37: over training the uncertainty accumulates across the last iterations: for the
  first ``m`` steps ``f^(x_t) = f(x_t)``; afterwards ``f^(x_t) = 1 - prod_{i=t-m}^{t}
  (1 - f(x_i))``, the chance that the weight was uncertain at least once in the window
  (the current step and the ``m`` before it);
- eq. 38: the certainty-aware sign ``C(x_t) = sign(x_t)`` where ``f^(x_t) <= Delta`` (the
  weight is certain enough), and the previous binary value ``C(x_{t-1})`` otherwise.

:class:`UncertaintyTracker` holds the window and the previous binary values of one weight
tensor, applies eq. 38 (forward) with the identity straight-through gradient of eq. 9
(backward) and counts the flips: how many binary values changed at the last step, and how
many sign changes it held back.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .binarize import sign


def gaussian_uncertainty(x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """Eq. 36 without its normalizing constant: ``exp(-x^2 / (2 sigma^2))``, in (0, 1]."""
    return torch.exp(-x.pow(2) / (2 * torch.as_tensor(sigma, dtype=x.dtype) ** 2))


class UncertaintyTracker(nn.Module):
    """Eq. 37-38 for one latent weight tensor of shape ``shape``.

    ``window``: ``m`` of eq. 37; ``threshold``: ``Delta`` of eq. 38, in (0, 1];
    ``sigma``: the width of eq. 36 (``None``: the weights' standard deviation at each step).
    Call it as ``b = tracker(w)`` once per training step. Buffers: ``history`` (``f`` of the
    last ``m + 1`` steps, one flattened row each), ``previous`` (the binary values of the last step), ``steps``,
    ``flips`` / ``held`` (binary values changed / sign changes refused at the last step) and
    ``total_flips``.
    """

    def __init__(
        self,
        shape: torch.Size | tuple[int, ...],
        window: int = 5,
        threshold: float = 0.5,
        sigma: float | None = None,
    ) -> None:
        super().__init__()
        if window < 1:
            raise ValueError(f"window (m of eq. 37) must be >= 1, got {window}")
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold (Delta of eq. 38) must be in (0, 1], got {threshold}")
        self.window, self.threshold, self.sigma = window, threshold, sigma
        # flat rows: a rank-5 buffer would stop ``model.to(memory_format=channels_last)``
        self.register_buffer("history", torch.zeros(window + 1, math.prod(shape)))
        self.register_buffer("previous", torch.zeros(*shape))
        for name in ("steps", "flips", "held", "total_flips"):
            self.register_buffer(name, torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, w: torch.Tensor) -> torch.Tensor:
        """Record this step's ``f(w)`` and return ``f^(w_t)`` of eq. 37."""
        if w.shape != self.previous.shape:
            raise ValueError(
                f"expected weights of shape {tuple(self.previous.shape)}, got {tuple(w.shape)}"
            )
        w = w.detach().float()
        sigma = self.sigma if self.sigma is not None else w.std().clamp_min(1e-12)
        f = gaussian_uncertainty(w, sigma)
        self.history[int(self.steps) % (self.window + 1)] = f.flatten()
        self.steps += 1
        if int(self.steps) <= self.window:
            return f
        return (1 - torch.prod(1 - self.history, dim=0)).view_as(f)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """Eq. 38: ``sign(w)`` where ``f^(w) <= threshold``, the previous binary value
        elsewhere (``sign(w)`` everywhere at the first step). The gradient passes to ``w``
        unchanged (eq. 9)."""
        uncertainty = self.update(w)
        with torch.no_grad():
            proposed = sign(w.detach()).float()
            if int(self.steps) == 1:
                binary = proposed
                self.flips.zero_()
                self.held.zero_()
            else:
                certain = uncertainty <= self.threshold
                binary = torch.where(certain, proposed, self.previous)
                self.flips.copy_((binary != self.previous).sum())
                self.held.copy_(((proposed != self.previous) & ~certain).sum())
                self.total_flips += self.flips
            self.previous.copy_(binary)
        return binary.to(w.dtype) + (w - w.detach())

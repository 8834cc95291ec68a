"""Label-aware representation approximation (seed 004, eq. 32-35).

The latent weights define a real-valued network (:mod:`.latent_bn`, the latent path) whose
penultimate features (the pooled vector the classifier reads) carry more information than
the binary network's. This loss makes the binary features ``Y`` imitate the latent ones
``Y~`` (or a full-precision teacher's), with ``phi(a, b) = ||a - b||^2``:

- **per sample** (eq. 32): ``phi(Y~_i, Y_i)``, each image's binary feature towards its own
  latent feature;
- **across samples of the same label** (eq. 33): for every other sample ``j`` of the batch
  with the same label as ``i`` (the set ``I(i)``), ``phi(Y_i, Y_j) + phi(Y~_i, Y_j) +
  phi(Y_i, Y~_j)``: binary features of one class are pulled together, and towards the
  latent features of that class, which shrinks the spread within a class;
- ``L_rep = K sum_i [...]``, with ``K`` a normaliser (here ``1 / N``, a mean over the batch).

The training loss (eq. 35) is ``L = L_ce + lambda L_rep``. The report's best CIFAR-10 entry
adds knowledge distillation from a full-precision teacher ("label-aware + KD"): here the
``L_ce`` part is :func:`~.training.distillation_loss`, which is plain cross-entropy when
``config.distill == 0`` and mixes in the teacher's KL term otherwise. Eq. 34 writes out the
gradient of ``L_rep`` with respect to ``Y_i``; autograd computes it.
"""

from __future__ import annotations

import torch

from .training import BinaryTrainConfig, distillation_loss


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``phi(a_i, b_j) = ||a_i - b_j||^2`` for every pair of rows, shape ``(N, N)``."""
    return (a.unsqueeze(1) - b.unsqueeze(0)).pow(2).sum(dim=-1)


def representation_loss(
    features: torch.Tensor,
    latent_features: torch.Tensor,
    labels: torch.Tensor,
    detach_latent: bool = True,
) -> torch.Tensor:
    """Eq. 33, ``L_rep`` with ``K = 1 / N``, for ``(N, D)`` binary ``features``, ``(N, D)``
    ``latent_features`` (or a teacher's) and ``(N,)`` integer ``labels``.

    ``detach_latent``: treat the latent features as fixed targets (eq. 34 differentiates
    with respect to the binary features only); ``False`` lets the loss move them too.
    Zero exactly when every binary feature equals its latent one and all features of a
    label coincide.
    """
    if features.shape != latent_features.shape or features.dim() != 2:
        raise ValueError(
            f"features and latent_features must both be (N, D), got "
            f"{tuple(features.shape)} and {tuple(latent_features.shape)}"
        )
    if labels.shape != features.shape[:1]:
        raise ValueError(f"labels must be ({features.shape[0]},), got {tuple(labels.shape)}")
    y = features.float()
    y_latent = latent_features.float()
    if detach_latent:
        y_latent = y_latent.detach()
    per_sample = (y - y_latent).pow(2).sum(dim=1)  # eq. 32
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    same.fill_diagonal_(False)  # I(i): the other samples with i's label
    pairs = (
        squared_distances(y, y) + squared_distances(y_latent, y) + squared_distances(y, y_latent)
    )
    across = (pairs * same).sum(dim=1)
    return (per_sample + across).mean()


def label_aware_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    features: torch.Tensor,
    latent_features: torch.Tensor,
    lam: float,
    config: BinaryTrainConfig,
    teacher_logits: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eq. 35: ``L_ce + lam * L_rep``; with ``teacher_logits`` and ``config.distill > 0``,
    ``L_ce`` becomes the distillation mix of :func:`~.training.distillation_loss` (+ KD)."""
    if lam < 0:
        raise ValueError(f"lam weights a loss and must be >= 0, got {lam}")
    ce = distillation_loss(logits, labels, teacher_logits, config)
    return ce + lam * representation_loss(features, latent_features, labels)

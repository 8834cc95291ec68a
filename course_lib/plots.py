"""The figures the chapters share (matplotlib; each function returns its ``Figure``)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from .data import CLASSES
from .train import History


def image_grid(
    images: torch.Tensor, labels: torch.Tensor, per_class: int = 8, seed: int = 0
) -> Figure:
    """``per_class`` random images of every class, one row per class (uint8 NCHW input)."""
    generator = torch.Generator().manual_seed(seed)
    fig, axes = plt.subplots(
        len(CLASSES), per_class, figsize=(per_class * 0.9, len(CLASSES) * 0.95)
    )
    for row, name in enumerate(CLASSES):
        members = (labels == row).nonzero().flatten()
        picks = members[torch.randperm(len(members), generator=generator)[:per_class]]
        for col, index in enumerate(picks):
            ax = axes[row, col]
            ax.imshow(images[index].permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.tight_layout(pad=0.2)
    return fig


def class_balance(splits: dict[str, torch.Tensor]) -> Figure:
    """Images per class for each named label tensor, as grouped bars."""
    fig, ax = plt.subplots(figsize=(8, 3))
    width = 0.8 / len(splits)
    for i, (name, labels) in enumerate(splits.items()):
        counts = torch.bincount(labels, minlength=len(CLASSES))
        ax.bar([c + i * width for c in range(len(CLASSES))], counts.tolist(), width, label=name)
    ax.set_xticks([c + 0.4 - width / 2 for c in range(len(CLASSES))], CLASSES, rotation=30)
    ax.set_ylabel("images")
    ax.legend()
    fig.tight_layout()
    return fig


def training_curves(history: History, title: str = "") -> Figure:
    """Loss and accuracy per epoch, train and validation."""
    epochs = range(1, len(history.train_loss) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax_loss.plot(epochs, history.train_loss, label="train")
    ax_acc.plot(epochs, [100 * a for a in history.train_accuracy], label="train")
    if history.val_loss:
        ax_loss.plot(epochs, history.val_loss, label="validation")
        ax_acc.plot(epochs, [100 * a for a in history.val_accuracy], label="validation")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy (nats)")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion_matrix(logits: torch.Tensor, labels: torch.Tensor) -> tuple[Figure, torch.Tensor]:
    """Row-normalized confusion matrix (rows: true class) and the per-class accuracy."""
    n = len(CLASSES)
    counts = torch.bincount(labels * n + logits.argmax(1), minlength=n * n).reshape(n, n).float()
    rates = counts / counts.sum(1, keepdim=True)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            color = "white" if rates[i, j] > 0.5 else "black"
            ax.text(
                j, i, f"{100 * rates[i, j]:.0f}", ha="center", va="center", fontsize=7, color=color
            )
    ax.set_xticks(range(n), CLASSES, rotation=60)
    ax.set_yticks(range(n), CLASSES)
    ax.set(xlabel="predicted", ylabel="true")
    fig.tight_layout()
    return fig, rates.diagonal()

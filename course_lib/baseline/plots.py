"""Chapter 1's figure of the saved run (the figures of data and training it shares with
other chapters are in :mod:`course_lib.plots`)."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from .summary import TARGETS


def validation_curve(saved: dict, target: float = TARGETS["test_accuracy"]) -> Figure:
    """Validation accuracy per epoch of a saved run, with the test-accuracy target."""
    accuracy = saved["history"]["val_accuracy"]
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(range(1, len(accuracy) + 1), [100 * a for a in accuracy])
    ax.axhline(100 * target, ls="--", c="gray", label="target (test)")
    ax.set(xlabel="epoch", ylabel="validation accuracy (%)", title="full profile")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig

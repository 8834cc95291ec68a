"""Run profiles: ``quick`` (a real run on a subset, minutes) and ``full`` (the paper's or the
homework's protocol, at most 90 minutes per chapter on a 2-core CPU).

Every notebook takes a papermill parameter ``profile``; each chapter package defines its
settings as one frozen dataclass per profile (``<chapter>/settings.py``), built on
:class:`course_lib.data.DataSettings` and :class:`course_lib.train.TrainConfig`, with an
``estimate_min`` dict (minutes per section on the course's 2-core CPU). Chapter 1 has no
package, so its settings live here.
"""

from __future__ import annotations

from dataclasses import dataclass

from .data import DataSettings
from .train import TrainConfig

PROFILES = ("quick", "full")


def check_profile(profile: str) -> str:
    """Return ``profile`` if it is known, else raise a ``ValueError`` naming the choices."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: use one of {', '.join(PROFILES)}")
    return profile


@dataclass(frozen=True)
class BaselineSettings:
    """Chapter 1: train the baseline CNN on ``data`` with ``train``; time it with
    ``latency_rounds`` interleaved rounds (:func:`course_lib.measure.compare`).
    ``estimate_min``: expected minutes per section on the course's 2-core CPU."""

    data: DataSettings
    train: TrainConfig
    latency_rounds: int
    estimate_min: dict[str, float]


BASELINE = {
    "quick": BaselineSettings(
        data=DataSettings(train_per_class=500, val_per_class=100, test_per_class=200),
        train=TrainConfig(epochs=4, lr=0.1, label_smoothing=0.1),
        latency_rounds=10,
        estimate_min={"training (4 epochs of 5,000 images)": 0.7, "the rest": 0.5},
    ),
    "full": BaselineSettings(
        data=DataSettings(),
        train=TrainConfig(epochs=30, lr=0.1, label_smoothing=0.1),
        latency_rounds=50,
        estimate_min={"training (30 epochs of 45,000 images)": 21.0, "the rest": 1.0},
    ),
}


def total_minutes(estimate_min: dict[str, float]) -> float:
    """The sum of a settings' per-section estimate (minutes on the course's 2-core CPU)."""
    return float(sum(estimate_min.values()))


def baseline_settings(profile: str) -> BaselineSettings:
    return BASELINE[check_profile(profile)]

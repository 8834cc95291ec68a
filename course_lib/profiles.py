"""Run profiles: ``quick`` (a real run on a subset, minutes) and ``full`` (the paper's or the
homework's protocol, at most 90 minutes per chapter on a 2-core CPU).

Every notebook takes a papermill parameter ``profile`` and looks its settings up here, so
the two profiles of a chapter are defined in one place and can be compared at a glance.
"""

from __future__ import annotations

from dataclasses import dataclass

from .train import TrainConfig

PROFILES = ("quick", "full")


def check_profile(profile: str) -> str:
    """Return ``profile`` if it is known, else raise a ``ValueError`` naming the choices."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: use one of {', '.join(PROFILES)}")
    return profile


@dataclass(frozen=True)
class DataSettings:
    """How much of CIFAR-10 a run uses (``None`` means all of that split).

    ``train_per_class`` and ``val_per_class`` draw from the fixed 45,000 / 5,000
    train/validation split; ``test_per_class`` from the 10,000 test images.
    """

    train_per_class: int | None = None
    val_per_class: int | None = None
    test_per_class: int | None = None
    batch_size: int = 256


@dataclass(frozen=True)
class BaselineSettings:
    data: DataSettings
    train: TrainConfig
    latency_repeats: int


BASELINE = {
    "quick": BaselineSettings(
        data=DataSettings(train_per_class=500, val_per_class=100, test_per_class=200),
        train=TrainConfig(epochs=4, lr=0.1, label_smoothing=0.1),
        latency_repeats=20,
    ),
    "full": BaselineSettings(
        data=DataSettings(),
        train=TrainConfig(epochs=30, lr=0.1, label_smoothing=0.1),
        latency_repeats=100,
    ),
}


def baseline_settings(profile: str) -> BaselineSettings:
    return BASELINE[check_profile(profile)]

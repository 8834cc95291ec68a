"""Chapter 1's settings per profile: the data, the training recipe and the timing rounds of
the baseline CNN."""

from __future__ import annotations

from dataclasses import dataclass

from ..data import DataSettings
from ..profiles import check_profile
from ..train import TrainConfig


@dataclass(frozen=True)
class BaselineSettings:
    """Train the baseline CNN on ``data`` with ``train``; time it with ``latency_rounds``
    interleaved rounds (:func:`course_lib.measure.compare`). ``estimate_min``: expected
    minutes per section on the course's 2-core CPU."""

    data: DataSettings
    train: TrainConfig
    latency_rounds: int
    estimate_min: dict[str, float]


BASELINE = {
    "quick": BaselineSettings(
        data=DataSettings(train_per_class=500, val_per_class=100, test_per_class=200),
        train=TrainConfig(epochs=4, lr=0.1, label_smoothing=0.1),
        latency_rounds=10,
        estimate_min={"training": 0.7, "latency": 0.5},  # 4 epochs of 5,000 images
    ),
    "full": BaselineSettings(
        data=DataSettings(),
        train=TrainConfig(epochs=30, lr=0.1, label_smoothing=0.1),
        latency_rounds=50,
        estimate_min={"training": 21.0, "latency": 1.0},  # 30 epochs of 45,000 images
    ),
}


def baseline_settings(profile: str) -> BaselineSettings:
    """The settings of ``profile`` (an unknown profile raises a ``ValueError``)."""
    return BASELINE[check_profile(profile)]

"""Run profiles: ``quick`` (a real run on a subset, minutes) and ``full`` (the paper's or the
homework's protocol, at most 90 minutes per chapter on a 2-core CPU).

Every notebook takes a papermill parameter ``profile``; each chapter package defines its
settings as one frozen dataclass per profile (``<chapter>/settings.py``), built on
:class:`course_lib.data.DataSettings` and :class:`course_lib.train.TrainConfig`, with an
``estimate_min`` dict (minutes per section on the course's 2-core CPU), whose keys are the
sections :class:`course_lib.chapter.Run` times.
"""

from __future__ import annotations

PROFILES = ("quick", "full")


def check_profile(profile: str) -> str:
    """Return ``profile`` if it is known, else raise a ``ValueError`` naming the choices."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: use one of {', '.join(PROFILES)}")
    return profile


def total_minutes(estimate_min: dict[str, float]) -> float:
    """The sum of a settings' per-section estimate (minutes on the course's 2-core CPU)."""
    return float(sum(estimate_min.values()))

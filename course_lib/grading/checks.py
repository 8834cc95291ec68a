"""What every graded check shares: the failure type and the accuracy band.

Every ``check_*`` function of :mod:`course_lib.grading` raises :class:`CheckFailed` (an
``AssertionError``, which is what nbgrader counts as a failed test) with a message that
says what was expected, what was found and what to look at, and returns ``None`` when the
check passes: nbgrader reads a number that a test cell displays as *partial credit*, so a
test cell must never end with an expression that has a value.
"""

from __future__ import annotations

import sys
from typing import Any


class CheckFailed(AssertionError):
    """A graded check failed; the message says what was expected and what was found."""


PRUNING_HINT = (
    "check which weights or channels your function removes, and that fine-tuning keeps "
    "them removed."
)


def check_accuracy(
    accuracy: float, floor: float, what: str = "accuracy", hint: str = PRUNING_HINT
) -> None:
    """``accuracy`` (a fraction) is at least ``floor``; ``hint`` says what to look at."""
    if not 0.0 <= accuracy <= 1.0:
        raise CheckFailed(f"{what} is {accuracy!r}: expected a fraction between 0 and 1")
    if accuracy < floor:
        raise CheckFailed(f"{what} is {accuracy:.1%}, below the floor of {floor:.1%}: {hint}")


def type_name(value: Any) -> str:
    """The class name of ``value``, also for an object that stayed in the student's kernel
    when the grader runs a test (a proxy of :mod:`course_lib.grader.remote` cannot be tested
    with ``isinstance``: it only knows the name). Without the grader loaded, no value is a
    proxy, so the runner is never imported from here."""
    remote = sys.modules.get("course_lib.grader.remote")
    if remote is not None and isinstance(value, remote.Proxy):
        return value._handle.name
    return type(value).__name__

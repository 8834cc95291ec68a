"""Shared fixtures. Tests use the real CIFAR-10: set COURSE_DATA_DIR to a folder holding
``cifar10.npz``; beside a checkout with ``../shared/data`` that folder is used by default."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
if "COURSE_DATA_DIR" not in os.environ and (SHARED_DATA / "cifar10.npz").exists():
    os.environ["COURSE_DATA_DIR"] = str(SHARED_DATA)


@pytest.fixture(scope="session")
def cifar():
    from course_lib.data import load_cifar10

    return load_cifar10()


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)

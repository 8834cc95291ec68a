"""CIFAR-10 held in memory as uint8 tensors, with seeded splits and batched augmentation.

Where the data comes from, in this order:

1. ``$COURSE_DATA_DIR/cifar10.npz`` (or ``<root>/cifar10.npz``): an offline copy in the
   format of the course's mirror (arrays ``x_train``, ``y_train``, ``x_test``, ``y_test``,
   NHWC uint8). Its sha256 is checked before use; a wrong file is an error, never a retry.
2. torchvision's official ``CIFAR10`` download, cached in the same folder.

The data folder is ``$COURSE_DATA_DIR`` when set, else ``~/.cache/efficient-dl-course``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

DATA_DIR_ENV = "COURSE_DATA_DIR"
NPZ_NAME = "cifar10.npz"
NPZ_SHA256 = "a44cc18e4ad961b5158c7da062a6232fb65938b615bf013046199b823b75c43d"
CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


class DataError(RuntimeError):
    """The data set is missing, corrupt or could not be downloaded."""


@dataclass(frozen=True)
class Cifar10:
    """The whole data set: images uint8 (N, 3, 32, 32), labels int64 (N,)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def data_dir() -> Path:
    """The data folder: ``$COURSE_DATA_DIR`` if set, else ``~/.cache/efficient-dl-course``."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "efficient-dl-course"


def sha256_of(path: Path, chunk_bytes: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def load_cifar10(root: str | Path | None = None, download: bool = True) -> Cifar10:
    """Load CIFAR-10 from an offline ``cifar10.npz`` in ``root`` or via torchvision.

    Cached per process, so notebooks and tests pay the load (about 2 s) once.
    """
    return _load_cifar10_cached(str(Path(root) if root else data_dir()), download)


@lru_cache(maxsize=2)
def _load_cifar10_cached(root: str, download: bool) -> Cifar10:
    folder = Path(root)
    npz = folder / NPZ_NAME
    if npz.exists():
        return _load_npz(npz)
    return _load_torchvision(folder, download)


def _load_npz(path: Path) -> Cifar10:
    actual = sha256_of(path)
    if actual != NPZ_SHA256:
        raise DataError(
            f"{path} is not the expected CIFAR-10 copy: its sha256 is {actual}, expected "
            f"{NPZ_SHA256}. The file is truncated or corrupt: copy it again, or remove it "
            f"so that the official download is used."
        )
    with np.load(path) as arrays:
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(arrays.files)
        if missing:
            raise DataError(f"{path} lacks the arrays {sorted(missing)}.")
        return Cifar10(
            x_train=_nhwc_to_tensor(arrays["x_train"]),
            y_train=torch.from_numpy(arrays["y_train"].astype(np.int64)),
            x_test=_nhwc_to_tensor(arrays["x_test"]),
            y_test=torch.from_numpy(arrays["y_test"].astype(np.int64)),
        )


def _load_torchvision(folder: Path, download: bool) -> Cifar10:
    from torchvision.datasets import CIFAR10

    try:
        train = CIFAR10(str(folder), train=True, download=download)
        test = CIFAR10(str(folder), train=False, download=download)
    except Exception as error:  # network errors come in many types
        raise DataError(
            f"CIFAR-10 is not in {folder} and could not be downloaded ({error}). Either allow "
            f"the download, or put an offline copy named {NPZ_NAME} (sha256 {NPZ_SHA256}) in a "
            f"folder and set {DATA_DIR_ENV} to that folder."
        ) from error
    return Cifar10(
        x_train=_nhwc_to_tensor(train.data),
        y_train=torch.tensor(train.targets, dtype=torch.int64),
        x_test=_nhwc_to_tensor(test.data),
        y_test=torch.tensor(test.targets, dtype=torch.int64),
    )


def _nhwc_to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


# --- splits ----------------------------------------------------------------------------


def stratified_subset(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """Indices of ``per_class`` examples of every class, drawn with ``seed`` (sorted)."""
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for cls in labels.unique(sorted=True):
        members = (labels == cls).nonzero().flatten()
        if per_class > len(members):
            raise ValueError(f"class {int(cls)} has {len(members)} examples, asked {per_class}")
        chosen.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(chosen).sort().values


SPLIT_SIZES = {"train": 45_000, "val": 5_000, "test": 10_000}
"""Images per split: CIFAR-10's training set under :func:`train_val_split`, and its test set."""


def train_val_split(
    labels: torch.Tensor, val_per_class: int = 500, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed stratified split of the training set: (train indices, validation indices).

    The default keeps 500 images per class (5,000) for validation and 45,000 for training.
    Every choice a chapter makes is made on the validation split; the test set only reports.
    """
    val = stratified_subset(labels, val_per_class, seed)
    is_val = torch.zeros(len(labels), dtype=torch.bool)
    is_val[val] = True
    return (~is_val).nonzero().flatten(), val


# --- batches -----------------------------------------------------------------------------


def random_crop_flip(
    images: torch.Tensor, generator: torch.Generator, pad: int = 4
) -> torch.Tensor:
    """Random crop after zero padding by ``pad`` pixels and random horizontal flip, batched."""
    n, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
    batch = torch.arange(n)[:, None, None, None]
    chan = torch.arange(c)[None, :, None, None]
    cropped = padded[batch, chan, rows, cols]
    flip = torch.rand(n, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], cropped.flip(3), cropped)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32, scaled to [0, 1] and standardized per channel."""
    mean = torch.tensor(MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


class TensorLoader:
    """Mini-batches of an in-memory uint8 image tensor, augmented on the fly.

    The shuffle and augmentation of epoch ``e`` depend only on ``(seed, e)``, so a run
    resumed at epoch ``e`` sees exactly the batches an uninterrupted run would.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int = 256,
        shuffle: bool = False,
        augment: bool = False,
        seed: int = 0,
        device: str | torch.device = "cpu",
        channels_last: bool = False,
        drop_last: bool = False,
    ) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.seed, self.device = seed, torch.device(device)
        self.channels_last, self.drop_last = channels_last, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        n = len(self.labels)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            idx = order[start : start + self.batch_size]
            images = self.images[idx]
            if self.augment:
                images = random_crop_flip(images, generator)
            x = normalize(images.to(self.device, non_blocking=True))
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx].to(self.device, non_blocking=True)


def subset_loader(
    data: Cifar10, split: str, indices: torch.Tensor | None = None, **loader_kwargs
) -> TensorLoader:
    """A :class:`TensorLoader` over ``split`` ("train" or "test"), optionally restricted."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    x, y = (data.x_train, data.y_train) if split == "train" else (data.x_test, data.y_test)
    if indices is not None:
        x, y = x[indices], y[indices]
    return TensorLoader(x, y, **loader_kwargs)


@dataclass
class Loaders:
    """The train (augmented, shuffled), validation and test loaders of one run."""

    train: TensorLoader
    val: TensorLoader
    test: TensorLoader


@dataclass(frozen=True)
class DataSettings:
    """How much of CIFAR-10 a run uses (``None``: all of that split), and the batch size.

    ``train_per_class`` and ``val_per_class`` draw from the fixed 45,000 / 5,000
    train / validation split; ``test_per_class`` from the 10,000 test images. Every
    chapter's and assignment's settings hold one of these.
    """

    train_per_class: int | None = None
    val_per_class: int | None = None
    test_per_class: int | None = None
    batch_size: int = 256

    def __post_init__(self) -> None:
        for name in ("train_per_class", "val_per_class", "test_per_class"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be None (all) or >= 1, got {value}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def images(self, split: str) -> int:
        """How many images of ``split`` ("train", "val" or "test") a run draws: 10 classes
        times ``<split>_per_class``, or the whole split (45,000 / 5,000 / 10,000)."""
        per_class = getattr(self, f"{split}_per_class")
        return SPLIT_SIZES[split] if per_class is None else 10 * per_class


def make_loaders(
    data: Cifar10,
    settings: DataSettings = DataSettings(),
    seed: int = 0,
    device: str | torch.device = "cpu",
    channels_last: bool = True,
) -> Loaders:
    """Loaders over the fixed train/validation split and the test set, each optionally cut
    to a stratified subset of ``settings.*_per_class`` images per class (drawn with ``seed``)."""
    train_idx, val_idx = train_val_split(data.y_train)
    if settings.train_per_class is not None:
        picked = stratified_subset(data.y_train[train_idx], settings.train_per_class, seed)
        train_idx = train_idx[picked]
    if settings.val_per_class is not None:
        val_idx = val_idx[stratified_subset(data.y_train[val_idx], settings.val_per_class, seed)]
    test_idx = (
        None
        if settings.test_per_class is None
        else stratified_subset(data.y_test, settings.test_per_class, seed)
    )
    common = {"device": device, "channels_last": channels_last}
    return Loaders(
        train=subset_loader(
            data,
            "train",
            train_idx,
            batch_size=settings.batch_size,
            shuffle=True,
            augment=True,
            seed=seed,
            drop_last=True,
            **common,
        ),
        val=subset_loader(data, "train", val_idx, batch_size=1000, **common),
        test=subset_loader(data, "test", test_idx, batch_size=1000, **common),
    )

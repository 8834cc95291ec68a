"""The chapter's offline stand-in for the seed's experiment: transfer to two unseen classes.

The seed fine-tunes an ImageNet VGG16 on two painting styles, 313 images each, with a new
2-class head, then prunes it. ImageNet weights and the paintings need the internet, so the
course builds the same situation from CIFAR-10:

- the **source** network (:class:`~.network.SmallVGG16`) is trained on 8 of the 10 classes
  (the "ImageNet" role; :mod:`.pretrain` makes the committed checkpoint);
- the **target** task is the 2 held-out classes, :data:`HELD_OUT`, which the source never
  saw: about 313 training images per class (the seed's count), a new 2-class head, and
  every held-out test image of those classes (2,000) to measure on.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .. import data
from ..data import CLASSES, Cifar10, DataSettings, Loaders, TensorLoader
from ..paths import CHECKPOINT_DIR, atomic_path
from ..train import TrainConfig, evaluate, fit
from .network import SmallVGG16, replace_head

HELD_OUT = ("automobile", "truck")
"""The target task: two road vehicles. The source classes hold no road vehicle (only
airplane and ship), so telling a car from a truck is a new distinction, learned from
626 images on top of general features, as the seed's painting styles are for ImageNet."""
SOURCE_CLASSES = tuple(c for c in CLASSES if c not in HELD_OUT)
"""The 8 classes the source network is trained on."""
SOURCE_CHECKPOINT = "taylor_source_vgg.pt"
"""The committed source network (``checkpoints/``), made by ``python -m course_lib.taylor.pretrain``."""


def check_classes(classes: tuple[str, ...]) -> tuple[str, ...]:
    """``classes`` if they are distinct CIFAR-10 class names (at least two), else ``ValueError``."""
    unknown = [c for c in classes if c not in CLASSES]
    if unknown:
        raise ValueError(f"unknown classes {unknown}: use names from {', '.join(CLASSES)}")
    if len(set(classes)) != len(classes) or len(classes) < 2:
        raise ValueError(f"need at least two distinct classes, got {classes}")
    return classes


def class_loaders(
    cifar: Cifar10,
    classes: tuple[str, ...],
    settings: DataSettings,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> Loaders:
    """Train / validation / test loaders restricted to ``classes``, labelled ``0 .. k-1`` in
    the order given. Train and validation come from the course's fixed 45,000 / 5,000 split;
    ``settings.*_per_class`` draws a stratified subset (with ``seed``), ``None`` keeps all."""
    ids = torch.tensor([CLASSES.index(c) for c in check_classes(classes)])
    relabel = torch.full((len(CLASSES),), -1, dtype=torch.int64)
    relabel[ids] = torch.arange(len(ids))
    train_idx, val_idx = data.train_val_split(cifar.y_train)

    def pick(labels: torch.Tensor, idx: torch.Tensor, per_class: int | None) -> torch.Tensor:
        idx = idx[torch.isin(labels[idx], ids)]
        if per_class is not None:
            idx = idx[data.stratified_subset(labels[idx], per_class, seed)]
        return idx

    def loader(x, y, idx, train: bool) -> TensorLoader:
        return TensorLoader(
            x[idx],
            relabel[y[idx]],
            batch_size=settings.batch_size if train else 1000,
            shuffle=train,
            augment=train,
            seed=seed,
            device=device,
            channels_last=True,
            drop_last=train,
        )

    all_test = torch.arange(len(cifar.y_test))
    return Loaders(
        train=loader(
            cifar.x_train,
            cifar.y_train,
            pick(cifar.y_train, train_idx, settings.train_per_class),
            True,
        ),
        val=loader(
            cifar.x_train,
            cifar.y_train,
            pick(cifar.y_train, val_idx, settings.val_per_class),
            False,
        ),
        test=loader(
            cifar.x_test, cifar.y_test, pick(cifar.y_test, all_test, settings.test_per_class), False
        ),
    )


def plain_copy(loader: TensorLoader, batch_size: int | None = None) -> TensorLoader:
    """The same images in a fixed order, without augmentation (e.g. to score filters on)."""
    plain = copy.copy(loader)
    plain.shuffle = plain.augment = plain.drop_last = False
    plain.batch_size = batch_size or loader.batch_size
    return plain


def source_record(path: str | Path | None = None) -> dict:
    """What :mod:`.pretrain` recorded beside the source network (accuracies, time, machine)."""
    import json

    path = Path(path) if path else source_checkpoint()
    record = path.with_suffix(".json")
    if not record.exists():
        raise CheckpointError(f"no {record.name} beside {path}: regenerate both with pretrain")
    return json.loads(record.read_text())


class CheckpointError(RuntimeError):
    """The source checkpoint is missing or does not hold a :class:`SmallVGG16`."""


def source_checkpoint() -> Path:
    """Where the committed source network lives."""
    return CHECKPOINT_DIR / SOURCE_CHECKPOINT


def load_source(path: str | Path | None = None) -> SmallVGG16:
    """The pretrained 8-class source network (default: the committed checkpoint)."""
    path = Path(path) if path else source_checkpoint()
    regenerate = "python -m course_lib.taylor.pretrain"
    if not path.exists():
        raise CheckpointError(
            f"no source network at {path}: it is committed with the course (git checkout "
            f"{SOURCE_CHECKPOINT}), or regenerate it with `{regenerate}` (about 15 minutes)."
        )
    model = SmallVGG16(num_classes=len(SOURCE_CLASSES))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as error:  # a truncated file, another model's weights, not a checkpoint
        raise CheckpointError(
            f"{path} is not a SmallVGG16 source checkpoint ({type(error).__name__}: "
            f"{str(error).splitlines()[0][:200]}). Restore it with git, or regenerate it "
            f"with `{regenerate} --force`."
        ) from error
    return model


@dataclass(frozen=True)
class Transferred:
    """The fine-tuned, unpruned target network and what it scored (fractions)."""

    model: nn.Module
    val_accuracy: float
    test_accuracy: float
    wall_time_s: float

    def as_dict(self) -> dict:
        return {
            "val_accuracy": self.val_accuracy,
            "test_accuracy": self.test_accuracy,
            "wall_time_s": self.wall_time_s,
        }


def transfer_network(
    source: nn.Module,
    loaders: Loaders,
    finetune: TrainConfig,
    num_classes: int = len(HELD_OUT),
    seed: int = 0,
    cache: str | Path | None = None,
) -> Transferred:
    """Copy ``source``, give it a fresh ``num_classes`` head (seeded), fine-tune every layer
    with ``finetune`` on ``loaders.train``, and score it on ``loaders.val`` and ``.test``.
    With ``cache``, a finished transfer is saved there (weights and scores) and reused."""
    model = replace_head(copy.deepcopy(source), num_classes, seed).to(loaders.train.device)
    cache = Path(cache) if cache is not None else None
    if cache is not None and cache.exists():
        state = torch.load(cache, map_location=loaders.train.device, weights_only=True)
        model.load_state_dict(state["model"])
        return Transferred(model, **state["scores"])
    history = fit(model, loaders.train, finetune, seed=seed, progress=False)
    result = Transferred(
        model=model,
        val_accuracy=evaluate(model, loaders.val)[1],
        test_accuracy=evaluate(model, loaders.test)[1],
        wall_time_s=history.wall_time_s,
    )
    if cache is not None:
        with atomic_path(cache) as tmp:
            torch.save({"model": model.state_dict(), "scores": result.as_dict()}, tmp)
    return result

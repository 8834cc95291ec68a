"""The seed's real experiment, for readers with the internet and their own images: an
ImageNet-pretrained VGG16 (torchvision) transferred to the classes of an image folder.

The folder holds one sub-folder per class (e.g. ``paintings/monet/*.jpg`` and
``paintings/farshchian/*.jpg``, as in the seed), which :func:`image_folder_loaders` splits
into training and test images per class with a seed (the seed kept 10 % for testing).
:func:`vgg16_transfer` loads torchvision's VGG16 with ImageNet weights (downloaded once,
about 530 MB, or read from a file) and swaps its last layer for a new head. Everything
else, the criterion and the pruning loop, is the chapter's own code, unchanged::

    loaders = image_folder_loaders("paintings", image_size=224)
    model = vgg16_transfer(len(loaders.classes))
    train.fit(model, loaders.train, settings.finetune_config(15))
    prune_iteratively(model, "taylor", loaders.calibration, finetune_rounds(...), ...,
                      input_shape=(1, 3, 224, 224))

Missing weights, a missing or malformed folder and unreadable images stop with an error
that says what is wrong and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from .network import replace_head

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG16_WEIGHTS_FILE = "vgg16-397923af.pth"
"""The file name torchvision gives VGG16's ImageNet weights (``VGG16_Weights.IMAGENET1K_V1``)."""


class ImageFolderError(ValueError):
    """The image folder is missing, has fewer than two classes, or holds unreadable images."""


class WeightsUnavailable(RuntimeError):
    """The ImageNet weights could not be downloaded or read."""


def _image_files(folder: Path) -> list[Path]:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS
    )


def check_image_folder(root: str | Path, min_per_class: int = 2) -> list[str]:
    """The class names of ``root`` (its sub-folders, sorted) after checking that there are
    at least two, that each holds at least ``min_per_class`` images, and that every image
    opens. Raises :class:`ImageFolderError` naming the problem otherwise."""
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    layout = "one sub-folder per class, e.g. root/monet/1.jpg and root/farshchian/1.jpg"
    if not root.is_dir():
        raise ImageFolderError(f"{root} is not a folder: expected {layout}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise ImageFolderError(
            f"{root} has {len(classes)} class folder(s) ({classes}): a classifier needs at "
            f"least two; expected {layout}"
        )
    for name in classes:
        files = _image_files(root / name)
        if len(files) < min_per_class:
            raise ImageFolderError(
                f"class folder {root / name} holds {len(files)} image(s), at least "
                f"{min_per_class} are needed (one for training, one for testing)"
            )
        for path in files:
            try:
                with Image.open(path) as image:
                    image.verify()
            except (UnidentifiedImageError, OSError, SyntaxError) as error:
                raise ImageFolderError(
                    f"{path} is not a readable image ({error}): fix or remove it"
                ) from error
    return classes


@dataclass
class FolderLoaders:
    """Training (augmented, shuffled), calibration (the training images, plain) and test
    loaders of an image folder, and its class names (label ``i`` is ``classes[i]``)."""

    train: DataLoader
    calibration: DataLoader
    test: DataLoader
    classes: list[str]


def split_per_class(
    targets: list[int], test_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """(train, test) indices: ``round(test_fraction * n)`` images of every class (at least
    one, at most ``n - 1``) for testing, drawn with ``seed``."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    generator = torch.Generator().manual_seed(seed)
    labels = torch.tensor(targets)
    train, test = [], []
    for cls in labels.unique(sorted=True):
        members = (labels == cls).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        n_test = min(max(round(test_fraction * len(members)), 1), len(members) - 1)
        test += members[:n_test].tolist()
        train += members[n_test:].tolist()
    return sorted(train), sorted(test)


def image_folder_loaders(
    root: str | Path,
    image_size: int = 224,
    test_fraction: float = 0.1,
    batch_size: int = 32,
    seed: int = 0,
) -> FolderLoaders:
    """Loaders over an image folder (checked by :func:`check_image_folder`), resized to
    ``image_size`` pixels square and normalized with ImageNet's statistics. Training images
    get a random resized crop and flip; test and calibration images a resize and centre
    crop. Single-process and seeded: the same call gives the same batches."""
    from torchvision import datasets, transforms

    classes = check_image_folder(root)
    normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    augment = transforms.Compose(
        [
            transforms.RandomResizedCrop(image_size, scale=(0.6, 1.0)),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            normalize,
        ]
    )
    plain = transforms.Compose(
        [
            transforms.Resize(round(image_size * 8 / 7)),
            transforms.CenterCrop(image_size),
            transforms.ToTensor(),
            normalize,
        ]
    )
    augmented = datasets.ImageFolder(str(root), transform=augment)
    unaugmented = datasets.ImageFolder(str(root), transform=plain)
    train_idx, test_idx = split_per_class(augmented.targets, test_fraction, seed)
    return FolderLoaders(
        train=DataLoader(Subset(augmented, train_idx), batch_size, shuffle=True, drop_last=False),
        calibration=DataLoader(Subset(unaugmented, train_idx), batch_size),
        test=DataLoader(Subset(unaugmented, test_idx), batch_size),
        classes=classes,
    )


def vgg16_transfer(
    num_classes: int, weights: str | Path | None = "imagenet", seed: int = 0
) -> nn.Module:
    """torchvision's VGG16 with a new ``num_classes`` head (seeded). ``weights``:
    ``"imagenet"`` downloads (or reuses the cached copy of) torchvision's ImageNet weights,
    a path reads a saved copy of them, ``None`` leaves the network untrained (for tests)."""
    from torchvision.models import VGG16_Weights, vgg16

    state = None if weights is None else _imagenet_state(weights, VGG16_Weights.IMAGENET1K_V1)
    model = vgg16(weights=None)
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as error:
            raise WeightsUnavailable(
                f"{weights} does not hold torchvision's VGG16 weights: "
                f"{str(error).splitlines()[0][:200]}"
            ) from error
    return replace_head(model, num_classes, seed)


def _imagenet_state(weights: str | Path, entry) -> dict[str, torch.Tensor]:
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    advice = (
        f"On a machine with internet, download {entry.url} and pass its path as weights=..., "
        f"or copy it to {hub / VGG16_WEIGHTS_FILE} (torchvision's cache). Without ImageNet "
        f"weights the chapter's offline experiment (CIFAR-10) shows the same method."
    )
    if weights == "imagenet":
        try:
            return entry.get_state_dict(progress=True)
        except Exception as error:  # URLError, HTTPError, timeouts, a truncated download
            raise WeightsUnavailable(
                f"could not download VGG16's ImageNet weights ({type(error).__name__}: "
                f"{error}). {advice}"
            ) from error
    path = Path(weights)
    if not path.exists():
        raise WeightsUnavailable(f"no VGG16 weights at {path}. {advice}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsUnavailable(f"{path} is not a VGG16 state dict ({error}). {advice}") from error

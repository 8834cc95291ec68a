"""Training throughput: the course's in-memory tensor pipeline vs torchvision's PIL pipeline.

Both sides train the same BaselineCNN with the same loop (SGD step, bf16 autocast and
channels-last where the CPU has native bf16) on the same CIFAR-10 images, one after the
other in one run; only the input pipeline differs:

- course: ``course_lib.data.TensorLoader`` (uint8 tensors in memory, batched crop/flip);
- torchvision: a ``Dataset`` that does what ``torchvision.datasets.CIFAR10`` does per image
  (``PIL.Image.fromarray`` + ``RandomCrop(32, 4)``, ``RandomHorizontalFlip``, ``ToTensor``,
  ``Normalize``) behind a ``torch.utils.data.DataLoader``.

    python benchmarks/bench_data_pipeline.py [--batches 30] [--workers 0 2]
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from course_lib import data, models, train


class PilCifar(Dataset):
    """Per-image PIL decoding and augmentation, as ``torchvision.datasets.CIFAR10`` does."""

    def __init__(self, images_nchw: torch.Tensor, labels: torch.Tensor) -> None:
        self.images = images_nchw.permute(0, 2, 3, 1).numpy()
        self.labels = labels.tolist()
        self.transform = transforms.Compose(
            [
                transforms.RandomCrop(32, padding=4),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize(data.MEAN, data.STD),
            ]
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def images_per_second(loader, batches: int, batch_size: int) -> float:
    """Images/s of ``batches`` training steps (after 3 warm-up steps) fed by ``loader``."""
    train.seed_everything(0)
    model = models.BaselineCNN().to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    autocast = train.cpu_has_native_bf16()
    batches_iter = itertools.islice(iter(loader), batches + 3)
    for step, (x, y) in enumerate(batches_iter):
        if step == 3:
            start = time.perf_counter()
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return batches * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()
    cifar = data.load_cifar10()
    n = (args.batches + 3) * args.batch_size
    x, y = cifar.x_train[:n], cifar.y_train[:n]
    ours = images_per_second(
        data.TensorLoader(x, y, args.batch_size, shuffle=True, augment=True, channels_last=True),
        args.batches,
        args.batch_size,
    )
    print(f"threads={torch.get_num_threads()} batch={args.batch_size} batches={args.batches}")
    print(f"course TensorLoader:               {ours:8.0f} images/s")
    for workers in args.workers:
        theirs = images_per_second(
            DataLoader(PilCifar(x, y), args.batch_size, shuffle=True, num_workers=workers),
            args.batches,
            args.batch_size,
        )
        print(
            f"torchvision PIL, {workers} workers:       {theirs:8.0f} images/s"
            f"   -> course / torchvision = {ours / theirs:.2f}x"
        )


if __name__ == "__main__":
    main()

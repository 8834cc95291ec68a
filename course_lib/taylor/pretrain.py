"""``python -m course_lib.taylor.pretrain``: train the 8-class source network the chapter
transfers and prunes, and write it to ``checkpoints/taylor_source_vgg.pt``.

The committed checkpoint was made with this command. It is deterministic (same code, same
library versions, same thread count: same weights), resumable (an interrupted run picks up
its last finished epoch from ``runs/pretrain/``) and never overwrites an existing checkpoint
unless told to (``--force``). Next to the weights it writes a ``.json`` with the accuracies,
the training time and where it ran.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from dataclasses import asdict
from pathlib import Path

import torch

from .. import data, results, train
from ..paths import RUNS_DIR, atomic_path
from .network import SmallVGG16
from .settings import SOURCE, SourceSettings
from .transfer import SOURCE_CLASSES, class_loaders, source_checkpoint


def pretrain(
    output: str | Path | None = None,
    settings: SourceSettings = SOURCE,
    force: bool = False,
    state: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Train :class:`SmallVGG16` on :data:`SOURCE_CLASSES` and save its ``state_dict`` to
    ``output`` (default: the committed checkpoint) with a metrics ``.json`` beside it.
    ``state``: the resumable training state (default ``runs/pretrain/<name>.state.pt``)."""
    output = Path(output) if output else source_checkpoint()
    if output.exists() and not force:
        raise FileExistsError(
            f"{output} exists and is left untouched: pass --force to replace it, or "
            f"--output to write elsewhere."
        )
    state = Path(state) if state else RUNS_DIR / "pretrain" / f"{output.stem}.state.pt"
    device = train.default_device()
    loaders = class_loaders(
        data.load_cifar10(), SOURCE_CLASSES, settings.data, settings.seed, device
    )
    train.seed_everything(settings.seed)
    model = SmallVGG16(num_classes=len(SOURCE_CLASSES)).to(device)
    history = train.fit(
        model, loaders.train, settings.train, loaders.val, settings.seed, state, progress
    )
    metrics = {
        "classes": list(SOURCE_CLASSES),
        "train_images": len(loaders.train.labels),
        "val_accuracy": history.val_accuracy[-1],
        "test_accuracy": train.evaluate(model, loaders.test)[1],
        "test_images": len(loaders.test.labels),
        "epochs": settings.train.epochs,
        "train_wall_time_s": round(history.wall_time_s, 1),
        "epoch_time_s": [round(t, 1) for t in history.epoch_time_s],
        "settings": asdict(settings),
        "commit": results.git_commit(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": results.machine_info(),
        "command": "python -m course_lib.taylor.pretrain",
    }
    with atomic_path(output) as tmp:
        torch.save(model.cpu().state_dict(), tmp)
    with atomic_path(output.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m course_lib.taylor.pretrain", description=__doc__
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="default: " + str(source_checkpoint())
    )
    parser.add_argument("--force", action="store_true", help="replace an existing checkpoint")
    args = parser.parse_args(argv)
    metrics = pretrain(args.output, force=args.force)
    print(
        f"source network: {100 * metrics['test_accuracy']:.2f} % test accuracy on "
        f"{metrics['test_images']:,} images of {len(metrics['classes'])} classes, "
        f"{metrics['train_wall_time_s'] / 60:.1f} min of training"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

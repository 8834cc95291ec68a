"""A short probe of chapter 5's binary recipe, scored on the validation split (never on test
images): the binary ResNet-20 initialized from the saved full-precision twin and trained
for a few epochs on a training subset, with one option changed.

    python scripts/bnn_probe.py --shortcut pad                 # the saved run's network
    python scripts/bnn_probe.py --shortcut avgpool             # Bi-Real's downsampling
    python scripts/bnn_probe.py --stage1-epochs 2              # activations binary first
    python scripts/bnn_probe.py --teacher baseline             # chapter 1's network teaches
    python scripts/bnn_probe.py --stage1-epochs 2 --no-stage1-clamp --restart-schedule
    python scripts/bnn_probe.py --stage1-epochs 2 --stage1-lr-scale 0.1

Needs the twin the chapter's full run saved (``checkpoints/resnet20_fp.pt``) and CIFAR-10
(``COURSE_DATA_DIR``). Prints one line: the options and the validation accuracy per epoch,
to quote in the settings' comments (``course_lib/bnn/settings.py``) beside the choice it
supports. About 10 minutes per probe on a quiet 2-core CPU (6 epochs of 10,000 images).
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from course_lib import bnn
from course_lib.bnn.resnet import init_from
from course_lib.bnn.settings import NET, bnn_settings
from course_lib.bnn.training import fit_binary
from course_lib.data import DataSettings, load_cifar10, make_loaders
from course_lib.models import load_baseline_cnn
from course_lib.train import seed_everything


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shortcut", default=NET.shortcut, choices=("pad", "avgpool", "conv"))
    parser.add_argument("--stage1-epochs", type=int, default=0)
    parser.add_argument("--teacher", default="twin", choices=("twin", "baseline"))
    parser.add_argument("--restart-schedule", action="store_true", help="a schedule per stage")
    parser.add_argument("--no-stage1-clamp", action="store_true", help="real weights unclamped")
    parser.add_argument("--stage1-lr-scale", type=float, default=1.0, help="stage 1's lr factor")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train-per-class", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    twin = bnn.load_twin()
    data = DataSettings(train_per_class=args.train_per_class, batch_size=128)
    loaders = make_loaders(load_cifar10(), data, seed=args.seed)
    teacher = load_baseline_cnn() if args.teacher == "baseline" else twin
    full = bnn_settings("full").binary
    config = replace(
        full,
        epochs=args.epochs,
        stage1_epochs=args.stage1_epochs,
        restart_schedule=args.restart_schedule,
        stage1_clamp=not args.no_stage1_clamp,
        stage1_lr_scale=args.stage1_lr_scale,
    )
    seed_everything(args.seed)
    model = bnn.binary_resnet20(replace(NET, shortcut=args.shortcut))
    init_from(model, twin)
    history = fit_binary(model, loaders.train, config, teacher, loaders.val, args.seed)
    val = [f"{100 * a:.2f}" for a in history.val_accuracy]
    print(
        f"shortcut={args.shortcut} stage1_epochs={args.stage1_epochs} teacher={args.teacher} "
        f"restart_schedule={args.restart_schedule} stage1_clamp={not args.no_stage1_clamp} "
        f"stage1_lr_scale={args.stage1_lr_scale} "
        f"epochs={args.epochs} "
        f"train={10 * args.train_per_class} seed={args.seed}: validation accuracy % per "
        f"epoch {' '.join(val)}"
    )


if __name__ == "__main__":
    main()

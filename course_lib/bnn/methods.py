"""The report's binary-network methods on one network, one recipe and one budget.

:func:`train_method` trains one method on the binary ResNet-20 (or, for ``"fp"``, its
full-precision twin) with :func:`~.training.fit_binary`, the chapter's one loop; what
differs between methods is only the network option (:class:`~.resnet.BinaryNetConfig`) and
the objective:

- ``"ste"``: ``alpha sign(W)`` and ``sign(x)`` with the clipped straight-through estimator,
  nothing else (the baseline every other binary method adds one idea to); its signs are
  tracked at threshold 1.0, which lets every flip through and counts it;
- ``"ste_kd"``: plain STE distilled from the full-precision teacher, the control for
  ``"label_aware_kd"``: what distillation alone gives, so it is not credited to a method;
- ``"recu"``: the chapter's recipe, weight standardization and the ReCU clamp (eq. 13-28)
  with the ApproxSign estimator;
- ``"dabnn"``: data-adaptive amplitudes after every binary conv (eq. 10-12);
- ``"latent_bn"``: two BatchNorm sets; every step trains both paths (cross-entropy of the
  binary path plus that of the latent path, each normalized with its own statistics,
  eq. 29-31);
- ``"label_aware"``, ``"label_aware_kd"``: ``L_ce + lambda L_rep`` (eq. 35) towards the
  latent path's penultimate features; ``_kd`` replaces ``L_ce`` by distillation from the
  full-precision teacher;
- ``"uncertainty"``: the certainty-aware sign (eq. 36-38);
- ``"bdbnn"``: ``L_ce + lambda L_k + alpha L_WDM`` (eq. 44) with the teacher's weights and
  logits;
- ``"fp"``: the full-precision ResNet-20 with the same optimizer and schedule.

Every method starts from the same trained network, chapter 5's full-precision twin (its
``start``): a binary method copies its weights into its latent weights
(:func:`~.resnet.init_from`, the start of Bi-Real, Real-to-Bin and ReActNet and of chapter
5's own recipe), ``"fp"`` goes on training a copy of it. The twin is also the teacher of
:data:`NEED_TEACHER`. So the methods differ only in what is listed above.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import nn
from torch.nn import functional as F

from ..data import Loaders
from ..models import resnet20
from ..train import evaluate, seed_everything
from .bdbnn import bdbnn_loss, paired_weights
from .label_aware import label_aware_loss
from .latent_bn import use_path
from .layers import binary_layers
from .resnet import BinaryNetConfig, BinaryResNet, binary_resnet20, init_from
from .training import BinaryTrainConfig, Objective, distillation_loss, fit_binary

METHODS = (
    "ste",
    "ste_kd",
    "recu",
    "dabnn",
    "latent_bn",
    "label_aware",
    "label_aware_kd",
    "uncertainty",
    "bdbnn",
    "fp",
)
#: Methods that learn from the trained full-precision network (``teacher=``).
NEED_TEACHER = ("ste_kd", "label_aware_kd", "bdbnn")


@dataclass(frozen=True)
class MethodOptions:
    """The methods' own hyper-parameters (not tuned for accuracy).

    ``certainty_sigma`` (the width of eq. 36, in latent-weight units): with ``None`` (each
    layer's weight standard deviation) a short check (3 epochs of 256 random images, seed 0)
    flipped no weight at all, since a weight must then stay about 1.5 standard deviations
    from zero for ``certainty_window`` steps before it may flip; 0.005 flipped about 10 %
    as many weights as plain STE in the first epoch and about 60 % in the third."""

    label_aware_lambda: float = 1e-3
    kd_distill: float = 1.0
    certainty: float = 0.9
    certainty_window: int = 5
    certainty_sigma: float | None = 0.005
    kurtosis_lambda: float = 1e-4
    kurtosis_target: float = 1.0
    wdm_alpha: float = 1.0
    wdm_beta: float = 1.0


@dataclass
class MethodRun:
    """One trained method. Its curves are measured at ``val_epochs`` (the epochs trained so
    far, fractions within an epoch where the settings evaluate more than once per epoch):
    validation accuracy (a fraction), the binary weights flipped since the previous point
    (summed over the steps; ``None`` where not tracked) and the latent path's validation
    accuracy (``dual_bn`` methods). Then the test accuracy after the last step, seconds per
    epoch and the model. Curves are on the validation split, so that nothing is read off the
    test images before the end."""

    method: str
    seed: int
    epochs: int
    val_epochs: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    test_accuracy: float | None = None
    flips: list[int] | None = None
    latent_accuracy: list[float] | None = None
    epoch_time_s: list[float] = field(default_factory=list)
    model: nn.Module | None = None


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")
    return method


def method_net(method: str, base: BinaryNetConfig, options: MethodOptions) -> BinaryNetConfig:
    """The binary ResNet-20's options for ``method``, from the plain-STE network ``base``."""
    changes = {
        "ste": {"certainty": 1.0, "certainty_window": 1},
        "ste_kd": {"certainty": 1.0, "certainty_window": 1},
        "recu": {"b_star": 1.0, "input_estimator": "approx"},
        "dabnn": {"amplitude": True},
        "latent_bn": {"dual_bn": True},
        "label_aware": {"dual_bn": True},
        "label_aware_kd": {"dual_bn": True},
        "uncertainty": {
            "certainty": options.certainty,
            "certainty_window": options.certainty_window,
            "certainty_sigma": options.certainty_sigma,
        },
    }
    return replace(base, **changes.get(check_method(method), {}))


def method_config(method: str, base: BinaryTrainConfig, options: MethodOptions):
    """The recipe for ``method``: ``base`` without the ReCU clamp (``tau = 1``) and without
    distillation, except ReCU's own schedule and the KD variants' distillation."""
    config = replace(base, tau_start=1.0, tau_end=1.0, distill=0.0, compile=False)
    if method == "recu":
        return replace(config, tau_start=base.tau_start, tau_end=base.tau_end)
    if method in ("ste_kd", "label_aware_kd"):
        return replace(config, distill=options.kd_distill)
    return config


def latent_bn_objective(config: BinaryTrainConfig) -> Objective:
    """Cross-entropy of the binary path plus that of the latent path (eq. 31): each path
    updates its own BatchNorm statistics, both train the shared weights."""

    def objective(model, x, y, teacher_logits):
        logits = model(x)
        with use_path(model, "latent"):
            latent_logits = model(x)
        ce = F.cross_entropy(latent_logits.float(), y, label_smoothing=config.label_smoothing)
        return distillation_loss(logits, y, None, config) + ce, logits

    return objective


def label_aware_objective(config: BinaryTrainConfig, lam: float) -> Objective:
    """Eq. 35 on the penultimate features: the latent path's (no gradient; its BatchNorm
    statistics still follow it) are the targets of the binary path's."""

    def objective(model, x, y, teacher_logits):
        features = model.features(x)
        logits = model.head[-1](features)
        with torch.no_grad(), use_path(model, "latent"):
            latent_features = model.features(x)
        loss = label_aware_loss(logits, y, features, latent_features, lam, config, teacher_logits)
        return loss, logits

    return objective


def bdbnn_objective(
    model: nn.Module, teacher: nn.Module, config: BinaryTrainConfig, options: MethodOptions
) -> Objective:
    """Eq. 44 with the teacher's layers paired to the student's by name."""
    pairs = paired_weights(model, teacher)

    def objective(model, x, y, teacher_logits):
        logits = model(x)
        ce = distillation_loss(logits, y, None, config)
        loss = bdbnn_loss(
            ce,
            model,
            pairs,
            lam=options.kurtosis_lambda,
            alpha=options.wdm_alpha,
            target=options.kurtosis_target,
            logits=logits,
            teacher_logits=teacher_logits,
            beta=options.wdm_beta,
        )
        return loss, logits

    return objective


def total_flips(model: nn.Module) -> int:
    """Binary weights flipped so far, over every tracked binary layer."""
    return sum(int(m.tracker.total_flips) for m in binary_layers(model) if m.tracker is not None)


def build_model(
    method: str, net: BinaryNetConfig, options: MethodOptions, start: nn.Module | None = None
) -> nn.Module:
    """The network ``method`` trains, initialized from the trained full-precision
    ``start`` when one is given (a fresh initialization otherwise)."""
    if method == "fp":
        model = resnet20()
        if start is not None:
            model.load_state_dict(start.state_dict())
        return model
    model = binary_resnet20(method_net(method, net, options))
    if start is not None:
        init_from(model, start)
    return model


def evaluation_steps(steps_per_epoch: int, epochs: int, per_epoch: int) -> dict[int, float]:
    """The training steps (counted from 0) after which the curves are measured, ``per_epoch``
    times per epoch at even spacing, the last step of every epoch included, each mapped to
    the epochs trained by then."""
    if per_epoch < 1 or per_epoch > steps_per_epoch:
        raise ValueError(
            f"evaluations per epoch must be in [1, {steps_per_epoch}] (the steps per epoch), "
            f"got {per_epoch}"
        )
    points = {}
    for epoch in range(epochs):
        for j in range(1, per_epoch + 1):
            step = epoch * steps_per_epoch - (-j * steps_per_epoch // per_epoch) - 1
            points[step] = (step + 1) / steps_per_epoch
    return points


def train_method(
    method: str,
    loaders: Loaders,
    config: BinaryTrainConfig,
    net: BinaryNetConfig,
    seed: int = 0,
    options: MethodOptions = MethodOptions(),
    teacher: nn.Module | None = None,
    progress: bool = True,
    start: nn.Module | None = None,
    evaluations_per_epoch: int = 1,
    test: bool = True,
) -> MethodRun:
    """Train ``method`` (one of :data:`METHODS`) for ``config.epochs`` epochs with ``seed``
    on ``loaders.train``, from the trained full-precision ``start`` (``None``: from a fresh
    initialization); validation accuracy on ``loaders.val`` ``evaluations_per_epoch`` times
    per epoch, test accuracy on ``loaders.test`` after the last step (``test=False``: left
    ``None`` for a caller that runs the test images itself). ``net`` is
    the plain-STE binary network the method's option is added to; ``teacher``: the trained
    full-precision ResNet-20 (needed by :data:`NEED_TEACHER`; never changed)."""
    check_method(method)
    if method in NEED_TEACHER and teacher is None:
        raise ValueError(
            f"method {method!r} learns from a full-precision teacher: train 'fp' first and "
            f"pass its model as teacher="
        )
    seed_everything(seed)
    model = build_model(method, net, options, start)
    config = method_config(method, config, options)
    objective = None
    if method == "latent_bn":
        objective = latent_bn_objective(config)
    elif method.startswith("label_aware"):
        objective = label_aware_objective(config, options.label_aware_lambda)
    elif method == "bdbnn":
        objective = bdbnn_objective(model, teacher, config, options)
    tracked = any(m.tracker is not None for m in binary_layers(model))
    dual = isinstance(model, BinaryResNet) and model.cfg.dual_bn
    run = MethodRun(method, seed, config.epochs, flips=[] if tracked else None)
    run.latent_accuracy = [] if dual else None
    counted = [0]
    points = evaluation_steps(len(loaders.train), config.epochs, evaluations_per_epoch)

    def step_end(step: int) -> None:
        if step not in points:
            return
        run.val_epochs.append(points[step])
        run.val_accuracy.append(evaluate(model, loaders.val)[1])
        if run.flips is not None:
            flips = total_flips(model)
            run.flips.append(flips - counted[0])
            counted[0] = flips
        if run.latent_accuracy is not None:
            with use_path(model, "latent"):
                run.latent_accuracy.append(evaluate(model, loaders.val)[1])

    use_teacher = teacher if (method in NEED_TEACHER) else None
    history = fit_binary(
        model,
        loaders.train,
        config,
        teacher=use_teacher,
        seed=seed,
        progress=progress,
        objective=objective,
        step_end=step_end,
    )
    run.epoch_time_s = list(history.epoch_time_s)
    if test:
        run.test_accuracy = evaluate(model, loaders.test)[1]
    run.model = model
    return run

"""Which filters matter? Molchanov et al.'s first-order Taylor criterion, and the criteria
the paper compares it with.

The seed (eq. 11) asks for the weights ``W'`` with at most ``B`` non-zero entries that
change the loss least, ``min |E(W) - E(W')|``. Expanding ``E`` to first order around the
point where one unit is zeroed (eq. 12-18) gives ``|E(W) - E(W')| ~ |dE/dz * z|``: the
loss changes by about the product of the unit's value and its gradient. For a **filter**
``k`` of a convolution, whose output is a feature map ``z_k`` of ``H x W`` values per
image, Molchanov et al. (2017, eq. 8 and the text after it) average that product over the
map, take its magnitude **for each example**, and then average over the batch:

    Theta(z_k) = 1/N sum_n | 1/(HW) sum_{h,w} z_k[n,h,w] * dC_n/dz_k[n,h,w] |

(``C_n``: example ``n``'s cross-entropy; ``z_k``: the feature map after the filter's
BatchNorm and ReLU, the value the next layer reads), add it up over batches, and divide
every layer's scores by their L2 norm (the layer-wise normalization) before ranking all
filters of the network together. :func:`taylor_scores` computes it with hooks on the
feature maps. Its variant ``"taylor-batch"`` takes the magnitude only after the batch mean,
``| 1/N sum_n ... |``, so that examples that push a filter's loss in opposite directions
cancel (an earlier version of this course did that); the comparison criteria are :func:`l1_scores` (Li et al., 2017: the L1 norm
of the filter's weights), :func:`activation_scores` (the mean of the feature map) and
:func:`random_scores`.

Scores are dicts ``{conv name: 1-D tensor, one score per filter}``; a high score means
"keep". Gradient-based scores are computed in eval mode (BatchNorm uses its running
statistics, dropout is off), so they depend only on the weights and the data.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn

from .network import conv_layers

Scores = dict[str, torch.Tensor]
Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]

CRITERIA = ("taylor", "taylor-batch", "l1", "activation", "random")
"""The criteria of the chapter's comparison (Molchanov et al., 2017, Sec. 3 and 4), and
``taylor-batch``, the Taylor criterion with the magnitude taken after the batch mean."""

ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU)
FOLLOWERS = (nn.BatchNorm2d, *ACTIVATIONS)


def feature_maps(model: nn.Module) -> dict[str, nn.Module]:
    """For every ``Conv2d``, the module whose output is that convolution's feature map: the
    last of the BatchNorm and activation modules that directly follow it (in registration
    order, which is the forward order of ``nn.Sequential`` networks such as VGG), or the
    convolution itself when none follows."""
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    maps = {}
    for i, (name, module) in enumerate(leaves):
        if not isinstance(module, nn.Conv2d):
            continue
        last = module
        for _, follower in leaves[i + 1 :]:
            if not isinstance(follower, FOLLOWERS):
                break
            last = follower
            if isinstance(follower, ACTIVATIONS):
                break
        maps[name] = last
    if not maps:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer to score filters of")
    return maps


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _check_batches(seen: int) -> None:
    if seen == 0:
        raise ValueError("no batches to score the filters on: pass at least one (x, y) batch")


def taylor_per_batch(activation: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """One batch's Taylor scores, one per filter: the mean over the examples of
    ``|mean over (h, w) of z * dC_n/dz|``. ``activation`` and ``grad`` are ``(N, K, H, W)``;
    ``grad`` is that of the batch's **mean** loss, so example ``n``'s own gradient is
    ``N * grad[n]``, and the ``1/N`` of the batch mean and the ``N`` cancel: the sum over
    the batch."""
    return (activation * grad).float().mean(dim=(2, 3)).abs().sum(dim=0)


def taylor_batch_mean_per_batch(activation: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """The ``taylor-batch`` variant: ``|1/N sum_n mean over (h, w) of z * dC_n/dz|``, the
    magnitude taken after the batch mean (contributions of opposite sign cancel). With
    ``grad`` that of the batch's mean loss, the same bookkeeping as
    :func:`taylor_per_batch`: the sum over the batch, then the magnitude. Never above
    :func:`taylor_per_batch` (the triangle inequality); equal for a batch of one image."""
    return (activation * grad).float().mean(dim=(2, 3)).sum(dim=0).abs()


def taylor_scores(
    model: nn.Module,
    batches: Batches,
    loss_fn: Callable = nn.functional.cross_entropy,
    per_example: bool = True,
) -> Scores:
    """Molchanov's first-order Taylor criterion, per filter, summed over ``batches``
    (not normalized; see :func:`normalize_per_layer`): :func:`taylor_per_batch`, or with
    ``per_example=False`` the ``taylor-batch`` variant (:func:`taylor_batch_mean_per_batch`).
    ``loss_fn`` must average over the batch (the default does). Uses forward hooks on the
    feature maps (:func:`feature_maps`) and tensor hooks on their gradients; leaves no hook
    and no ``.grad`` behind."""
    per_batch = taylor_per_batch if per_example else taylor_batch_mean_per_batch
    maps = feature_maps(model)
    totals: Scores = {}
    handles = []

    def on_forward(name: str) -> Callable:
        def hook(_module, _inputs, output: torch.Tensor) -> None:
            activation = output.detach()

            def on_gradient(grad: torch.Tensor) -> None:
                totals[name] = totals.get(name, 0) + per_batch(activation, grad)

            output.register_hook(on_gradient)

        return hook

    for name, module in maps.items():
        handles.append(module.register_forward_hook(on_forward(name)))
    seen = 0
    try:
        with _eval_mode(model):
            for x, y in batches:
                model.zero_grad(set_to_none=True)
                loss_fn(model(x), y).backward()
                seen += 1
    finally:
        for handle in handles:
            handle.remove()
        model.zero_grad(set_to_none=True)
    _check_batches(seen)
    return {name: totals[name].cpu() for name in maps}


@torch.no_grad()
def activation_scores(model: nn.Module, batches: Batches) -> Scores:
    """Mean activation of every feature map over the images, height and width of
    ``batches`` (Molchanov et al.'s "activation" criterion: filters whose output is mostly
    zero after the ReLU matter little)."""
    maps = feature_maps(model)
    sums: Scores = {}
    counts = {name: 0 for name in maps}

    def on_forward(name: str) -> Callable:
        def hook(_module, _inputs, output: torch.Tensor) -> None:
            n, _, h, w = output.shape
            sums[name] = sums.get(name, 0) + output.float().sum(dim=(0, 2, 3))
            counts[name] += n * h * w

        return hook

    handles = [m.register_forward_hook(on_forward(name)) for name, m in maps.items()]
    seen = 0
    try:
        with _eval_mode(model):
            for x, _ in batches:
                model(x)
                seen += 1
    finally:
        for handle in handles:
            handle.remove()
    _check_batches(seen)
    return {name: (sums[name] / counts[name]).cpu() for name in maps}


@torch.no_grad()
def l1_scores(model: nn.Module) -> Scores:
    """The L1 norm of every filter's weights (Li et al., 2017), ``sum |W[k]|``."""
    return {
        name: conv.weight.detach().abs().flatten(1).sum(1).float().cpu()
        for name, conv in conv_layers(model).items()
    }


def random_scores(model: nn.Module, seed: int) -> Scores:
    """Uniform random scores (the baseline every criterion must beat), drawn with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return {
        name: torch.rand(conv.out_channels, generator=generator)
        for name, conv in conv_layers(model).items()
    }


def normalize_per_layer(scores: Scores) -> Scores:
    """Divide every layer's scores by their L2 norm (Molchanov et al., 2017, Sec. 2.3), so
    that the scores of layers of different depth and width can be ranked together. A layer
    whose scores are all zero stays zero."""
    return {name: s / s.norm().clamp_min(torch.finfo(s.dtype).tiny) for name, s in scores.items()}


def score_filters(model: nn.Module, criterion: str, batches: Batches, seed: int = 0) -> Scores:
    """The scores of ``criterion`` (one of :data:`CRITERIA`), ready for a network-wide
    ranking: normalized per layer, except ``random``, which ranks every filter alike."""
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}: use one of {', '.join(CRITERIA)}")
    if criterion == "random":
        return random_scores(model, seed)
    if criterion == "l1":
        raw = l1_scores(model)
    elif criterion == "activation":
        raw = activation_scores(model, batches)
    else:
        raw = taylor_scores(model, batches, per_example=criterion == "taylor")
    return normalize_per_layer(raw)


def lowest_filters(scores: Scores, count: int, min_filters: int = 1) -> dict[str, list[int]]:
    """The ``count`` filters of lowest score over all layers together, as ``{conv name:
    sorted filter indices}``, never leaving a layer with fewer than ``min_filters``.
    Ties are broken by layer order, then filter index (deterministic)."""
    if count < 0 or min_filters < 1:
        raise ValueError(f"need count >= 0 and min_filters >= 1, got {count}, {min_filters}")
    removable = sum(max(len(s) - min_filters, 0) for s in scores.values())
    if count > removable:
        raise ValueError(
            f"cannot remove {count} filters: only {removable} can go while every layer keeps "
            f"{min_filters}"
        )
    flat = [
        (float(v), layer, i)
        for layer, (_, s) in enumerate(scores.items())
        for i, v in enumerate(s.tolist())
    ]
    names = list(scores)
    left = {name: len(s) for name, s in scores.items()}
    chosen: dict[str, list[int]] = {}
    for _, layer, index in sorted(flat):
        if count == 0:
            break
        name = names[layer]
        if left[name] <= min_filters:
            continue
        chosen.setdefault(name, []).append(index)
        left[name] -= 1
        count -= 1
    return {name: sorted(idx) for name, idx in chosen.items()}


def first_order_check(
    model: nn.Module,
    batches: Batches,
    layer: str,
    filters: int | None = None,
    loss_fn: Callable = nn.functional.cross_entropy,
) -> dict[str, list[float]]:
    """How well does the first-order term predict what removing a filter does to the loss?

    For the first ``filters`` filters of conv ``layer``: ``actual``, the change of the mean
    loss over ``batches`` when the filter's feature map is set to zero (measured, one
    forward pass per filter), and ``estimated``, its first-order Taylor estimate
    ``-sum z * dC/dz`` (eq. 17 with the feature map in the role of the weight). Losses in
    nats; eval mode."""
    batches = list(batches)
    maps = feature_maps(model)
    if layer not in maps:
        raise ValueError(f"no conv layer {layer!r}: use one of {', '.join(maps)}")
    module = maps[layer]
    module_filters = conv_layers(model)[layer].out_channels
    count = module_filters if filters is None else min(filters, module_filters)
    total = sum(len(y) for _, y in batches)
    estimated = torch.zeros(count)

    def record(_module, _inputs, output):
        activation = output.detach()

        def on_gradient(grad):
            nonlocal estimated
            product = (activation * grad).float().sum(dim=(0, 2, 3))[:count]
            estimated -= product.cpu() * len(activation) / total

        output.register_hook(on_gradient)

    def mean_loss(zeroed: int | None = None) -> float:
        def zero(_module, _inputs, output):
            output = output.clone()
            output[:, zeroed] = 0
            return output

        handle = module.register_forward_hook(zero) if zeroed is not None else None
        try:
            with torch.no_grad():
                return sum(float(loss_fn(model(x), y)) * len(y) for x, y in batches) / total
        finally:
            if handle is not None:
                handle.remove()

    with _eval_mode(model):
        handle = module.register_forward_hook(record)
        try:
            for x, y in batches:
                loss_fn(model(x), y).backward()
        finally:
            handle.remove()
            model.zero_grad(set_to_none=True)
        base = mean_loss()
        actual = [mean_loss(k) - base for k in range(count)]
    return {"layer": layer, "estimated": estimated.tolist(), "actual": actual}

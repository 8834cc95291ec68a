"""The chapter's experiment, one function per step, so that the notebook stays thin:
train the full-precision twin, train the binary ResNet-20 from it, pack it, check it and
measure what it costs. The training steps take the chapter's :class:`~course_lib.chapter.Run`
(its settings, seed and resume cache) and time themselves as the run's sections; a full run
keeps resumable training states in ``runs/full/bnn_cache/`` and its final weights in
``checkpoints/``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .. import measure
from ..chapter import Run, section
from ..data import Loaders
from ..models import resnet20
from ..paths import checkpoint as checkpoint_path
from ..paths import output_dir
from ..train import History, fit, seed_everything
from .engine import PackedResNet, save_packed
from .kernel import PackedConv, reference_dot
from .layers import binary_layers
from .resnet import BinaryResNet, binary_resnet20, init_from
from .scaling import layer_errors
from .training import fit_binary

TWIN_FILE = "resnet20_fp.pt"
BINARY_FILE = "bnn_resnet20_latent.pt"
PACKED_FILE = "bnn_resnet20.cbnn"


@section("twin")
def train_twin(run: Run, loaders: Loaders, progress: bool = True) -> tuple[nn.Module, History]:
    """The full-precision ResNet-20 (:func:`course_lib.models.resnet20`), SGD as in chapter 1,
    with the run's ``settings.twin`` and seed; saved to the profile's output folder."""
    seed_everything(run.seed)
    twin = resnet20()
    history = fit(
        twin,
        loaders.train,
        run.settings.twin,
        loaders.val,
        seed=run.seed,
        checkpoint=run.cache(f"twin_seed{run.seed}.pt"),
        progress=progress,
    )
    torch.save(twin.state_dict(), output_dir(run.profile) / TWIN_FILE)
    return twin, history


@section("binary network")
def train_binary(
    run: Run, twin: nn.Module, loaders: Loaders, progress: bool = True
) -> tuple[BinaryResNet, History]:
    """The binary ResNet-20 (``settings.net``), initialized from the trained twin and, when
    ``settings.binary.distill > 0``, distilled from it; saved to the profile's output folder."""
    settings = run.settings
    seed_everything(run.seed)
    model = binary_resnet20(settings.net)
    init_from(model, twin)
    history = fit_binary(
        model,
        loaders.train,
        settings.binary,
        teacher=twin if settings.binary.distill > 0 else None,
        val_loader=loaders.val,
        seed=run.seed,
        checkpoint=run.cache(f"binary_seed{run.seed}.pt"),
        progress=progress,
    )
    torch.save(model.state_dict(), output_dir(run.profile) / BINARY_FILE)
    return model, history


def load_twin(profile: str = "full") -> nn.Module:
    """Chapter 5's trained full-precision twin as a run of ``profile`` reads it (the
    committed ``checkpoints/resnet20_fp.pt``; see :func:`course_lib.paths.checkpoint`), in
    eval mode: chapter 5b's common start and teacher."""
    path = checkpoint_path(TWIN_FILE, profile)
    if not path.exists():
        raise FileNotFoundError(
            f"no full-precision twin at {path}: chapter 5b starts every method from chapter "
            f"5's trained twin; run chapter 5 first (course run notebooks/05_bnn.ipynb "
            f"--profile {profile}), or restore checkpoints/{TWIN_FILE} with git."
        )
    twin = resnet20()
    twin.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return twin.eval()


def quantization_errors(model: BinaryResNet) -> dict[str, dict[str, float]]:
    """Eq. 8 per binary layer of the trained model (with and without XNOR's alpha)."""
    return layer_errors(model)


def check_layers_exact(model: BinaryResNet, x: torch.Tensor, backend: str) -> dict:
    """Feed ``x`` through the model and check every binary conv of the packed kernel
    against the float reference (a conv of the +-1 tensors) on that conv's real input.
    Returns the number of layers and of output values compared, and how many differ."""
    inputs: dict[nn.Module, torch.Tensor] = {}
    hooks = [
        layer.register_forward_hook(lambda m, i, o: inputs.__setitem__(m, i[0].detach()))
        for layer in binary_layers(model)
    ]
    model.eval()
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    values = mismatches = 0
    for layer, act in inputs.items():
        exported = layer.export_binary()
        packed = PackedConv.from_signs(
            exported["sign"], exported["threshold"], layer.stride[0], layer.padding[0]
        )
        want = reference_dot(
            act, exported["threshold"], exported["sign"], layer.stride[0], layer.padding[0]
        )
        got = packed.dot(act.float().permute(0, 2, 3, 1).contiguous(), backend).permute(0, 3, 1, 2)
        values += want.numel()
        mismatches += int((got != want).sum())
    return {"layers": len(inputs), "values": values, "mismatches": mismatches}


@torch.no_grad()
def test_logits(
    model: BinaryResNet, engine: PackedResNet, loaders: Loaders
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The PyTorch model's logits (eval mode), the packed network's and the labels, over the
    test images in the loader's order, both networks given the same NCHW tensors."""
    model.eval()
    logits, packed, labels = [], [], []
    for x, y in loaders.test:
        x = x.contiguous()
        logits.append(model(x))
        packed.append(engine(x))
        labels.append(y)
    return torch.cat(logits), torch.cat(packed), torch.cat(labels)


def logit_agreement(logits: torch.Tensor, packed: torch.Tensor, labels: torch.Tensor) -> dict:
    """How far the packed network's logits are from the PyTorch model's, and its accuracy."""
    return {
        "images": len(labels),
        "identical_logits": bool(torch.equal(packed, logits)),
        "max_abs_logit_difference": float((packed - logits).abs().max()),
        "same_prediction": float((packed.argmax(1) == logits.argmax(1)).float().mean()),
        "packed_accuracy": float((packed.argmax(1) == labels).float().mean()),
    }


def compare_logits(model: BinaryResNet, engine: PackedResNet, loaders: Loaders) -> dict:
    """The packed network's logits against the PyTorch model's on the test images
    (:func:`logit_agreement` of :func:`test_logits`)."""
    return logit_agreement(*test_logits(model, engine, loaders))


def sizes(engine: PackedResNet, twin: nn.Module, binary: BinaryResNet, path: Path) -> dict:
    """Bytes on disk: the packed file, the float32 twin and the binary model's float32
    latent weights (``torch.save`` of the state dicts), and the ratios."""
    packed = save_packed(engine, path)
    fp32 = measure.size_on_disk(twin)
    latent = measure.size_on_disk(binary)
    return {
        "packed_bytes": packed,
        "fp32_twin_bytes": fp32,
        "fp32_latent_bytes": latent,
        "fp32_params_bytes": 4 * measure.count_params(twin),
        "packed_size_ratio": fp32 / packed,
    }


def packed_path(profile: str) -> Path:
    return output_dir(profile) / PACKED_FILE

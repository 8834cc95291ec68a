"""Packed inference for a trained binary ResNet: what runs on the device, and its file.

:class:`PackedResNet` turns a trained :class:`~.resnet.BinaryResNet` into

- the full-precision stem (conv + BN + activation) and classifier, run with PyTorch ops
  exactly as the model runs them;
- one :class:`~.kernel.PackedConv` per binary conv, with XNOR-Net's ``alpha`` and the
  following BatchNorm **folded** into one scale and one bias per output channel
  (``BN(alpha * dot) = dot * alpha * gamma / sqrt(var + eps) + (beta - mean * gamma /
  sqrt(var + eps))``, :func:`~.resnet.fold`), and the Bi-Real shortcut and the activation
  fused into the kernel's epilogue. Activations between binary layers stay NHWC float32:
  the next layer packs them.

The model in eval mode computes the same folded form (:func:`~.resnet.folded`), so for the
same NCHW input the two give the same predictions with logits within about 2e-6, not to
the bit (the chapter's saved full run: every one of 10,000 test predictions the same, the
largest logit difference 1.9e-6; :func:`~.experiment.compare_logits` measures both).

DA-BNN's data-adaptive amplitudes (:mod:`.dabnn`) sit between the conv and its BatchNorm
and depend on the data, so they cannot fold: in such a layer the kernel computes only
``alpha * dot`` (``scale = alpha``, ``bias = 0``, no epilogue), and the amplitude, the
BatchNorm, the shortcut and the activation follow. Layer by layer
(:meth:`PackedResNet.body_layer_by_layer`, and the PyTorch backend) they are the PyTorch
operations the model runs in eval mode (:class:`AmplitudeTail`), so the logits match the
model's (bit for bit on the tests' 8x8 inputs; within 1e-7 on 32x32 images, measured); in
the native body they are plain C++ loops over the NHWC map (``amplitude_tail``
in ``csrc/binary_conv.cpp``), the same function with sums in another order. The model
computes the amplitudes' means, small convolutions and sigmoids in double and rounds them
once to float32 (:mod:`.dabnn`), and its BatchNorm as ``x * scale + shift``
(:func:`~.resnet.affine_of`); the native tail does the same, so it gives the same floats
except, rarely, where a factor's double lies within its last few bits of a float32 rounding
boundary (the tests: the same floats as layer by layer; logits within 1e-5). That is the
amplitudes' price at inference: a 7x7 conv of two maps, two reductions and two sigmoids per
layer. (The model computes them in float64 in eval mode only: see :mod:`.dabnn`.)

The file (:func:`save_packed`) is a small JSON header and the raw bytes of every tensor:
1 bit per binary weight, float32 for everything else.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..paths import atomic_path
from .dabnn import DataAdaptiveAmplitude, apply_amplitude
from .kernel import ACTIVATIONS, PackedConv, kernel_path, load_kernel, resolve_backend
from .layers import BinaryConv2d
from .resnet import (
    AvgPoolShortcut,
    BinaryResNet,
    PadShortcut,
    affine_of,
    fold,
    running_statistics,
)

MAGIC = b"CBNNPACK"
VERSION = 1


def act_name(module: nn.Module) -> str:
    if isinstance(module, nn.PReLU):
        return "prelu"
    return "hardtanh" if isinstance(module, nn.Hardtanh) else "identity"


def apply_act(
    x: torch.Tensor, act: str, slope: torch.Tensor | None, channel_dim: int
) -> torch.Tensor:
    """The activation as the PyTorch model computes it (NCHW: ``channel_dim=1``)."""
    if act == "hardtanh":
        return F.hardtanh(x)
    if act == "prelu":
        return F.prelu(x, slope) if channel_dim == 1 else torch.where(x > 0, x, slope * x)
    return x


@dataclass
class AmplitudeTail:
    """What follows the packed dot in a DA-BNN layer, in PyTorch on NCHW maps:
    ``act(BN(A(alpha * dot)) + residual)``, ``A`` from the two kernels of eq. 11-12, BN in
    its eval form ``x * scale + shift`` (:func:`~.resnet.affine_of`, as the model runs it)."""

    channel_kernel: torch.Tensor
    spatial_kernel: torch.Tensor
    bn: dict[str, torch.Tensor]  # bn_tensors("bn", ...)

    def affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The BatchNorm's ``(scale, shift)`` per channel."""
        mean, var, weight, bias, eps = (self.bn[f"bn.{k}"] for k in BN_FIELDS)
        return affine_of(mean, var, weight, bias, float(eps))

    def __call__(
        self, m: torch.Tensor, residual: torch.Tensor, act: str, slope: torch.Tensor | None
    ) -> torch.Tensor:
        """``m``: ``alpha * dot`` NHWC; ``residual`` NHWC; returns NHWC float32."""
        # an NCHW view of the NHWC map (channels-last memory), the layout in which the
        # model's conv hands its output to the amplitude
        m = apply_amplitude(m.permute(0, 3, 1, 2), self.channel_kernel, self.spatial_kernel)
        scale, shift = self.affine()
        y = m * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)
        y = apply_act(y + residual.permute(0, 3, 1, 2), act, slope, channel_dim=1)
        return nhwc(y)


@dataclass
class PackedLayer:
    """One binary conv with its folded scale and bias, and the activation after the add.
    With a DA-BNN ``tail``, ``scale`` is ``alpha`` and ``bias`` zero: the kernel gives
    ``alpha * dot`` and the tail does the rest."""

    conv: PackedConv
    scale: torch.Tensor
    bias: torch.Tensor
    act: str
    slope: torch.Tensor | None
    tail: AmplitudeTail | None = None

    @classmethod
    def from_modules(
        cls,
        conv: BinaryConv2d,
        bn: nn.BatchNorm2d,
        act: nn.Module,
        amplitude: DataAdaptiveAmplitude | None = None,
    ) -> PackedLayer:
        exported = conv.export_binary()
        packed = PackedConv.from_signs(
            exported["sign"], exported["threshold"], conv.stride[0], conv.padding[0]
        )
        slope = act.weight.detach().float().clone() if isinstance(act, nn.PReLU) else None
        if amplitude is None:
            scale, bias = fold(conv, bn)
            return cls(packed, scale, bias, act_name(act), slope)
        alpha = exported["alpha"].float()
        tail = AmplitudeTail(
            amplitude.channel_conv.weight.detach().float().clone(),
            amplitude.spatial_conv.weight.detach().float().clone(),
            bn_tensors("bn", bn),
        )
        return cls(packed, alpha, torch.zeros_like(alpha), act_name(act), slope, tail)

    def __call__(self, x: torch.Tensor, residual: torch.Tensor, backend: str) -> torch.Tensor:
        if self.tail is not None:
            m = self.conv.forward(x, self.scale, self.bias, None, "identity", None, backend)
            return self.tail(m, residual, self.act, self.slope)
        if backend == "cpp":  # the kernel directly: the checks ran when the layer was packed
            args = self.kernel_args()
            return args[0](x, *args[1:6], residual, *args[6:])
        return self.conv.forward(x, self.scale, self.bias, residual, self.act, self.slope, backend)

    def kernel_args(self) -> tuple:
        """``conv_fused`` and its per-layer arguments, prepared once: at batch 1 the Python
        work per call would otherwise cost as much as a small layer's popcounts."""
        if getattr(self, "_args", None) is None:
            c = self.conv
            slope = torch.zeros(0) if self.slope is None else self.slope.float().contiguous()
            self._args = (
                load_kernel().conv_fused,
                c.threshold,
                c.words(),
                c.taps,
                self.scale.float().contiguous(),
                self.bias.float().contiguous(),
                ACTIVATIONS[self.act],
                slope,
                c.stride,
                c.padding,
            )
        return self._args


class PackedResNet:
    """A trained binary ResNet, packed. ``engine(images)`` -> logits, like the model in
    eval mode. ``backend``: "auto" (C++ kernel where it builds), "cpp" or "torch";
    ``threads``: 1 (the default, the embedded case) runs the binary kernels on the calling
    thread alone; more splits their pixels over PyTorch's intra-op pool, whose size
    ``torch.set_num_threads`` sets (the full-precision stem, head and shortcut convs always
    run on that pool).

    With the C++ backend the binary body (every block, from the stem's output to the head's
    input) is one native call (:meth:`native_body`): the weights are put in the inner loop's
    layout once, and control does not return to Python between layers."""

    def __init__(
        self, tensors: dict[str, torch.Tensor], meta: dict, backend: str = "auto", threads: int = 1
    ):
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.tensors, self.meta, self.threads = tensors, meta, threads
        self.backend = resolve_backend(backend)
        self._native = None
        self.layers: list[PackedLayer] = []
        for i, spec in enumerate(meta["layers"]):
            t = lambda name, i=i: tensors[f"layers.{i}.{name}"]  # noqa: E731
            conv = PackedConv(
                t("bits"), t("threshold"), spec["in_channels"], spec["stride"], spec["padding"]
            )
            slope = tensors.get(f"layers.{i}.slope")
            tail = None
            if spec.get("amplitude"):
                bn = {f"bn.{k}": t(f"bn.{k}") for k in BN_FIELDS}
                tail = AmplitudeTail(t("amp.channel"), t("amp.spatial"), bn)
            self.layers.append(PackedLayer(conv, t("scale"), t("bias"), spec["act"], slope, tail))

    # --- building ---------------------------------------------------------------------------

    @classmethod
    def from_model(
        cls, model: BinaryResNet, backend: str = "auto", threads: int = 1
    ) -> PackedResNet:
        """Pack a trained binary ResNet (its eval-mode behaviour)."""
        if not isinstance(model, BinaryResNet):
            raise TypeError(f"expected a BinaryResNet, got {type(model).__name__}")
        model = model.cpu().eval()
        conv, bn, act = model.stem
        tensors: dict[str, torch.Tensor] = {"stem.weight": conv.weight.detach().float()}
        tensors.update(bn_tensors("stem.bn", bn))
        if isinstance(act, nn.PReLU):
            tensors["stem.slope"] = act.weight.detach().float()
        layers, blocks = [], []
        for b, block in enumerate(model.stages):
            shortcut = block.shortcut
            kind = "identity"
            if isinstance(shortcut, PadShortcut):
                kind = "pad"
            elif isinstance(shortcut, AvgPoolShortcut):
                kind = "avgpool"
            elif isinstance(shortcut, nn.Sequential):
                kind = "conv"
                tensors[f"blocks.{b}.shortcut.weight"] = shortcut[0].weight.detach().float()
                tensors.update(bn_tensors(f"blocks.{b}.shortcut.bn", shortcut[1]))
            blocks.append({"shortcut": kind, "stride": block.conv1.stride[0]})
            for c, bn_m, act_m, amp in (
                (block.conv1, block.bn1, block.act1, block.amp1),
                (block.conv2, block.bn2, block.act2, block.amp2),
            ):
                layer = PackedLayer.from_modules(c, bn_m, act_m, amp)
                i = len(layers)
                tensors[f"layers.{i}.bits"] = layer.conv.bits
                tensors[f"layers.{i}.threshold"] = layer.conv.threshold
                tensors[f"layers.{i}.scale"] = layer.scale
                tensors[f"layers.{i}.bias"] = layer.bias
                if layer.slope is not None:
                    tensors[f"layers.{i}.slope"] = layer.slope
                spec = {
                    "in_channels": layer.conv.in_channels,
                    "stride": layer.conv.stride,
                    "padding": layer.conv.padding,
                    "act": layer.act,
                }
                if layer.tail is not None:
                    spec["amplitude"] = True
                    tensors[f"layers.{i}.amp.channel"] = layer.tail.channel_kernel
                    tensors[f"layers.{i}.amp.spatial"] = layer.tail.spatial_kernel
                    tensors.update({f"layers.{i}.{k}": v for k, v in layer.tail.bn.items()})
                layers.append(spec)
        linear = model.head[-1]
        tensors["head.weight"] = linear.weight.detach().float()
        tensors["head.bias"] = linear.bias.detach().float()
        meta = {"stem_act": act_name(act), "layers": layers, "blocks": blocks}
        return cls({k: v.contiguous() for k, v in tensors.items()}, meta, backend, threads)

    # --- running ------------------------------------------------------------------------------

    @torch.no_grad()
    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """Full-precision stem, NCHW images -> NHWC float32 (as the model computes it)."""
        t = self.tensors
        y = F.conv2d(x.float(), t["stem.weight"], padding=1)
        y = apply_bn(y, t, "stem.bn")
        y = apply_act(y, self.meta["stem_act"], t.get("stem.slope"), channel_dim=1)
        return load_kernel().to_nhwc(y) if self.backend == "cpp" else nhwc(y)

    @torch.no_grad()
    def body(self, h: torch.Tensor) -> torch.Tensor:
        """The binary blocks, NHWC float32 in and out: one native call with the C++
        backend, layer by layer from Python with the PyTorch one."""
        if self.backend == "cpp":
            return self.native_body().forward(h, self.threads)
        return self.body_layer_by_layer(h)

    def native_body(self):
        """The C++ ``PackedBody`` holding every binary layer (built on first use)."""
        if self._native is None:
            self._native = build_native_body(self)
        return self._native

    @torch.no_grad()
    def body_layer_by_layer(self, h: torch.Tensor) -> torch.Tensor:
        """The binary blocks one :class:`PackedLayer` at a time (each layer one kernel call
        with the C++ backend): the reference the native body is tested against."""
        for b, block in enumerate(self.meta["blocks"]):
            first, second = self.layers[2 * b], self.layers[2 * b + 1]
            h1 = first(h, self.shortcut(b, block, h, first.conv.out_channels), self.backend)
            h = second(h1, h1, self.backend)
        return h

    def shortcut(self, b: int, block: dict, h: torch.Tensor, out_channels: int) -> torch.Tensor:
        if block["shortcut"] == "identity":
            return h
        s = block["stride"]
        if block["shortcut"] == "pad":
            y = h[:, ::s, ::s, :]
            return F.pad(y, (0, out_channels - h.shape[-1])).contiguous()
        if block["shortcut"] == "avgpool":  # on the NCHW layout, as the model pools
            y = (
                F.avg_pool2d(h.permute(0, 3, 1, 2).contiguous(), s)
                if s > 1
                else h.permute(0, 3, 1, 2)
            )
            return nhwc(torch.cat([y] * (out_channels // h.shape[-1]), dim=1))
        t = self.tensors
        y = F.conv2d(h.permute(0, 3, 1, 2), t[f"blocks.{b}.shortcut.weight"], stride=s)
        y = apply_bn(y, t, f"blocks.{b}.shortcut.bn")
        return nhwc(y)

    @torch.no_grad()
    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Global average pooling and the full-precision classifier, NHWC -> logits (in
        NCHW, as the model pools, so that the sums run in the same order)."""
        h = load_kernel().to_nchw(h) if self.backend == "cpp" else h.permute(0, 3, 1, 2)
        pooled = F.adaptive_avg_pool2d(h.contiguous(), 1).flatten(1)
        return F.linear(pooled, self.tensors["head.weight"], self.tensors["head.bias"])

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of NCHW images: with the C++ backend one native call (stem, body, head)."""
        if self.backend == "cpp":
            return self.native_body().forward_images(x, self.threads)
        return self.head(self.body(self.stem(x)))

    def describe(self) -> str:
        path = f"one C++ call, {kernel_path()}" if self.backend == "cpp" else "pure PyTorch"
        amplitudes = sum(layer.tail is not None for layer in self.layers)
        extra = f", {amplitudes} with DA-BNN amplitudes" if amplitudes else ""
        threads = f", {self.threads} threads" if self.threads > 1 else ""
        return f"packed binary ResNet ({len(self.layers)} binary convs{extra}, {path}{threads})"


SHORTCUTS = {"identity": 0, "pad": 1, "conv": 2, "avgpool": 3}
"""The C++ body's shortcut kinds (``Shortcut`` in ``csrc/binary_conv.cpp``)."""


def build_native_body(engine: PackedResNet):
    """The C++ ``PackedBody`` of ``engine``: its blocks' shortcuts and its layers in order,
    the weights in the kernel's word layout."""
    body = load_kernel().PackedBody()
    empty = torch.zeros(0)
    t = engine.tensors
    for b, block in enumerate(engine.meta["blocks"]):
        out_channels = engine.layers[2 * b].conv.out_channels
        if block["shortcut"] == "conv":
            p = f"blocks.{b}.shortcut"
            mean, var, weight, bias, eps = (t[f"{p}.bn.{k}"] for k in BN_FIELDS)
            body.add_block(
                2,
                block["stride"],
                out_channels,
                t[f"{p}.weight"],
                mean,
                var,
                weight,
                bias,
                float(eps),
            )
        else:
            kind = SHORTCUTS[block["shortcut"]]
            body.add_block(
                kind, block["stride"], out_channels, empty, empty, empty, empty, empty, 0.0
            )
    for layer in engine.layers:
        c = layer.conv
        slope = empty if layer.slope is None else layer.slope.float().contiguous()
        body.add_layer(
            c.threshold,
            c.words(),
            c.taps,
            layer.scale.float(),
            layer.bias.float(),
            ACTIVATIONS[layer.act],
            slope,
            c.stride,
            c.padding,
        )
        if layer.tail is not None:
            body.set_amplitude(
                layer.tail.channel_kernel, layer.tail.spatial_kernel, *layer.tail.affine()
            )
    mean, var, weight, bias, eps = (t[f"stem.bn.{k}"] for k in BN_FIELDS)
    act = engine.meta["stem_act"]
    slope = t.get("stem.slope", empty)
    body.set_stem(t["stem.weight"], mean, var, weight, bias, float(eps), ACTIVATIONS[act], slope)
    body.set_head(t["head.weight"], t["head.bias"])
    return body


def nhwc(x: torch.Tensor) -> torch.Tensor:
    """NCHW -> contiguous NHWC."""
    return x.permute(0, 2, 3, 1).contiguous()


BN_FIELDS = ("mean", "var", "weight", "bias", "eps")
"""The tensors an eval-mode BatchNorm is stored as, each under ``<prefix>.<field>``."""


def apply_bn(x: torch.Tensor, tensors: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    """An eval-mode BatchNorm on NCHW ``x`` from the tensors :func:`bn_tensors` stored
    under ``prefix``."""
    mean, var, weight, bias, eps = (tensors[f"{prefix}.{k}"] for k in BN_FIELDS)
    return F.batch_norm(x, mean, var, weight, bias, False, 0.0, float(eps))


def bn_tensors(prefix: str, bn: nn.BatchNorm2d) -> dict[str, torch.Tensor]:
    """An eval-mode BatchNorm's tensors (a dual BatchNorm's binary-path statistics)."""
    mean, var = running_statistics(bn)
    values = (mean, var, bn.weight, bn.bias, torch.tensor(float(bn.eps)))
    return {f"{prefix}.{k}": v.detach().float() for k, v in zip(BN_FIELDS, values, strict=True)}


# --- the file ----------------------------------------------------------------------------------

DTYPES = {"float32": torch.float32, "uint8": torch.uint8}


class PackedFileError(ValueError):
    """A file that is not, or no longer, a packed binary network."""


def save_packed(engine: PackedResNet, path: str | Path) -> int:
    """Write ``engine`` to ``path`` (atomically); returns the file's size in bytes."""
    entries, blobs, offset = [], [], 0
    for name, tensor in engine.tensors.items():
        dtype = str(tensor.dtype).removeprefix("torch.")
        if dtype not in DTYPES:
            raise TypeError(f"{name}: cannot store dtype {dtype}")
        data = tensor.contiguous().numpy().tobytes()
        entries.append(
            {"name": name, "dtype": dtype, "shape": list(tensor.shape), "offset": offset}
        )
        blobs.append(data)
        offset += len(data)
    header = json.dumps(
        {"version": VERSION, "meta": engine.meta, "tensors": entries, "payload_bytes": offset},
        separators=(",", ":"),
    ).encode()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(MAGIC + struct.pack("<I", len(header)) + header)
            for data in blobs:
                f.write(data)
    return Path(path).stat().st_size


def load_packed(path: str | Path, backend: str = "auto", threads: int = 1) -> PackedResNet:
    """Read a file written by :func:`save_packed`. Raises :class:`PackedFileError` when the
    file is missing, of another kind, truncated or from a newer version."""
    path = Path(path)
    if not path.exists():
        raise PackedFileError(f"no packed network at {path}: write one with save_packed first")
    raw = path.read_bytes()
    if not raw.startswith(MAGIC) or len(raw) < len(MAGIC) + 4:
        raise PackedFileError(f"{path} is not a packed binary network (no {MAGIC!r} header)")
    (size,) = struct.unpack("<I", raw[len(MAGIC) : len(MAGIC) + 4])
    start = len(MAGIC) + 4
    try:
        header = json.loads(raw[start : start + size])
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PackedFileError(f"{path}: the header is corrupt ({error})") from error
    if header.get("version") != VERSION:
        raise PackedFileError(
            f"{path}: format version {header.get('version')}, this code reads {VERSION}"
        )
    payload = raw[start + size :]
    if len(payload) != header["payload_bytes"]:
        raise PackedFileError(
            f"{path} is truncated or padded: {len(payload)} payload bytes, expected "
            f"{header['payload_bytes']}. Save the network again."
        )
    tensors = {}
    for entry in header["tensors"]:
        dtype = DTYPES[entry["dtype"]]
        count = 1
        for s in entry["shape"]:
            count *= s
        nbytes = count * torch.empty(0, dtype=dtype).element_size()
        chunk = bytearray(payload[entry["offset"] : entry["offset"] + nbytes])
        tensors[entry["name"]] = (
            torch.frombuffer(chunk, dtype=dtype).reshape(entry["shape"]).clone()
        )
    return PackedResNet(tensors, header["meta"], backend, threads)

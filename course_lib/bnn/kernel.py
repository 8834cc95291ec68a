"""The packed binary convolution: XNOR and popcount instead of multiply-adds (eq. 5-7).

For vectors ``a, w`` in {-1, +1}^K stored as bits (1 for -1), ``a . w = K - 2 popcount(a xor
w)``: 64 products per 64-bit word and two instructions. The layout (channels-last, so that
a 3x3 patch is a run of contiguous bytes) and the zero-padding correction are described in
``csrc/binary_conv.cpp``. Two backends compute exactly the same integers and floats:

- ``"cpp"``: the C++ kernel, compiled with ``torch.utils.cpp_extension`` at first use into torch's
  extension cache (``$TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``), never
  into the source tree. Its popcount is picked at run time from what the CPU has
  (:data:`ISAS`, fastest last): AVX-512 VPOPCNTDQ, AVX2 (a nibble-table popcount), the
  POPCNT instruction, or portable C++;
- ``"torch"``: the same algorithm in plain PyTorch ops (bit packing, ``xor``, a bytewise
  popcount), slower, for machines where the kernel cannot be built.

:func:`reference_dot` is what both must equal: a float convolution of the +-1 tensors,
zero padded.

Packing granularity: every pixel's signs take ``ceil(C / 8)`` **bytes**, and a patch is its
``k * k`` pixels' bytes back to back, padded to whole 64-bit words. With one 64-bit word per
pixel instead, ResNet-20's 16-channel layers would use 16 of every 64 bits (a 3x3 patch: 9
words); byte packing needs 3 words (18 bytes) for the same patch.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch.nn import functional as F

from .binarize import sign

SOURCE = Path(__file__).with_name("csrc") / "binary_conv.cpp"
EXTENSION_NAME = "course_bnn_binary_conv"
BACKENDS = ("auto", "cpp", "torch")
ACTIVATIONS = {"identity": 0, "hardtanh": 1, "prelu": 2}
ISAS = ("portable", "popcnt", "avx2", "avx512-vpopcntdq")
"""The C++ kernel's popcount implementations, slowest first (``Isa`` in the C++ source)."""
#: Bytes of the (pixels x output channels x patch bytes) xor tensor the torch backend
#: materializes at a time.
TORCH_CHUNK_BYTES = 1 << 26


class KernelUnavailable(RuntimeError):
    """The C++ kernel could not be built or loaded here."""


@lru_cache(maxsize=1)
def _load(verbose: bool = False):
    from torch.utils import cpp_extension

    log = logging.getLogger("torch.utils.cpp_extension")
    level = log.level
    log.setLevel(logging.DEBUG if verbose else logging.ERROR)  # "no CUDA runtime" is noise here
    try:
        return cpp_extension.load(
            name=EXTENSION_NAME,
            sources=[str(SOURCE)],
            extra_cflags=["-O3", "-ffp-contract=off"],
            verbose=verbose,
        )
    finally:
        log.setLevel(level)


def load_kernel(verbose: bool = False):
    """The compiled kernel module (built on the first call, about a minute; cached by torch
    afterwards). Raises :class:`KernelUnavailable` with the reason and what to do."""
    try:
        return _load(verbose)
    except Exception as error:  # a compiler, ninja or header problem: many exception types
        raise KernelUnavailable(
            f"the packed binary kernel could not be built ({first_error(error)}). It needs "
            f"a C++ compiler and ninja (`pip install ninja`); see the build log with "
            f"course_lib.bnn.kernel.load_kernel(verbose=True). Meanwhile use backend='torch': "
            f"the same outputs in pure PyTorch, slower."
        ) from error


def first_error(error: Exception) -> str:
    """The first compiler error line of a failed build (or the exception itself)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line.lower()]
    return (errors or lines or [type(error).__name__])[0][:300]


def kernel_available() -> bool:
    """True if the C++ kernel builds and loads on this machine."""
    try:
        load_kernel()
    except KernelUnavailable:
        return False
    return True


def kernel_path() -> str:
    """Which popcount the C++ kernel uses here, one of :data:`ISAS` (``"unavailable"`` when
    it cannot be built)."""
    try:
        return load_kernel().kernel_path()
    except KernelUnavailable:
        return "unavailable"


def resolve_backend(backend: str) -> str:
    """``"auto"`` -> ``"cpp"`` when the kernel loads, else ``"torch"`` (with a warning)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    try:
        load_kernel()
        return "cpp"
    except KernelUnavailable as error:
        warnings.warn(f"{error} Using backend='torch'.", RuntimeWarning, stacklevel=2)
        return "torch"


# --- packing (pure PyTorch) -------------------------------------------------------------------


def pack_bits(negative: torch.Tensor) -> torch.Tensor:
    """Booleans ``(..., C)`` -> ``(..., ceil(C / 8))`` uint8, bit ``c % 8`` of byte ``c // 8``."""
    c = negative.shape[-1]
    padded = F.pad(negative.to(torch.uint8), (0, (-c) % 8))
    groups = padded.reshape(*negative.shape[:-1], -1, 8)
    weights = torch.tensor([1 << i for i in range(8)], dtype=torch.uint8)
    return (groups * weights).sum(-1, dtype=torch.uint8)


def pack_signs(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """NHWC float32 activations -> NHWC sign bits (1 where ``x - threshold`` is negative)."""
    return pack_bits(torch.signbit(x - threshold))


def pack_weight_bits(sign_w: torch.Tensor) -> torch.Tensor:
    """+-1 weights ``(O, C, kh, kw)`` -> sign bits ``(O, kh, kw, ceil(C / 8))`` uint8."""
    return pack_bits(torch.signbit(sign_w).permute(0, 2, 3, 1))


def tap_sums(sign_w: torch.Tensor) -> torch.Tensor:
    """``S[i, j, o] = sum_c w[o, c, i, j]``: what a zero-padded tap would have added."""
    return sign_w.sum(1).permute(1, 2, 0).round().to(torch.int32).contiguous()


def popcount_bytes(b: torch.Tensor) -> torch.Tensor:
    """Bits set in every byte of a uint8 tensor (SWAR: no lookup table, no wider type)."""
    b = b - ((b >> 1) & 0x55)
    b = (b & 0x33) + ((b >> 2) & 0x33)
    return (b + (b >> 4)) & 0x0F


def reference_dot(
    x: torch.Tensor, threshold: torch.Tensor, sign_w: torch.Tensor, stride: int, padding: int
) -> torch.Tensor:
    """The float reference: ``conv2d(sign(x - threshold), sign_w)`` with zero padding, in
    float64 (exact for these integers). ``x`` NCHW; returns int32 NCHW."""
    signs = sign(x.double() - threshold.double().view(1, -1, 1, 1))
    out = F.conv2d(signs, sign_w.double(), stride=stride, padding=padding)
    return out.round().to(torch.int32)


# --- one packed layer ----------------------------------------------------------------------


@dataclass
class PackedConv:
    """A binary conv stored as bits: ``bits`` (O, kh, kw, ceil(C/8)) uint8, the input
    ``threshold`` (C,) float32, ``stride`` and ``padding``. The kernel's layouts (64-bit
    words, K-major) and the padding corrections are derived from the bits."""

    bits: torch.Tensor
    threshold: torch.Tensor
    in_channels: int
    stride: int
    padding: int

    def __post_init__(self) -> None:
        o, kh, kw, b = self.bits.shape
        if b != (self.in_channels + 7) // 8:
            raise ValueError(
                f"bits have {b} bytes per tap, {self.in_channels} channels need "
                f"{(self.in_channels + 7) // 8}"
            )
        if self.threshold.shape != (self.in_channels,):
            raise ValueError(f"threshold must have shape ({self.in_channels},)")
        self.threshold = self.threshold.float().contiguous()
        self.taps = tap_sums(self.sign_weight())
        self._words: torch.Tensor | None = None

    @classmethod
    def from_signs(
        cls, sign_w: torch.Tensor, threshold: torch.Tensor, stride: int, padding: int
    ) -> PackedConv:
        """Pack +-1 weights ``(O, C, kh, kw)``."""
        return cls(pack_weight_bits(sign_w), threshold, sign_w.shape[1], stride, padding)

    @property
    def out_channels(self) -> int:
        return self.bits.shape[0]

    @property
    def kernel_size(self) -> tuple[int, int]:
        return self.bits.shape[1], self.bits.shape[2]

    def sign_weight(self) -> torch.Tensor:
        """The +-1 weights ``(O, C, kh, kw)`` float32, unpacked from the bits."""
        shifts = torch.arange(8, dtype=torch.uint8)
        bits = (self.bits.unsqueeze(-1) >> shifts) & 1  # (O, kh, kw, B, 8)
        negative = bits.flatten(-2)[..., : self.in_channels]
        return (1.0 - 2.0 * negative.float()).permute(0, 3, 1, 2).contiguous()

    def words(self) -> torch.Tensor:
        if self._words is None:
            self._words = load_kernel().kernel_weights(self.bits)
        return self._words

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        kh, kw = self.kernel_size
        return (
            (h + 2 * self.padding - kh) // self.stride + 1,
            (w + 2 * self.padding - kw) // self.stride + 1,
        )

    def dot(self, x: torch.Tensor, backend: str = "auto") -> torch.Tensor:
        """Integer dot products ``(N, OH, OW, O)`` int32 of ``sign(x - threshold)`` (``x``
        NHWC float32) and the weights: equal to :func:`reference_dot`, NHWC."""
        self.check_input(x)
        if resolve_backend(backend) == "cpp":
            packed = load_kernel().pack_activations(x, self.threshold, self.padding)
            n, h, w, c = x.shape
            return load_kernel().conv_dot(
                packed, h, w, c, self.words(), self.taps, self.stride, self.padding
            )
        return self.torch_dot(x)

    def forward(
        self,
        x: torch.Tensor,
        scale: torch.Tensor,
        bias: torch.Tensor,
        residual: torch.Tensor | None = None,
        act: str = "identity",
        slope: torch.Tensor | None = None,
        backend: str = "auto",
    ) -> torch.Tensor:
        """The fused layer, NHWC float32: ``act(dot * scale + bias [+ residual])``, where
        ``scale`` and ``bias`` hold XNOR-Net's alpha and the folded BatchNorm."""
        self.check_input(x)
        if act not in ACTIVATIONS:
            raise ValueError(f"unknown act {act!r}: use one of {', '.join(ACTIVATIONS)}")
        slope = torch.zeros(0) if slope is None else slope.float()
        if resolve_backend(backend) == "cpp":
            return load_kernel().conv_fused(
                x,
                self.threshold,
                self.words(),
                self.taps,
                scale.float(),
                bias.float(),
                residual,
                ACTIVATIONS[act],
                slope,
                self.stride,
                self.padding,
            )
        return epilogue(self.torch_dot(x), scale, bias, residual, act, slope)

    def check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[-1] != self.in_channels or x.dtype != torch.float32:
            raise ValueError(
                f"expected float32 NHWC input with {self.in_channels} channels, got "
                f"{x.dtype} of shape {tuple(x.shape)}"
            )

    def torch_dot(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`dot` in plain PyTorch: pack, im2col on bytes, xor, popcount, correct."""
        kh, kw = self.kernel_size
        p, s = self.padding, self.stride
        n, h, w, c = x.shape
        oh, ow = self.output_size(h, w)
        packed = F.pad(pack_signs(x.contiguous(), self.threshold), (0, 0, p, p, p, p))
        patches = packed.unfold(1, kh, s).unfold(2, kw, s)  # (N, OH, OW, B, kh, kw)
        patches = patches.permute(0, 1, 2, 4, 5, 3).reshape(n * oh * ow, -1)
        weights = self.bits.reshape(self.out_channels, -1)
        rows = max(1, TORCH_CHUNK_BYTES // max(1, weights.numel()))
        counts = torch.cat(
            [
                popcount_bytes(chunk[:, None, :] ^ weights[None]).sum(-1, dtype=torch.int32)
                for chunk in patches.split(rows)
            ]
        )
        dot = kh * kw * c - 2 * counts - self.padding_correction(h, w).repeat(n, 1)
        return dot.reshape(n, oh, ow, self.out_channels).to(torch.int32)

    def padding_correction(self, h: int, w: int) -> torch.Tensor:
        """``(OH * OW, O)`` int32: what the +1 bits of the padded taps added to each output."""
        kh, kw = self.kernel_size
        oh, ow = self.output_size(h, w)
        rows = torch.arange(oh)[:, None] * self.stride + torch.arange(kh) - self.padding
        cols = torch.arange(ow)[:, None] * self.stride + torch.arange(kw) - self.padding
        bad_rows, bad_cols = (rows < 0) | (rows >= h), (cols < 0) | (cols >= w)
        padded = bad_rows[:, None, :, None] | bad_cols[None, :, None, :]  # (OH, OW, kh, kw)
        taps = self.taps.reshape(kh * kw, -1).double()
        return (padded.reshape(oh * ow, -1).double() @ taps).round().to(torch.int32)


def epilogue(
    dot: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor,
    residual: torch.Tensor | None,
    act: str,
    slope: torch.Tensor | None,
) -> torch.Tensor:
    """``act(dot * scale + bias [+ residual])`` with the C++ kernel's float operations, one
    rounding each, in its order (so both backends agree to the bit)."""
    y = dot.float() * scale.float()
    y = y + bias.float()
    if residual is not None:
        y = y + residual
    if act == "hardtanh":
        y = torch.clamp(y, -1.0, 1.0)
    elif act == "prelu":
        y = torch.where(y > 0, y, slope * y)
    return y


def isas_here() -> tuple[str, ...]:
    """The popcount implementations this CPU can run (all give the same integers)."""
    k = load_kernel()
    k.force_isa(ISAS[-1])
    return ISAS[: ISAS.index(k.kernel_path()) + 1]


@contextlib.contextmanager
def capped_isa(name: str) -> Iterator[None]:
    """Run the C++ kernel with at most the popcount ``name`` (tests compare every path)."""
    if name not in ISAS:
        raise ValueError(f"unknown popcount {name!r}: use one of {', '.join(ISAS)}")
    load_kernel().force_isa(name)
    try:
        yield
    finally:
        load_kernel().force_isa(ISAS[-1])

"""Binary neural networks and a bit-packed CPU kernel (the course's chapter 5, seed 004).

One concept per module:

- :mod:`.binarize`: ``sign`` and its straight-through estimators (eq. 2-4, 9): the clipped
  identity and Bi-Real's ApproxSign;
- :mod:`.scaling`: XNOR-Net's per-channel ``alpha`` and the quantization error (eq. 7-8);
- :mod:`.recu`: the rectified clamp unit, its Laplace quantile, QE(tau), the entropy, weight
  standardization and the tau schedule (eq. 13-28);
- :mod:`.layers`: binary conv and linear layers with latent real weights;
- :mod:`.resnet`: the binary ResNet-20 with Bi-Real shortcuts (and its initialization from
  the full-precision twin);
- :mod:`.training`: the binary training recipe (Adam, distillation, two stages, schedule);
- :mod:`.kernel`: the packed XNOR/popcount convolution (C++ with AVX-512, or pure PyTorch);
- :mod:`.engine`: packed inference of a whole trained network, and its file format;
- :mod:`.benchmark`: kernel and network latency with the course's protocol;
- :mod:`.experiment`: the chapter's steps; :mod:`.settings`, :mod:`.plots`, :mod:`.summary`.
"""

from . import plots, summary
from .benchmark import kernel_benchmark, network_benchmark
from .binarize import ApproxSign, IdentitySTE, SignSTE, binarize, sign, surrogate_curves
from .engine import PackedFileError, PackedResNet, load_packed, save_packed
from .experiment import (
    check_layers_exact,
    compare_logits,
    packed_path,
    quantization_errors,
    sizes,
    test_accuracy,
    train_binary,
    train_twin,
)
from .kernel import (
    KernelUnavailable,
    PackedConv,
    kernel_available,
    kernel_path,
    load_kernel,
    reference_dot,
)
from .layers import BinaryConv2d, BinaryLinear, binary_layers, set_tau
from .recu import (
    analysis,
    entropy_of_tau,
    laplace_quantile,
    qe_of_tau,
    qe_printed,
    recu_clamp,
    sampled_curve,
    standardize,
    tau_schedule,
)
from .resnet import BinaryNetConfig, BinaryResNet, binary_resnet20, init_from
from .scaling import layer_errors, quantization_error, xnor_alpha
from .settings import bnn_settings
from .training import BinaryTrainConfig, fit_binary

__all__ = [
    "ApproxSign",
    "BinaryConv2d",
    "BinaryLinear",
    "BinaryNetConfig",
    "BinaryResNet",
    "BinaryTrainConfig",
    "IdentitySTE",
    "KernelUnavailable",
    "PackedConv",
    "PackedFileError",
    "PackedResNet",
    "SignSTE",
    "analysis",
    "binarize",
    "binary_layers",
    "binary_resnet20",
    "bnn_settings",
    "check_layers_exact",
    "compare_logits",
    "entropy_of_tau",
    "fit_binary",
    "init_from",
    "kernel_available",
    "kernel_benchmark",
    "kernel_path",
    "laplace_quantile",
    "layer_errors",
    "load_kernel",
    "load_packed",
    "network_benchmark",
    "packed_path",
    "plots",
    "qe_of_tau",
    "qe_printed",
    "quantization_error",
    "quantization_errors",
    "recu_clamp",
    "reference_dot",
    "sampled_curve",
    "save_packed",
    "set_tau",
    "sign",
    "sizes",
    "standardize",
    "summary",
    "surrogate_curves",
    "tau_schedule",
    "test_accuracy",
    "train_binary",
    "train_twin",
    "xnor_alpha",
]

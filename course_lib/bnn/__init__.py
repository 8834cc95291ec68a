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
- the report's other methods, one module each: :mod:`.dabnn` (data-adaptive amplitudes,
  eq. 10-12), :mod:`.latent_bn` (latent-weight inference with two BatchNorm statistics,
  eq. 29-31), :mod:`.label_aware` (label-aware representation loss, eq. 32-35),
  :mod:`.uncertainty` (the certainty-aware sign, eq. 36-38), :mod:`.bdbnn` (kurtosis
  regularization and weight-distribution mimicking, eq. 39-44); :mod:`.methods` trains
  any of them (and plain STE, ReCU, full precision) on the binary ResNet-20, and
  :mod:`.comparison` compares them all under one budget;
- :mod:`.kernel`: the packed XNOR/popcount convolution (C++ with AVX-512, or pure PyTorch);
- :mod:`.engine`: packed inference of a whole trained network, and its file format;
- :mod:`.benchmark`: kernel and network latency with the course's protocol;
- :mod:`.experiment`: the chapter's steps; :mod:`.settings`, :mod:`.plots`, :mod:`.summary`.
"""

from ..train import accuracy_on_test
from . import plots, summary
from .bdbnn import (
    bdbnn_loss,
    distribution_kl,
    kurtosis,
    kurtosis_loss,
    latent_weights,
    paired_weights,
    wdm_loss,
    weight_distribution,
)
from .benchmark import kernel_benchmark, network_benchmark
from .binarize import ApproxSign, IdentitySTE, SignSTE, binarize, sign, surrogate_curves
from .comparison import compare_methods
from .dabnn import DataAdaptiveAmplitude
from .engine import PackedFileError, PackedResNet, load_packed, save_packed
from .experiment import (
    check_layers_exact,
    compare_logits,
    load_twin,
    packed_path,
    quantization_errors,
    sizes,
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
from .label_aware import label_aware_loss, representation_loss
from .latent_bn import DualBatchNorm2d, LatentPathConv, set_path, use_path
from .layers import BinaryConv2d, BinaryLinear, binary_layers, set_tau
from .methods import METHODS, MethodOptions, MethodRun, train_method
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
from .settings import bnn_settings, methods_settings
from .training import BinaryTrainConfig, fit_binary, kd_divergence
from .uncertainty import UncertaintyTracker, gaussian_uncertainty

__all__ = [
    "ApproxSign",
    "BinaryConv2d",
    "BinaryLinear",
    "BinaryNetConfig",
    "BinaryResNet",
    "BinaryTrainConfig",
    "DataAdaptiveAmplitude",
    "DualBatchNorm2d",
    "IdentitySTE",
    "METHODS",
    "MethodOptions",
    "MethodRun",
    "KernelUnavailable",
    "LatentPathConv",
    "PackedConv",
    "PackedFileError",
    "PackedResNet",
    "SignSTE",
    "UncertaintyTracker",
    "analysis",
    "bdbnn_loss",
    "binarize",
    "binary_layers",
    "binary_resnet20",
    "bnn_settings",
    "check_layers_exact",
    "compare_methods",
    "compare_logits",
    "distribution_kl",
    "entropy_of_tau",
    "fit_binary",
    "gaussian_uncertainty",
    "init_from",
    "kd_divergence",
    "kernel_available",
    "kernel_benchmark",
    "kernel_path",
    "kurtosis",
    "kurtosis_loss",
    "label_aware_loss",
    "laplace_quantile",
    "latent_weights",
    "layer_errors",
    "load_kernel",
    "load_packed",
    "methods_settings",
    "network_benchmark",
    "packed_path",
    "paired_weights",
    "plots",
    "qe_of_tau",
    "qe_printed",
    "quantization_error",
    "quantization_errors",
    "recu_clamp",
    "reference_dot",
    "representation_loss",
    "sampled_curve",
    "save_packed",
    "set_path",
    "set_tau",
    "sign",
    "sizes",
    "standardize",
    "summary",
    "surrogate_curves",
    "tau_schedule",
    "accuracy_on_test",
    "load_twin",
    "train_binary",
    "train_method",
    "train_twin",
    "use_path",
    "wdm_loss",
    "weight_distribution",
    "xnor_alpha",
]

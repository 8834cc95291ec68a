"""Tests of course_lib.bnn: exact where the answer is exact (signs, gradients, popcounts,
hand-computed alphas and errors), tight tolerances for floats, tiny inputs throughout."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from course_lib import bnn, measure
from course_lib.bnn import kernel, recu, scaling
from course_lib.bnn.engine import PackedFileError, PackedResNet, load_packed, save_packed
from course_lib.bnn.layers import set_binary_inputs, set_binary_weights
from course_lib.bnn.training import BinaryTrainConfig, fit_binary, lr_factor
from course_lib.models import resnet20

# --- sign and its estimators (eq. 2-4, 9) ----------------------------------------------------


def test_sign_is_plus_one_at_zero_and_keeps_dtype():
    x = torch.tensor([-2.0, -1e-30, 0.0, 1e-30, 3.0])
    assert bnn.sign(x).tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0]
    assert bnn.sign(x.to(torch.bfloat16)).dtype == torch.bfloat16


@pytest.mark.parametrize(
    "estimator, expected",
    [
        ("ste", [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]),
        ("approx", [0.0, 0.0, 0.5, 2.0, 1.5, 0.0, 0.0]),
        ("identity", [1.0] * 7),
    ],
)
def test_estimator_gradients_are_the_surrogates(estimator, expected):
    x = torch.tensor([-1.5, -1.0, -0.75, 0.0, 0.25, 1.0, 2.0], requires_grad=True)
    out = bnn.binarize(x, estimator)
    out.backward(torch.ones_like(out))
    assert out.tolist() == [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0]
    assert x.grad.tolist() == expected


def test_unknown_estimator_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown estimator 'tanh'"):
        bnn.binarize(torch.zeros(2), "tanh")


def test_surrogate_curves_come_from_autograd():
    curves = bnn.surrogate_curves(torch.tensor([0.0, 0.5, 1.5]))
    assert curves["ste"]["gradient"].tolist() == [1.0, 1.0, 0.0]
    assert curves["approx"]["gradient"].tolist() == [2.0, 1.0, 0.0]


# --- XNOR-Net alpha and QE (eq. 7-8) ------------------------------------------------------------


def test_alpha_and_quantization_error_by_hand():
    w = torch.tensor([[1.0, -3.0], [2.0, 2.0]])
    assert scaling.xnor_alpha(w).flatten().tolist() == [2.0, 2.0]
    # with alpha: ((1-2)^2 + (-3+2)^2 + 0 + 0) / 4; without: (0 + 4 + 1 + 1) / 4
    assert scaling.quantization_error(w) == pytest.approx(0.5)
    assert scaling.quantization_error(w, 1.0) == pytest.approx(1.5)


def test_alpha_minimizes_the_error():
    w = torch.randn(8, 4, 3, 3)
    best = scaling.quantization_error(w)
    alpha = scaling.xnor_alpha(w)
    for factor in (0.9, 1.1):
        assert scaling.quantization_error(w, alpha * factor) > best
    with pytest.raises(ValueError, match="conv or linear weight"):
        scaling.xnor_alpha(torch.ones(3))


# --- ReCU (eq. 13-28) --------------------------------------------------------------------------


@pytest.mark.parametrize("tau", [0.5, 0.7, 0.85, 0.99])
def test_laplace_quantile_matches_the_distribution(tau):
    b = 0.3
    expected = torch.distributions.Laplace(0.0, b).icdf(torch.tensor(tau)).item()
    assert recu.laplace_quantile(tau, b) == pytest.approx(expected, rel=1e-5, abs=1e-7)
    assert math.isinf(recu.laplace_quantile(1.0, b))
    with pytest.raises(ValueError, match="tau must be in"):
        recu.laplace_quantile(0.3, b)


def test_recu_clamps_the_tails_it_should():
    w = torch.distributions.Laplace(0.0, 0.05).sample((200_000,))
    for tau in (0.8, 0.95):
        clamped = recu.recu_clamp(w, tau)
        q = recu.laplace_quantile(tau, w.abs().mean().item())
        assert clamped.abs().max().item() == pytest.approx(q, rel=1e-5)
        assert (clamped.abs() >= q * (1 - 1e-6)).float().mean().item() == pytest.approx(
            2 * (1 - tau), abs=0.01
        )
        exact = recu.recu_clamp(w, tau, "empirical")
        assert (exact < exact.max()).float().mean().item() == pytest.approx(tau, abs=1e-3)
    assert torch.equal(recu.recu_clamp(w, 1.0), w)
    with pytest.raises(ValueError, match="unknown estimate"):
        recu.recu_clamp(w, 0.9, "median")


def test_tau_schedule_is_eq_28():
    values = [recu.tau_schedule(i, 100, 0.85, 0.99) for i in range(101)]
    assert values[0] == pytest.approx(0.85) and values[-1] == pytest.approx(0.99)
    steps = np.diff(values)
    assert (steps > 0).all() and (np.diff(steps) > 0).all(), "rising, fastest at the end"
    assert values[50] == pytest.approx(
        0.14 / (math.e - 1) * math.exp(0.5) + (math.e * 0.85 - 0.99) / (math.e - 1)
    )


def test_quantization_error_of_tau_closed_forms_and_numerics():
    for tau in (0.6, 0.82, 0.95):
        assert recu.qe_of_tau(tau, 0.7) == pytest.approx(recu.qe_numerical(tau, 0.7), rel=1e-4)
        assert recu.alpha_of_tau(tau, 0.7) == pytest.approx(0.7 * (2 * tau - 1))
        gap = recu.qe_printed(tau) - recu.qe_of_tau(tau)
        assert gap == pytest.approx(2 * (2 - 2 * tau) ** 3), "the printed form's extra term"
    assert 0.815 <= recu.argmin_tau(recu.qe_printed) <= 0.825, "the report's 0.82"
    assert recu.argmin_tau(recu.qe_of_tau) == 0.5, "solved, QE rises with tau"
    w = torch.distributions.Laplace(0.0, 1.0).sample((400_000,))
    assert recu.qe_sampled(w, 0.82) == pytest.approx(recu.qe_of_tau(0.82), rel=0.02)


def test_entropy_closed_form_and_its_slope():
    for b in (0.2, 1 / math.e, 1.5):
        for tau in (0.6, 0.9):
            assert recu.entropy_of_tau(tau, b) == pytest.approx(
                recu.entropy_numerical(tau, b), abs=1e-6
            )
    assert recu.entropy_of_tau(0.5, 0.3) == pytest.approx(math.log(2))
    assert recu.entropy_of_tau(0.9, 1.0) > recu.entropy_of_tau(0.6, 1.0)
    assert recu.entropy_of_tau(0.9, 0.2) < recu.entropy_of_tau(0.6, 0.2)


def test_standardize_sets_the_laplace_scale_per_channel():
    w = torch.randn(4, 3, 3, 3) * torch.tensor([0.1, 1.0, 5.0, 0.01]).view(-1, 1, 1, 1)
    out = recu.standardize(w, 0.5)
    torch.testing.assert_close(out.std(dim=(1, 2, 3)), torch.full((4,), math.sqrt(2) * 0.5))


# --- layers and the network ---------------------------------------------------------------------


def test_binary_conv_forward_by_hand_and_its_gradients():
    torch.manual_seed(0)
    layer = bnn.BinaryConv2d(3, 4, 3, 1, 1, b_star=1.0, threshold=True)
    layer.threshold.data.copy_(torch.tensor([0.1, -0.2, 0.0]))
    bnn.set_tau(layer, 0.9)
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    w = recu.recu_clamp(recu.standardize(layer.weight, 1.0), 0.9)
    expected = F.conv2d(
        bnn.sign(x - layer.threshold.view(1, -1, 1, 1)),
        scaling.xnor_alpha(w) * bnn.sign(w),
        padding=1,
    )
    out = layer(x)
    torch.testing.assert_close(out, expected)
    out.square().sum().backward()
    for tensor in (layer.weight, layer.threshold, x):
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0
    set_binary_inputs(layer, False)
    assert torch.allclose(
        layer(x), F.conv2d(x, scaling.xnor_alpha(w) * bnn.sign(w), padding=1), atol=1e-5
    )


def test_stage_one_of_two_stage_training_keeps_real_weights_and_binary_activations():
    layer = bnn.BinaryConv2d(4, 6, b_star=1.0, threshold=True)
    bnn.set_tau(layer, 0.9)
    x = torch.randn(2, 4, 5, 5)
    w = recu.recu_clamp(recu.standardize(layer.weight, 1.0), 0.9)
    binary_x = bnn.sign(x - layer.threshold.view(1, -1, 1, 1))
    set_binary_weights(layer, False)  # the papers' stage 1: activations first
    torch.testing.assert_close(layer(x), F.conv2d(binary_x, w, padding=1))
    set_binary_weights(layer, True)
    torch.testing.assert_close(
        layer(x), F.conv2d(binary_x, scaling.xnor_alpha(w) * bnn.sign(w), padding=1)
    )


def test_binary_linear_uses_binary_inputs_and_weights():
    layer = bnn.BinaryLinear(5, 3, scaling=False)
    x = torch.randn(4, 5)
    torch.testing.assert_close(layer(x), F.linear(bnn.sign(x), bnn.sign(layer.weight), layer.bias))


def test_binary_resnet_shapes_and_initialization_from_the_twin():
    twin, model = resnet20(), bnn.binary_resnet20()
    copied = bnn.init_from(model, twin)
    assert set(copied) == set(twin.state_dict()), "every tensor of the twin has a place"
    assert len(bnn.binary_layers(model)) == 18
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert torch.equal(model.stages[4].conv1.weight, twin.stages[4].conv1.weight)
    pad = bnn.binary_resnet20(bnn.BinaryNetConfig(shortcut="pad"))
    assert sum(p.numel() for p in pad.parameters()) < sum(p.numel() for p in model.parameters())
    with pytest.raises(ValueError, match="unknown act"):
        bnn.BinaryNetConfig(act="gelu")


def test_lr_schedule_warms_up_and_decays_to_zero():
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(10, 100, 10) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10) == pytest.approx(0.0, abs=1e-12)


def test_each_stage_can_have_its_own_schedule_and_stage_1_an_unclamped_weight():
    from course_lib.bnn.training import scheduled_tau, stage_span

    assert stage_span(30, 100, 20, restart=False) == (30, 100)
    assert stage_span(10, 100, 20, restart=True) == (10, 20)
    assert stage_span(30, 100, 20, restart=True) == (10, 80)  # the second stage starts again
    shared = BinaryTrainConfig(epochs=5, stage1_epochs=1)
    assert scheduled_tau(10, 100, 20, shared) == recu.tau_schedule(10, 100, 0.85, 0.99)
    own = BinaryTrainConfig(epochs=5, stage1_epochs=1, restart_schedule=True, stage1_clamp=False)
    assert scheduled_tau(10, 100, 20, own) == 1.0  # real weights, no clamp
    assert scheduled_tau(20, 100, 20, own) == pytest.approx(0.85)  # the clamp's schedule starts
    assert scheduled_tau(100, 100, 20, own) == pytest.approx(0.99)
    clamped = BinaryTrainConfig(epochs=5, stage1_epochs=1, restart_schedule=True)
    assert scheduled_tau(10, 100, 20, clamped) == 0.85  # stage 1 holds the start value


def test_stage_1_learning_rate_is_scaled_only_in_stage_1():
    from course_lib.bnn.training import scheduled_lr

    config = BinaryTrainConfig(epochs=5, stage1_epochs=1, stage1_lr_scale=0.1)
    assert scheduled_lr(15, 100, 10, 20, config) == pytest.approx(0.1 * lr_factor(15, 100, 10))
    assert scheduled_lr(20, 100, 10, 20, config) == pytest.approx(lr_factor(20, 100, 10))
    with pytest.raises(ValueError, match="stage1_lr_scale"):
        BinaryTrainConfig(epochs=5, stage1_lr_scale=0.0)


def _tiny_loader(n=32, seed=0):
    from course_lib.data import TensorLoader

    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    return TensorLoader(images, labels, batch_size=16, shuffle=True, augment=True, seed=seed)


class Interrupted(Exception):
    pass


@pytest.mark.slow
def test_fit_binary_is_seeded_and_resumes_to_the_same_weights(tmp_path):
    config = BinaryTrainConfig(epochs=2, distill=0.5, stage1_epochs=1, autocast=False)
    teacher = resnet20()

    def run(loader, checkpoint=None):
        torch.manual_seed(0)
        model = bnn.binary_resnet20()
        fit_binary(model, loader, config, teacher, seed=3, checkpoint=checkpoint, progress=False)
        return model

    def same(a, b):
        return all(
            torch.equal(x, y)
            for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
        )

    straight = run(_tiny_loader())
    assert same(straight, run(_tiny_loader()))

    class CrashingLoader(type(_tiny_loader())):
        def __iter__(self):
            if self.epoch == 1:
                raise Interrupted
            return super().__iter__()

    crashing = _tiny_loader()
    crashing.__class__ = CrashingLoader
    path = tmp_path / "state.pt"
    with pytest.raises(Interrupted):
        run(crashing, path)
    assert same(straight, run(_tiny_loader(), path)), "resumed after one epoch"
    assert straight.stages[0].conv1.tau.item() == pytest.approx(config.tau_end)
    with pytest.raises(ValueError, match="needs a teacher"):
        fit_binary(bnn.binary_resnet20(), _tiny_loader(), config, None, progress=False)
    with pytest.raises(ValueError, match="different BinaryTrainConfig"):
        fit_binary(
            bnn.binary_resnet20(),
            _tiny_loader(),
            BinaryTrainConfig(epochs=3),
            checkpoint=path,
            progress=False,
        )


# --- the packed kernel --------------------------------------------------------------------------

SHAPES = [  # (batch, in, out, height, width, kernel, stride, padding)
    (2, 16, 16, 32, 32, 3, 1, 1),
    (1, 3, 5, 7, 9, 3, 2, 1),
    (2, 67, 33, 5, 6, 3, 1, 1),
    (1, 256, 256, 8, 8, 3, 1, 1),
    (1, 130, 70, 9, 9, 5, 2, 2),
    (3, 64, 24, 4, 4, 1, 1, 0),
    (1, 8, 9, 3, 3, 3, 1, 2),
]


def _layer(shape, seed=0):
    n, c, o, h, w, k, s, p = shape
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g)
    x[0, 0, 0, :2] = 0.0  # exact zeros: sign +1
    threshold = torch.randn(c, generator=g) * 0.1
    sign_w = bnn.sign(torch.randn(o, c, k, k, generator=g))
    return x, threshold, sign_w, kernel.PackedConv.from_signs(sign_w, threshold, s, p)


@pytest.mark.slow
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_packed_conv_is_bit_exact_on_every_path(shape):
    x, threshold, sign_w, packed = _layer(shape)
    want = kernel.reference_dot(x, threshold, sign_w, shape[6], shape[7]).permute(0, 2, 3, 1)
    x_nhwc = x.permute(0, 2, 3, 1).contiguous()
    assert torch.equal(packed.dot(x_nhwc, "torch"), want)
    assert torch.equal(packed.dot(x_nhwc, "cpp"), want)
    for isa in kernel.isas_here():
        with kernel.capped_isa(isa):
            assert torch.equal(packed.dot(x_nhwc, "cpp"), want), f"{isa} popcount"
    assert torch.equal(packed.sign_weight(), sign_w), "bits unpack to the weights"


@pytest.mark.parametrize("act", ["identity", "hardtanh", "prelu"])
def test_fused_layer_is_identical_in_both_backends(act):
    shape = (2, 67, 33, 5, 6, 3, 1, 1)
    x, _, _, packed = _layer(shape, seed=1)
    x_nhwc = x.permute(0, 2, 3, 1).contiguous()
    g = torch.Generator().manual_seed(2)
    scale, bias, slope = (
        torch.rand(33, generator=g),
        torch.randn(33, generator=g),
        torch.rand(33, generator=g),
    )
    residual = torch.randn(2, 5, 6, 33, generator=g)
    b = packed.forward(x_nhwc, scale, bias, residual, act, slope, "torch")
    for isa in kernel.isas_here():  # each path has its own epilogue (scalar, AVX2, AVX-512)
        with kernel.capped_isa(isa):
            a = packed.forward(x_nhwc, scale, bias, residual, act, slope, "cpp")
        assert torch.equal(a, b), isa
    dot = packed.dot(x_nhwc, "torch").float()
    torch.testing.assert_close(a, kernel.epilogue(dot, scale, bias, residual, act, slope))


def test_kernel_reports_its_path_and_rejects_bad_input():
    assert bnn.kernel_path() in kernel.ISAS
    assert kernel.isas_here()[-1] == bnn.kernel_path()
    with pytest.raises(ValueError, match="unknown popcount 'sse'"):
        with kernel.capped_isa("sse"):
            pass
    _, _, _, packed = _layer(SHAPES[1])
    with pytest.raises(ValueError, match="float32 NHWC input with 3 channels"):
        packed.dot(torch.zeros(1, 7, 9, 4))
    with pytest.raises(ValueError, match="unknown backend"):
        packed.dot(torch.zeros(1, 7, 9, 3), "cuda")
    with pytest.raises(ValueError, match="unknown act"):
        packed.forward(torch.zeros(1, 7, 9, 3), torch.ones(5), torch.zeros(5), act="gelu")


def test_a_failed_build_says_what_to_do_and_auto_falls_back(monkeypatch):
    def broken(verbose=False):
        raise RuntimeError("x.cpp:1:10: fatal error: torch/extension.h: No such file")

    monkeypatch.setattr(kernel, "_load", broken)
    with pytest.raises(kernel.KernelUnavailable, match="torch/extension.h.*ninja.*backend='torch'"):
        kernel.load_kernel()
    assert not kernel.kernel_available() and kernel.kernel_path() == "unavailable"
    with pytest.warns(RuntimeWarning, match="Using backend='torch'"):
        assert kernel.resolve_backend("auto") == "torch"


# --- the packed network ---------------------------------------------------------------------


def _scrambled(cfg: bnn.BinaryNetConfig, seed: int = 0) -> bnn.BinaryResNet:
    """Random BN statistics, thresholds and slopes, so that nothing is an identity."""
    torch.manual_seed(seed)
    model = bnn.binary_resnet20(cfg)
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
        if isinstance(m, nn.PReLU):
            m.weight.data.copy_(torch.rand(m.num_parameters, generator=g))
        if getattr(m, "threshold", None) is not None and isinstance(m.threshold, nn.Parameter):
            m.threshold.data.copy_(torch.randn(m.threshold.shape, generator=g) * 0.1)
    bnn.set_tau(model, 0.9)
    return model.eval()


CONFIGS = [
    bnn.BinaryNetConfig(act="hardtanh", shortcut="pad"),
    bnn.BinaryNetConfig(act="prelu", shortcut="avgpool"),
    bnn.BinaryNetConfig(act="prelu", shortcut="conv"),
    bnn.BinaryNetConfig(
        act="identity", shortcut="pad", threshold=False, b_star=None, scaling=False
    ),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.act}-{c.shortcut}")
def test_packed_network_logits_match_pytorch(cfg):
    model = _scrambled(cfg)
    x = torch.randn(16, 3, 32, 32)
    with torch.no_grad():
        want = model(x)
    for backend in ("cpp", "torch"):
        got = PackedResNet.from_model(model, backend)(x)
        assert torch.equal(got, want), f"{backend}: {(got - want).abs().max().item():.3g}"
    report = bnn.check_layers_exact(model, x, "cpp")
    assert report == {"layers": 18, "values": report["values"], "mismatches": 0}


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.act}-{c.shortcut}")
def test_the_native_body_is_one_call_and_equals_the_layer_by_layer_engine(cfg):
    model = _scrambled(cfg, seed=4)
    engine = PackedResNet.from_model(model, "cpp")
    h = engine.stem(torch.randn(3, 3, 32, 32))
    want = engine.body_layer_by_layer(h)
    assert engine.native_body().layers() == 18
    for isa in kernel.isas_here():
        with kernel.capped_isa(isa):
            assert torch.equal(engine.body(h), want), isa
    small = engine.stem(torch.randn(2, 3, 16, 16))  # another size: the padding cache refills
    assert torch.equal(engine.body(small), engine.body_layer_by_layer(small))
    assert torch.equal(engine.body(h), want)
    before = torch.get_num_threads()
    # packed under the caller's setting, as `engine` was: folding reduces (XNOR-Net's alpha is
    # a mean), and a reduction's rounding depends on PyTorch's thread count
    two = PackedResNet.from_model(model, "cpp", threads=2)
    torch.set_num_threads(2)
    try:
        assert torch.equal(two.body(h), want), "two threads, the same floats"
        assert torch.equal(engine.body(h), want), "one thread in a two-thread caller"
        assert torch.get_num_threads() == 2, "the caller's thread setting is left alone"
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="threads must be at least 1"):
        PackedResNet.from_model(model, "cpp", threads=0)


def test_the_avgpool_shortcut_averages_and_repeats_without_parameters():
    from course_lib.bnn.resnet import AvgPoolShortcut

    x = torch.randn(2, 16, 8, 8)
    y = AvgPoolShortcut(16, 32, 2)(x)
    pooled = F.avg_pool2d(x, 2)
    assert torch.equal(y, torch.cat([pooled, pooled], dim=1))
    model = bnn.binary_resnet20(bnn.BinaryNetConfig(shortcut="avgpool"))
    pad = bnn.binary_resnet20(bnn.BinaryNetConfig(shortcut="pad"))
    assert measure.count_params(model) == measure.count_params(pad), "no parameters"
    with pytest.raises(ValueError, match="not a multiple of 16 input channels"):
        AvgPoolShortcut(16, 24, 2)


def test_eval_mode_folds_batchnorm_without_changing_the_function():
    model = _scrambled(CONFIGS[0])
    block = model.stages[1]
    x = torch.randn(4, 16, 8, 8)
    with torch.no_grad():
        folded = block(x)
        h = block.act1(block.bn1(block.conv1(x)) + x)
        unfolded = block.act2(block.bn2(block.conv2(h)) + h)
    torch.testing.assert_close(folded, unfolded, atol=1e-4, rtol=1e-4)


def test_kernel_without_spare_bytes_takes_the_safe_gather():
    x, threshold, sign_w, packed = _layer(SHAPES[0], seed=3)
    x_nhwc = x.permute(0, 2, 3, 1).contiguous()
    k = kernel.load_kernel()
    bits = k.pack_activations(x_nhwc, threshold, 1).clone()  # a fresh tensor: no spare bytes
    n, h, w, c = x_nhwc.shape
    dot = k.conv_dot(bits, h, w, c, packed.words(), packed.taps, 1, 1)
    assert torch.equal(dot, packed.dot(x_nhwc, "torch"))


def test_packed_file_round_trip_size_and_errors(tmp_path):
    model = _scrambled(CONFIGS[0])
    engine = PackedResNet.from_model(model, "cpp")
    path = tmp_path / "net.cbnn"
    size = save_packed(engine, path)
    binary_params = sum(layer.weight.numel() for layer in bnn.binary_layers(model))
    assert binary_params / 8 < size < binary_params / 8 + 25_000, "1 bit per binary weight"
    x = torch.randn(4, 3, 32, 32)
    assert torch.equal(load_packed(path, "cpp")(x), engine(x))
    assert torch.equal(load_packed(path, "torch")(x), engine(x))
    raw = path.read_bytes()
    (tmp_path / "cut.cbnn").write_bytes(raw[:-10])
    with pytest.raises(PackedFileError, match="truncated"):
        load_packed(tmp_path / "cut.cbnn")
    (tmp_path / "other.cbnn").write_bytes(b"PK\x03\x04" + raw[4:])
    with pytest.raises(PackedFileError, match="not a packed binary network"):
        load_packed(tmp_path / "other.cbnn")
    with pytest.raises(PackedFileError, match="no packed network"):
        load_packed(tmp_path / "missing.cbnn")
    with pytest.raises(TypeError, match="expected a BinaryResNet"):
        PackedResNet.from_model(resnet20())


def test_benchmarks_run_and_report_intervals():
    result = bnn.kernel_benchmark((16,), rounds=3, calls=1, warmup=1)
    entry = result["16"]
    low, high = entry["speedup"]["interval"]
    assert low <= entry["speedup"]["median"] <= high
    assert set(entry["latency_ms"]) == {"float32 conv", "float32 conv, ONNX Runtime", "binary conv"}
    low, high = entry["speedup_vs_onnxruntime"]["interval"]
    assert low <= entry["speedup_vs_onnxruntime"]["median"] <= high
    assert entry["word_ops"] == 8 * 8 * 3 * 1 * 16, "an 8x8 map, 3 rows of 6 bytes: a word each"
    assert entry["popcount_rate"] > 0 and entry["peak_fraction"] > 0


def test_word_operations_follow_the_kernels_row_layout():
    assert bnn.benchmark.conv_word_ops(256, 8) == 64 * 3 * 12 * 256
    assert bnn.benchmark.conv_word_ops(32, 16) == 256 * 3 * 2 * 32, "12-byte rows: two words"
    assert bnn.benchmark.conv_word_ops(20, 4) == 16 * 3 * 2 * 24, "9-byte rows, 24 channels"


def test_settings_profiles():
    assert bnn.bnn_settings("quick").data.train_per_class is not None
    full = bnn.bnn_settings("full")
    assert full.data.train_per_class is None and full.binary.compile
    assert sum(full.estimate_min.values()) <= 90
    with pytest.raises(ValueError, match="unknown profile"):
        bnn.bnn_settings("medium")

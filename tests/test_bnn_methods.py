"""Tests of the report's other binary-network methods (seed 004: DA-BNN, latent-weight
inference, label-aware representation, uncertainty-aware BNN, BD-BNN): one defining
property each, on tiny tensors."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from course_lib import bnn
from course_lib.bnn.training import distillation_loss
from course_lib.models import resnet20

torch.set_num_threads(1)

# --- DA-BNN (eq. 10-12) ---------------------------------------------------------------------


def test_dabnn_amplitudes_have_their_shapes_and_lie_in_0_1():
    amp = bnn.DataAdaptiveAmplitude(16)
    m = torch.randn(2, 16, 5, 6)
    channel, spatial = amp.channel_amplitude(m), amp.spatial_amplitude(m)
    assert channel.shape == (2, 16, 1, 1) and spatial.shape == (2, 1, 5, 6)
    for a in (channel, spatial):
        assert (a > 0).all() and (a < 1).all()
    out = amp(m)
    assert out.shape == m.shape
    assert (out.abs() <= m.abs()).all()  # a product of two factors in (0, 1)
    expected = m * channel
    assert torch.allclose(out, expected * amp.spatial_amplitude(expected))


def test_dabnn_amplitudes_are_the_same_floats_in_any_memory_layout():
    # alpha * dot: multiples of one scale, as the binary conv hands them to the amplitude
    # (eval mode: the factors in float64, as the packed engine computes them)
    torch.manual_seed(0)
    amp = bnn.DataAdaptiveAmplitude(32).eval()
    m = torch.randint(-300, 300, (2, 32, 16, 16)).float() * 0.0123
    nhwc = m.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # the engine's view
    strided = torch.stack([m, m], dim=-1)[..., 0]  # every other float of a wider buffer
    want = amp(m)
    for layout in (nhwc, strided):
        assert layout.stride() != m.stride() and torch.equal(layout, m)
        assert torch.equal(amp(layout), want)


def test_dabnn_amplitudes_depend_on_the_input():
    amp = bnn.DataAdaptiveAmplitude(16, channel_kernel=3, spatial_kernel=3)
    m = torch.randn(2, 16, 4, 4)
    channel = amp.channel_amplitude(m)
    assert not torch.allclose(channel[0], channel[1])  # per sample, not a fixed alpha
    assert not torch.allclose(amp.spatial_amplitude(m), amp.spatial_amplitude(2 * m + 1))


def test_dabnn_rejects_a_wrong_input_and_even_kernels():
    with pytest.raises(ValueError, match="odd"):
        bnn.DataAdaptiveAmplitude(16, channel_kernel=4)
    with pytest.raises(ValueError, match="feature map"):
        bnn.DataAdaptiveAmplitude(16).channel_amplitude(torch.randn(1, 8, 3, 3))


def test_dabnn_passes_gradients_to_the_latent_weights_and_its_kernels():
    conv, amp = bnn.BinaryConv2d(8, 16, b_star=None), bnn.DataAdaptiveAmplitude(16)
    amp(conv(torch.randn(2, 8, 6, 6))).pow(2).sum().backward()
    for p in (conv.weight, amp.channel_conv.weight, amp.spatial_conv.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0


# --- latent-weight inference (eq. 29-31) ----------------------------------------------------


def test_the_two_batchnorm_sets_learn_different_statistics():
    block = bnn.LatentPathConv(bnn.BinaryConv2d(4, 8, b_star=None), nn.Hardtanh()).train()
    x = torch.randn(8, 4, 6, 6)
    block(x)  # binary path: only its statistics move
    mean_b, var_b = (t.clone() for t in block.bn.statistics("binary"))
    mean_l, var_l = block.bn.statistics("latent")
    assert torch.equal(mean_l, torch.zeros(8)) and torch.equal(var_l, torch.ones(8))
    assert not torch.equal(mean_b, torch.zeros(8))
    with bnn.use_path(block, "latent"):
        block(x)
    assert block.path == "binary" and block.bn.path == "binary"
    assert torch.equal(block.bn.statistics("binary")[0], mean_b)  # untouched
    assert not torch.allclose(block.bn.statistics("latent")[1], var_b, rtol=1e-2)


def test_inference_uses_the_chosen_path_and_its_statistics():
    block = bnn.LatentPathConv(bnn.BinaryConv2d(4, 8, b_star=None)).train()
    x = torch.randn(8, 4, 6, 6)
    for path in ("binary", "latent"):
        bnn.set_path(block, path)
        block(x)
    block.eval()
    bnn.set_path(block, "latent")
    conv = block.conv
    mean, var = block.bn.statistics("latent")
    expected = F.batch_norm(
        F.conv2d(F.hardtanh(x), conv.weight, None, 1, 1), mean, var, block.bn.weight, block.bn.bias
    )
    assert torch.allclose(block(x), expected, atol=1e-5)
    bnn.set_path(block, "binary")
    assert not torch.allclose(block(x), expected, atol=1e-2)
    with pytest.raises(ValueError, match="unknown path"):
        bnn.set_path(block, "real")


def test_both_paths_pass_gradients_to_the_latent_weights():
    for path in ("binary", "latent"):
        block = bnn.LatentPathConv(bnn.BinaryConv2d(4, 8, b_star=None))
        bnn.set_path(block, path)
        block(torch.randn(4, 4, 5, 5)).pow(2).sum().backward()
        assert block.conv.weight.grad.abs().sum() > 0
        assert block.bn.weight.grad.abs().sum() > 0  # the shared affine learns on both


# --- label-aware representation approximation (eq. 32-35) -----------------------------------


def test_representation_loss_is_zero_when_features_match_within_labels():
    prototypes = torch.randn(3, 6)
    labels = torch.tensor([0, 1, 2, 0, 1])
    features = prototypes[labels]
    assert bnn.representation_loss(features, features.clone(), labels).item() == 0.0
    assert bnn.representation_loss(features, features + 0.1, labels).item() > 0


def test_representation_loss_pulls_same_label_samples_together():
    y = torch.tensor([[1.0], [0.0]])
    # different labels: only the per-sample term (eq. 32), zero here
    assert bnn.representation_loss(y, y.clone(), torch.tensor([0, 1])).item() == 0.0
    # same label: phi(Y0, Y1) + phi(Y~0, Y1) + phi(Y0, Y~1) = 3 for each sample (eq. 33)
    assert bnn.representation_loss(y, y.clone(), torch.tensor([0, 0])).item() == 3.0


def test_representation_loss_decreases_under_a_gradient_step():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    features = torch.randn(6, 4, requires_grad=True)
    latent = torch.randn(6, 4, requires_grad=True)
    before = bnn.representation_loss(features, latent, labels)
    before.backward()
    assert latent.grad is None  # the latent features are targets (eq. 34)
    with torch.no_grad():
        features -= 0.01 * features.grad
    assert bnn.representation_loss(features, latent, labels) < before


def test_label_aware_loss_adds_lambda_rep_to_ce_or_to_the_distillation_mix():
    logits, teacher = torch.randn(4, 10), torch.randn(4, 10)
    labels = torch.tensor([1, 1, 3, 4])
    y, y_latent = torch.randn(4, 5), torch.randn(4, 5)
    rep = bnn.representation_loss(y, y_latent, labels)
    plain = bnn.BinaryTrainConfig()
    loss = bnn.label_aware_loss(logits, labels, y, y_latent, 0.5, plain)
    assert torch.allclose(loss, F.cross_entropy(logits, labels) + 0.5 * rep)
    kd = bnn.BinaryTrainConfig(distill=0.5, temperature=2.0)
    with_kd = bnn.label_aware_loss(logits, labels, y, y_latent, 0.5, kd, teacher)
    assert torch.allclose(with_kd, distillation_loss(logits, labels, teacher, kd) + 0.5 * rep)
    assert not torch.allclose(with_kd, loss)


# --- uncertainty-aware BNN (eq. 36-38) ------------------------------------------------------


def test_certainty_sign_flips_certain_weights_and_holds_uncertain_ones():
    tracker = bnn.UncertaintyTracker((4,), window=2, threshold=0.5, sigma=0.5)
    w = torch.tensor([0.01, -0.02, 2.0, -3.0])
    assert tracker(w).tolist() == [1.0, -1.0, 1.0, -1.0]
    # every sign wants to flip; only the two far from zero (f ~ e^-8, e^-18) may
    assert tracker(-w).tolist() == [1.0, -1.0, -1.0, 1.0]
    assert (int(tracker.flips), int(tracker.held), int(tracker.total_flips)) == (2, 2, 2)


def test_uncertainty_remembers_the_last_m_steps():
    tracker = bnn.UncertaintyTracker((1,), window=2, threshold=0.5, sigma=0.5)
    for value in (0.0, 3.0):
        tracker(torch.tensor([value]))
    # now far from zero, but it sat at zero within the window: eq. 37 gives 1, held
    assert tracker(torch.tensor([-3.0])).item() == 1.0 and int(tracker.held) == 1
    # the zero has left the window: certain, so it flips
    assert tracker(torch.tensor([-3.0])).item() == -1.0 and int(tracker.flips) == 1
    f = bnn.gaussian_uncertainty(torch.tensor([0.0, 0.5, 1.0]), 0.5)
    assert torch.allclose(f, torch.exp(torch.tensor([0.0, -0.5, -2.0])))


def test_certainty_sign_passes_the_gradient_straight_through():
    tracker = bnn.UncertaintyTracker((3, 2))
    w = torch.randn(3, 2, requires_grad=True)
    (tracker(w) * torch.arange(6.0).view(3, 2)).sum().backward()
    assert torch.equal(w.grad, torch.arange(6.0).view(3, 2))


def test_uncertainty_tracker_rejects_bad_settings():
    with pytest.raises(ValueError, match="threshold"):
        bnn.UncertaintyTracker((2,), threshold=0.0)
    with pytest.raises(ValueError, match="window"):
        bnn.UncertaintyTracker((2,), window=0)
    with pytest.raises(ValueError, match="shape"):
        bnn.UncertaintyTracker((2,))(torch.zeros(3))


# --- BD-BNN (eq. 39-44) ---------------------------------------------------------------------


def test_kurtosis_of_known_distributions():
    assert bnn.kurtosis(torch.tensor([-1.0, 1.0] * 50)).item() == pytest.approx(1.0)
    gaussian = torch.randn(200_000, generator=torch.Generator().manual_seed(0))
    assert bnn.kurtosis(gaussian).item() == pytest.approx(3.0, abs=0.05)
    with pytest.raises(ValueError, match="below 1"):
        bnn.kurtosis_loss([gaussian], target=0.5)


@pytest.mark.parametrize("target", [1.0, 6.0])
def test_kurtosis_gradient_moves_a_gaussian_towards_the_target(target):
    w = torch.randn(4096, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    optimizer = torch.optim.Adam([w], lr=0.02)
    start = bnn.kurtosis(w).item()
    for _ in range(30):
        optimizer.zero_grad()
        bnn.kurtosis_loss([w], target).backward()
        optimizer.step()
    end = bnn.kurtosis(w).item()
    assert abs(end - target) < abs(start - target) - 0.3
    assert (end < start) == (target < start)


def test_mimic_loss_is_zero_for_identical_weights_and_positive_otherwise():
    teacher = torch.randn(16, 8, 3, 3)
    assert bnn.distribution_kl(teacher, teacher.clone()).item() == pytest.approx(0.0, abs=1e-6)
    assert bnn.distribution_kl(teacher, 0.3 * teacher).item() > 0.05
    bimodal = teacher.sign() * (1 + 0.1 * teacher.abs())
    assert bnn.distribution_kl(teacher, bimodal).item() > 0.05
    p = bnn.weight_distribution(teacher, torch.linspace(-3, 3, 11), 0.6)
    assert p.shape == (11,) and torch.allclose(p.sum(), torch.tensor(1.0))


def test_bdbnn_loss_reaches_every_latent_weight_of_the_binary_resnet():
    student, teacher = bnn.binary_resnet20(), resnet20()
    pairs = bnn.paired_weights(student, teacher)
    latents = bnn.latent_weights(student)
    assert len(pairs) == len(latents) == 18
    logits, teacher_logits = torch.randn(2, 10, requires_grad=True), torch.randn(2, 10)
    loss = bnn.bdbnn_loss(
        torch.zeros(()), student, pairs, logits=logits, teacher_logits=teacher_logits, beta=0.5
    )
    loss.backward()
    assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in latents)
    assert logits.grad.abs().sum() > 0  # the KD term of eq. 43
    assert all(t.grad is None for _, t in pairs)  # the teacher only sets targets
    with pytest.raises(ValueError, match="twin"):
        bnn.paired_weights(student, nn.Linear(3, 3))

"""Pruning: exact sparsity, runnable and exportable channel-pruned models, clear errors,
and sparse encodings that round-trip. Untrained or tiny models only: seconds, no training."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch_pruning as tp
from torch import nn

from course_lib import baseline, formatting, measure, models
from course_lib.prune import (
    experiment,
    plots,
    selection,
    settings,
    storage,
    structured,
    summary,
    unstructured,
)
from course_lib.train import TrainConfig

PRUNABLE = (nn.Conv2d, nn.Linear)


def prunable_weights(model: nn.Module) -> list[torch.Tensor]:
    return [unstructured.effective_weight(m) for m in model.modules() if isinstance(m, PRUNABLE)]


@pytest.mark.parametrize("sparsity", [0.2, 0.37, 0.5, 0.8])
def test_global_pruning_masks_exactly_the_requested_count(sparsity):
    model = models.BaselineCNN()
    unstructured.prune_to(model, sparsity, "global")
    weights = prunable_weights(model)
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert zeros == round(sparsity * total)
    assert unstructured.global_sparsity(model) == pytest.approx(round(sparsity * total) / total)
    # global ranking: layers differ, and the survivors are the largest magnitudes overall
    per_layer = [r.sparsity for r in unstructured.layer_sparsity(model)]
    assert max(per_layer) - min(per_layer) > 0.05
    kept = torch.cat([w[w != 0].abs() for w in weights])
    pruned_orig = torch.cat(
        [
            m.weight_orig.detach()[m.weight_mask == 0].abs()
            for m in model.modules()
            if isinstance(m, PRUNABLE)
        ]
    )
    assert pruned_orig.max() <= kept.min()


@pytest.mark.parametrize("sparsity", [0.2, 0.37, 0.8])
def test_layerwise_pruning_masks_exactly_the_requested_count_in_every_layer(sparsity):
    model = models.BaselineCNN()
    unstructured.prune_to(model, sparsity, "layer")
    rows = unstructured.layer_sparsity(model)
    assert len(rows) == 8
    for row in rows:
        assert row.zeros == round(sparsity * row.numel), row.name


def test_iterative_pruning_reaches_the_same_exact_count_and_keeps_old_zeros():
    model = models.BaselineCNN()
    finetuned = []
    unstructured.prune_to(model, 0.2)
    first_mask = model.features[0][0].weight_mask.clone()

    def fake_finetune(m):  # perturb the surviving weights like training would
        finetuned.append(True)
        with torch.no_grad():
            for layer in m.modules():
                if isinstance(layer, PRUNABLE):
                    layer.weight_orig.mul_(1.01)

    unstructured.prune_iteratively(model, 0.8, rounds=3, finetune=fake_finetune)
    weights = prunable_weights(model)
    total = sum(w.numel() for w in weights)
    assert sum(int((w == 0).sum()) for w in weights) == round(0.8 * total)
    assert len(finetuned) == 3
    assert bool((model.features[0][0].weight_mask <= first_mask).all())  # no weight revived
    assert unstructured.linear_schedule(0.6, 3) == pytest.approx([0.2, 0.4, 0.6])


def test_make_permanent_removes_the_reparametrization_and_keeps_the_function():
    model = models.BaselineCNN().eval()
    unstructured.prune_to(model, 0.5)
    layer = model.classifier[1]
    assert hasattr(layer, "weight_orig") and hasattr(layer, "weight_mask")
    assert layer._forward_pre_hooks  # the hook that recomputes weight = orig * mask
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
        unstructured.make_permanent(model)
        after = model(x)
    assert not hasattr(layer, "weight_orig") and not hasattr(layer, "weight_mask")
    assert not layer._forward_pre_hooks and isinstance(layer.weight, nn.Parameter)
    assert torch.equal(before, after)
    assert measure.count_nonzero_params(model) < measure.count_params(model)


@pytest.mark.parametrize("bad", [0, 1, 0.0, 1.0, -0.1, 1.5, float("nan"), True, "0.5", None])
def test_ratios_outside_the_open_unit_interval_are_rejected(bad):
    with pytest.raises(ValueError, match="between 0 and 1|number in"):
        unstructured.prune_to(models.BaselineCNN(), bad)
    with pytest.raises(ValueError, match="between 0 and 1|number in"):
        structured.make_pruner(models.BaselineCNN(), bad)


def test_pruning_below_the_current_sparsity_is_an_error():
    model = models.BaselineCNN()
    unstructured.prune_to(model, 0.5)
    with pytest.raises(ValueError, match="already masked"):
        unstructured.prune_to(model, 0.3)


def test_unsupported_layers_are_rejected_with_a_clear_error():
    with pytest.raises(ValueError, match="no Conv2d or Linear"):
        unstructured.prune_to(nn.Sequential(nn.LSTM(4, 4)), 0.5)
    model = models.BaselineCNN()
    with pytest.raises(ValueError, match="cannot prune a BatchNorm2d"):
        unstructured.prune_to(model, 0.5, layers=[model.features[0][1]])
    with pytest.raises(ValueError, match="unknown scope"):
        unstructured.prune_to(model, 0.5, scope="per-channel")
    recurrent = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.LSTM(4, 4))
    with pytest.raises(ValueError, match="LSTM, which this channel pruning does not support"):
        structured.make_pruner(recurrent, 0.5)
    masked = models.BaselineCNN()
    unstructured.prune_to(masked, 0.5)
    with pytest.raises(ValueError, match="make_permanent"):
        structured.make_pruner(masked, 0.5)
    with pytest.raises(ValueError, match="unknown importance"):
        structured.make_pruner(models.BaselineCNN(), 0.5, importance="entropy")
    with pytest.raises(ValueError, match="unknown pruner"):
        structured.make_pruner(models.BaselineCNN(), 0.5, pruner="magic")


def test_gradual_channel_pruning_gives_a_smaller_runnable_exportable_model(tmp_path):
    model = models.BaselineCNN()
    dense_params, dense_macs = measure.count_params(model), measure.count_macs(model)
    seen = []
    records = structured.prune_channels_gradually(
        model, 0.5, steps=5, importance="l2_group", on_step=lambda r, m: seen.append(r.step)
    )
    assert seen == [1, 2, 3, 4, 5]
    assert [r.ratio for r in records] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert structured.channel_widths(model) == [16, 16, 32, 32, 64, 64, 128, 10]
    assert records[-1].channels_removed == pytest.approx(0.5)
    assert 0.2 < records[-1].params / dense_params < 0.3
    assert 0.2 < records[-1].macs / dense_macs < 0.3
    assert all(a.params > b.params for a, b in zip(records, records[1:], strict=False))
    model.eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (4, 10)
    path = measure.export_onnx(model, tmp_path / "pruned.onnx")
    session = measure.onnx_session(path)
    assert [d for d in session.get_inputs()[0].shape][1:] == [3, 32, 32]
    (onnx_logits,) = session.run(None, {"images": x.numpy()})
    assert onnx_logits.shape == (4, 10)
    assert np.allclose(onnx_logits, logits.numpy(), atol=1e-4)


@pytest.mark.parametrize("importance", sorted(structured.IMPORTANCES))
def test_every_importance_prunes_the_baseline(importance):
    model = models.BaselineCNN()
    batches = [(torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,)))]
    structured.prune_channels_gradually(model, 0.25, 1, importance, calibration=batches)
    # BN-scale scores only channels that feed a BatchNorm: the hidden linear layer keeps 256
    hidden = 256 if importance == "bn_scale" else 192
    assert structured.channel_widths(model) == [24, 24, 48, 48, 96, 96, hidden, 10]


def test_gradient_importances_need_calibration_batches():
    with pytest.raises(ValueError, match="calibration"):
        structured.prune_channels_gradually(models.BaselineCNN(), 0.25, 1, "taylor")


@pytest.mark.parametrize("pruner", ["bn_scale", "group_norm"])
def test_sparsity_regularization_runs_once_per_backward_and_changes_gradients(pruner):
    torch.manual_seed(0)
    model = models.BaselineCNN()
    channel_pruner = structured.make_pruner(model, 0.5, pruner=pruner, reg=0.1)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))

    def gradients():
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        return model.features[0][1].weight.grad.clone()

    plain = gradients()
    with structured.sparsity_regularization(model, channel_pruner) as hooks:
        regularized = gradients()
        gradients()
    assert hooks.calls == 2
    assert not torch.allclose(plain, regularized)
    assert torch.equal(gradients(), plain)  # hooks removed on exit
    with pytest.raises(RuntimeError, match="never ran"):
        with structured.sparsity_regularization(model, channel_pruner):
            pass


def sparse_tensor(shape, sparsity, seed=0):
    generator = torch.Generator().manual_seed(seed)
    tensor = torch.randn(shape, generator=generator)
    tensor[torch.rand(shape, generator=generator) < sparsity] = 0
    return tensor


@pytest.mark.parametrize("fmt", storage.FORMATS)
@pytest.mark.parametrize("codec", storage.CODECS)
@pytest.mark.parametrize("shape", [(64, 32, 3, 3), (10, 256), (17,), (3, 70000)])
def test_sparse_encodings_round_trip_exactly(fmt, codec, shape):
    tensor = sparse_tensor(shape, 0.8)
    decoded = storage.decode(storage.encode(tensor, fmt, codec))
    assert decoded.dtype == tensor.dtype and decoded.shape == tensor.shape
    assert torch.equal(decoded, tensor)


def test_sparse_encodings_shrink_a_sparse_tensor_and_not_a_dense_one():
    sparse, dense = sparse_tensor((256, 2048), 0.8), sparse_tensor((256, 2048), 0.0)
    raw = len(storage.encode(sparse, "dense", "none"))
    assert 0 < raw - 4 * sparse.numel() < 64  # float32 values plus a small header
    bitmask = len(storage.encode(sparse, "bitmask", "none"))
    assert bitmask < 0.25 * raw  # 1/32 for the mask + 20 % of the values
    assert len(storage.encode(sparse, "csr", "zlib")) < 0.35 * raw
    assert len(storage.encode(dense, "bitmask", "none")) > raw  # the mask is pure overhead


def test_storage_of_a_masked_model_counts_the_masked_weights_as_zeros():
    model = models.BaselineCNN()
    dense = storage.storage_report(model)
    unstructured.prune_to(model, 0.8)
    state = storage.effective_state_dict(model)
    assert not any(k.endswith(("_orig", "_mask")) for k in state)
    assert int((state["classifier.1.weight"] == 0).sum()) > 0
    pruned = storage.storage_report(model)
    assert pruned["dense_raw"] == dense["dense_raw"]  # zeros cost as much as any float
    assert pruned["bitmask_zlib"] < 0.35 * pruned["dense_raw"]


def test_profiles_share_one_protocol_and_split_the_iterative_budget():
    quick, full = settings.pruning_settings("quick"), settings.pruning_settings("full")
    for profile in (quick, full):
        assert profile.unstructured.sparsities[:7] == (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
        assert max(profile.unstructured.sparsities) >= 0.9  # where iterating should matter
        assert profile.structured.ratios == (0.1, 0.2, 0.3, 0.4, 0.5)
        rounds = profile.unstructured.rounds
        assert rounds > 1
        assert (
            profile.unstructured.round_finetune.epochs * rounds
            == profile.unstructured.finetune.epochs
        )
        assert set(profile.selection.importances) == set(structured.IMPORTANCES)
        assert set(profile.selection.pruners) == set(structured.PRUNERS)
        assert profile.selection.seeds >= 3
        assert profile.selection.schedule.steps == profile.structured.schedule.steps
        assert profile.structured.round_to == 8
    assert sum(full.estimate_min.values()) <= 90
    assert set(full.estimate_min) == set(experiment.SECTIONS)  # one estimate per timed section
    with pytest.raises(ValueError, match="unknown profile"):
        settings.pruning_settings("fast")


@pytest.mark.parametrize("scope", unstructured.SCOPES)
def test_pruning_works_on_a_trained_channels_last_model_and_it_can_be_copied(scope):
    """What fit leaves behind: channels-last tensors and a non-leaf computed ``weight``."""
    model = models.BaselineCNN().to(memory_format=torch.channels_last)
    unstructured.prune_to(model, 0.3, scope)
    model.to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    nn.functional.cross_entropy(model(x), torch.tensor([1, 2])).backward()
    copied = unstructured.copy_model(model)
    unstructured.prune_to(model, 0.6, scope)
    rows = unstructured.layer_sparsity(model)
    total = sum(r.numel for r in rows)
    if scope == "global":
        assert sum(r.zeros for r in rows) == round(0.6 * total)
    else:
        assert all(r.zeros == round(0.6 * r.numel) for r in rows)
    assert unstructured.global_sparsity(copied) == pytest.approx(0.3, abs=1e-3)


def test_batchnorm_recalibration_recomputes_the_statistics_and_keeps_the_weights():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
    model[1].running_mean.fill_(5.0)  # stale statistics, as after removing channels upstream
    model[1].running_var.fill_(9.0)
    batches = [(torch.randn(8, 3, 8, 8) + i, None) for i in range(3)]
    weight = model[0].weight.detach().clone()
    structured.recalibrate_batchnorm(model, batches)
    with torch.no_grad():
        features = torch.cat([model[0](x) for x, _ in batches])
    expected = features.mean(dim=(0, 2, 3))
    assert torch.allclose(model[1].running_mean, expected, atol=1e-5)
    assert model[1].momentum == 0.1 and not model.training
    assert torch.equal(model[0].weight, weight)


def test_target_rows_judge_the_speedup_by_the_lower_end_of_its_interval():
    metrics = {
        "iterative_80_accuracy_drop_points": 1.0,
        "structured_50_onnx_speedup_b1": 2.4,
        "structured_50_onnx_speedup_b1_interval": [1.7, 2.9],
        "structured_50_accuracy_drop_points": 2.5,
        "aligned_min_onnx_speedup_b1": 1.05,
        "best_importance": "l2_group",
        "best_pruner": "plain",
    }
    status = [row[-1] for row in summary.target_rows(metrics)[:4]]
    assert status == ["met", "**missed**", "**missed**", "met"]
    assert "2.40x (1.70-2.90)" in summary.target_rows(metrics)[1][1]
    metrics["structured_50_onnx_speedup_b1_interval"] = [1.8, 2.9]
    assert summary.target_rows(metrics)[1][-1] == "met"


# --- aligned widths, the group-norm regularizer, the regularization dose ------------------


# --- depthwise and grouped convolutions ----------------------------------------------------


def mobilenet() -> nn.Module:
    """torchvision's MobileNetV2 for 10 classes, random weights (no download)."""
    from torchvision.models import mobilenet_v2

    return mobilenet_v2(weights=None, num_classes=10)


class GroupedBlock(nn.Module):
    """A ResNeXt-style residual block (1x1, grouped 3x3, 1x1) after a stem, with a classifier."""

    def __init__(self, width: int = 16, inner: int = 32, groups: int = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.block = nn.Sequential(
            nn.Conv2d(width, inner, 1, bias=False),
            nn.BatchNorm2d(inner),
            nn.ReLU(),
            nn.Conv2d(inner, inner, 3, padding=1, groups=groups, bias=False),
            nn.BatchNorm2d(inner),
            nn.ReLU(),
            nn.Conv2d(inner, width, 1, bias=False),
            nn.BatchNorm2d(width),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.head(torch.relu(x + self.block(x)))


def convs_by_kind(model: nn.Module, kind: str) -> dict[str, nn.Conv2d]:
    return {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d) and structured.conv_kind(m) == kind
    }


def test_mobilenet_v2_prunes_to_half_its_channels_runs_and_exports(tmp_path):
    model = mobilenet()
    dense = {c.name: c for c in measure.layer_costs(model)}
    depthwise = {name: m.out_channels for name, m in convs_by_kind(model, "depthwise").items()}
    assert len(depthwise) == 17 and not convs_by_kind(model, "grouped")
    records = structured.prune_channels_gradually(model, 0.5, steps=2, importance="l2_group")
    assert records[-1].channels_removed == pytest.approx(0.5)
    # every depthwise layer is still depthwise, at half its width
    assert {n: (m.in_channels, m.groups) for n, m in convs_by_kind(model, "depthwise").items()} == {
        n: (c // 2, c // 2) for n, c in depthwise.items()
    }
    # MACs: a layer whose inputs and outputs both halve keeps 1/4; the first conv (3 colour
    # channels), the depthwise layers (one input per output) and the classifier (10 classes) 1/2
    halved = {"features.0.0", "classifier.1", *depthwise}
    expected = sum(c.macs * (0.5 if name in halved else 0.25) for name, c in dense.items())
    assert records[-1].macs == measure.count_macs(model) == pytest.approx(expected, rel=1e-9)
    assert records[-1].macs / sum(c.macs for c in dense.values()) == pytest.approx(0.2768, abs=1e-4)
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (2, 10)
    session = measure.onnx_session(measure.export_onnx(model, tmp_path / "mobilenet.onnx"))
    (onnx_logits,) = session.run(None, {"images": x.numpy()})
    scale = float(logits.abs().max())
    assert np.allclose(onnx_logits, logits.numpy(), rtol=1e-3, atol=1e-4 * scale)


def masked_like(dense: nn.Module, pruned: nn.Module) -> nn.Module:
    """``dense`` with every channel that ``pruned`` lost switched off: the BatchNorm that
    produces it gets scale and shift 0, so the channel is 0 everywhere it is read. Kept
    channels are found by their (distinct) BatchNorm scales."""
    masked = copy.deepcopy(dense)
    pruned_norms = dict(pruned.named_modules())
    for name, norm in masked.named_modules():
        if isinstance(norm, nn.BatchNorm2d):
            kept = [norm.weight.tolist().index(w) for w in pruned_norms[name].weight.tolist()]
            off = torch.ones(norm.num_features, dtype=torch.bool)
            off[kept] = False
            with torch.no_grad():
                norm.weight[off] = 0
                norm.bias[off] = 0
    return masked


@pytest.mark.parametrize("build", [mobilenet, GroupedBlock], ids=["mobilenet_v2", "grouped"])
def test_pruning_depthwise_and_grouped_convs_keeps_what_the_kept_channels_compute(build):
    """The pruned network computes exactly what the dense one computes with the removed
    channels switched off: every layer lost the right input slices (depthwise and grouped
    convolutions read their inputs block by block)."""
    dense = build().eval()
    with torch.no_grad():
        for norm in (m for m in dense.modules() if isinstance(m, nn.BatchNorm2d)):
            norm.weight.copy_(1 + torch.randperm(norm.num_features) / norm.num_features)
            norm.bias.uniform_(-0.5, 0.5)
    pruned = copy.deepcopy(dense)
    structured.prune_channels_gradually(pruned, 0.5, steps=1, importance="l1_group")
    for name, conv in convs_by_kind(dense, "grouped").items():
        after = dict(pruned.named_modules())[name]
        assert (after.groups, after.in_channels, after.out_channels) == (
            conv.groups,
            conv.in_channels // 2,
            conv.out_channels // 2,
        )
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected, got = masked_like(dense, pruned)(x), pruned(x)
    assert torch.allclose(got, expected, atol=1e-4 * float(expected.abs().max()))


@pytest.mark.parametrize("importance", ["taylor", "bn_scale", "lamp", "fpgm"])
def test_other_importances_prune_mobilenet_v2(importance):
    model = mobilenet()
    batches = [(torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)))]
    structured.prune_channels_gradually(
        model, 0.25, 1, importance, calibration=batches, hessian_samples=4
    )
    dw = convs_by_kind(model, "depthwise")
    assert len(dw) == 17
    assert all(m.in_channels == m.out_channels == m.groups for m in dw.values())
    assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("pruner", structured.REGULARIZING)
def test_regularizers_reach_mobilenet_v2s_groups(pruner):
    model = mobilenet()
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    channel_pruner = structured.make_pruner(model, 0.5, pruner=pruner, reg=0.1)
    nn.functional.cross_entropy(model(x), y).backward()
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    channel_pruner.regularize(model)
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.grad)}
    # block 2: expansion 1x1 (conv.0), depthwise 3x3 (conv.1), projection (conv.2)
    if pruner == "bn_scale":  # the BatchNorm scales only, the depthwise layer's one included
        assert {"features.2.conv.0.1.weight", "features.2.conv.1.1.weight"} <= changed
    else:  # torch-pruning 1.6 leaves the depthwise filters out of the group norm's penalty
        assert "features.2.conv.0.0.weight" in changed
        assert "features.2.conv.1.0.weight" not in changed


def test_round_to_8_gives_mobilenet_v2_widths_that_are_multiples_of_8():
    model = mobilenet()
    structured.prune_channels_gradually(model, 0.4, 2, "l2_group", round_to=8)
    widths = structured.channel_widths(model)
    assert widths[-1] == 10 and all(w % 8 == 0 for w in widths[:-1]), widths
    assert all(m.in_channels == m.groups for m in convs_by_kind(model, "depthwise").values())


class TwoBranches(nn.Module):
    """Two grouped convolutions reading (and writing) the same channels."""

    def __init__(self, groups: tuple[int, int], width: int = 24) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3), nn.BatchNorm2d(width), nn.ReLU())
        self.a = nn.Conv2d(width, width, 3, groups=groups[0])
        self.b = nn.Conv2d(width, width, 3, groups=groups[1])
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.head(self.a(x) + self.b(x))


def test_convolution_shapes_torch_pruning_gets_wrong_are_refused_with_the_reason():
    def net(conv: nn.Conv2d) -> nn.Module:
        c = conv.in_channels
        return nn.Sequential(
            nn.Conv2d(3, c, 3), nn.BatchNorm2d(c), nn.ReLU(), conv, nn.Flatten(), nn.LazyLinear(10)
        )

    multiplier = nn.Conv2d(8, 16, 3, groups=8)  # depthwise with a channel multiplier of 2
    shrinking = nn.Conv2d(16, 8, 3, groups=8)  # one output per group, two inputs
    assert [structured.conv_kind(c) for c in (multiplier, shrinking)] == [
        "multiplier",
        "shrinking",
    ]
    for conv, reason in ((multiplier, "channel multiplier"), (shrinking, "one output channel")):
        model = net(conv)
        model(torch.zeros(1, 3, 32, 32))  # materialize the lazy layer
        with pytest.raises(ValueError, match=f"layer '3' .*{reason}"):
            structured.make_pruner(model, 0.5)
    for option, value in (("round_to", 8), ("importance", "fpgm"), ("pruner", "group_norm")):
        with pytest.raises(ValueError, match="grouped convolution 'block.3' is refused"):
            structured.make_pruner(GroupedBlock(), 0.5, **{option: value})
    # 32 channels in 8 blocks: 4 per block, 1 left at 75 %
    with pytest.raises(ValueError, match="leaves 1 channel.* at least 2"):
        structured.make_pruner(GroupedBlock(groups=8), 0.75)
    with pytest.raises(ValueError, match="do not divide each other"):
        structured.make_pruner(TwoBranches((2, 3)), 0.5)
    model = TwoBranches((2, 4))  # 4 is a multiple of 2: the same positions in every block
    structured.prune_channels_gradually(model, 0.5, 1, "l2_group")
    assert (model.a.in_channels, model.a.groups, model.b.groups) == (12, 2, 4)


def test_a_step_that_breaks_a_layer_is_reported():
    model = GroupedBlock()
    kinds = structured.conv_kinds(model)
    with torch.no_grad():
        model.block[3].weight = nn.Parameter(model.block[3].weight[:, :3])
    with pytest.raises(RuntimeError, match="'block.3' inconsistent"):
        structured.check_consistent(model, kinds)


@pytest.mark.parametrize("ratio", [0.1, 0.2, 0.3, 0.4, 0.5])
def test_round_to_8_gives_widths_that_are_multiples_of_8(ratio):
    one_shot, gradual = models.BaselineCNN(), models.BaselineCNN()
    structured.prune_channels_gradually(one_shot, ratio, 1, "l2_group", round_to=8)
    structured.prune_channels_gradually(gradual, ratio, 3, "l2_group", round_to=8)
    dense = structured.channel_widths(models.BaselineCNN())
    for model in (one_shot, gradual):
        widths = structured.channel_widths(model)
        assert widths[-1] == 10  # the classes are never pruned
        for width, channels in zip(widths[:-1], dense[:-1], strict=True):
            assert width % 8 == 0, widths
            kept = int(channels * (1 - ratio))  # what torch-pruning keeps without rounding
            assert kept - 8 < width <= kept, (widths, ratio)
    unaligned = models.BaselineCNN()
    structured.prune_channels_gradually(unaligned, 0.1, 1, "l2_group")
    assert structured.channel_widths(unaligned)[:6:2] == [28, 57, 115]
    with pytest.raises(ValueError, match="round_to"):
        structured.make_pruner(models.BaselineCNN(), 0.5, round_to=0)


def _weight_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    return {
        name: m.weight.grad.clone()
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    }


@pytest.mark.parametrize("importance", ["hessian", "taylor", "l2_group", "lamp", "fpgm"])
def test_group_norm_regularization_changes_the_gradient_of_every_pruned_layer(importance):
    torch.manual_seed(0)
    model = models.BaselineCNN()
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    batches = [(x, y)]
    structured.estimate_gradients(model, batches, importance, max_samples=8)
    channel_pruner = structured.make_pruner(model, 0.5, importance=importance, pruner="group_norm")
    channel_pruner.reg = 0.1
    plain = _weight_grads(model, x, y)
    channel_pruner.regularize(model)
    regularized = {n: m.weight.grad for n, m in model.named_modules() if n in plain}
    pruned_layers = [n for n in plain if n != "classifier.3"]  # the output layer is kept
    unchanged = [n for n in pruned_layers if torch.equal(plain[n], regularized[n])]
    assert not unchanged, f"{importance}: the regularizer skipped {unchanged}"
    assert channel_pruner.importance is not channel_pruner.norm_importance  # ranking kept


def test_torch_prunings_own_group_norm_pruner_skips_groups_under_hessian():
    """Why the course subclasses it: sqrt of the negative Hessian scores is NaN, and
    torch-pruning 1.6 then leaves the group's gradients alone (if this test fails, the
    library fixed it and :class:`structured.GroupNormPruner` can go)."""
    torch.manual_seed(0)
    model = models.BaselineCNN()
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    library = tp.pruner.GroupNormPruner(
        model,
        torch.randn(1, 3, 32, 32),
        importance=tp.importance.GroupHessianImportance(),
        reg=0.1,
        ignored_layers=[model.classifier[3]],
    )
    plain = _weight_grads(model, x, y)
    library.regularize(model)
    changed = [
        n
        for n, m in model.named_modules()
        if n in plain and not torch.equal(plain[n], m.weight.grad)
    ]
    assert len(changed) < len(plain) - 1


def test_the_regularization_dose_is_strength_times_the_learning_rate_sum():
    constant = TrainConfig(epochs=1, lr=0.1, schedule="constant")
    assert structured.lr_integral(constant, 100) == pytest.approx(10.0)
    cosine = TrainConfig(epochs=1, lr=0.02, schedule="cosine")
    assert structured.lr_integral(cosine, 400) == pytest.approx(0.02 * 400 / 2, rel=0.01)
    # 4.5x the steps at the same learning rate: 4.5x less strength for the same dose
    reg = structured.matched_reg(0.04, (cosine, 39), (cosine, 175))
    assert reg * structured.lr_integral(cosine, 175) == pytest.approx(
        0.04 * structured.lr_integral(cosine, 39)
    )
    assert reg == pytest.approx(0.04 * 39 / 175, rel=0.03)
    with pytest.raises(ValueError, match="steps"):
        structured.lr_integral(cosine, 0)


def test_a_dependency_group_removes_filters_bn_entries_and_next_layer_inputs():
    model = models.BaselineCNN()
    members = {m["name"]: m for m in plots.group_members(model, "features.7.0", [3, 9])}
    assert members["features.7.0"]["axis"] == "out" and members["features.7.0"]["idxs"] == [3, 9]
    assert members["features.7.1"]["axis"] == "out" and members["features.7.1"]["idxs"] == [3, 9]
    linear = members["classifier.1"]  # Flatten: channel k feeds inputs 16k .. 16k + 15
    assert linear["axis"] == "in"
    assert linear["idxs"] == [*range(48, 64), *range(144, 160)]
    members = {m["name"]: m for m in plots.group_members(model, "features.3.0", [5])}
    assert set(members) == {"features.3.0", "features.3.1", "features.4.0"}
    assert members["features.4.0"]["axis"] == "in"
    fig = plots.dependency_group(model, {"features.3.0": [5], "features.7.0": [3, 9]})
    assert len([ax for ax in fig.axes if ax.images]) == 6


# --- the multi-seed selection ------------------------------------------------------------


def test_selection_ranks_equal_cost_candidates_by_their_mean_over_seeds():
    table = {
        "a": {"val_accuracy": [0.80, 0.81, 0.79], "params": 100},
        "b": {"val_accuracy": [0.82, 0.80, 0.83], "params": 101},
        "c": {"val_accuracy": [0.90, 0.90, 0.90], "params": 150},  # keeps more parameters
        "d": {"val_accuracy": [0.82, 0.80, 0.83], "params": 100, "same_as": "b"},
    }
    assert selection.eligible(table) == ["b", "a"]
    v = selection.verdict(table)
    assert (v["best"], v["runner_up"], v["wins"], v["seeds"]) == ("b", "a", 2, 3)
    assert v["difference_points"] == pytest.approx(100 * (0.8166667 - 0.80), abs=1e-4)
    text = summary.selection_text(table, "importance").data
    assert "ahead on 2 of 3 seed(s)" in text and "tied" in text
    table["b"]["val_accuracy"] = [0.85, 0.86, 0.85]
    assert "holds on every seed" in summary.selection_text(table, "importance").data


def test_iterative_vs_oneshot_is_decided_against_the_test_noise():
    def row(accuracy):
        return {"accuracy": accuracy, "accuracy_pruned": 0.1}

    metrics = {
        "baseline": {"accuracy": 0.90, "test_images": 10_000},
        "oneshot": {"0.5": row(0.900), "0.8": row(0.893), "0.95": row(0.70)},
        "iterative": {"0.5": row(0.902), "0.8": row(0.890), "0.95": row(0.80)},
    }
    v = summary.iterative_vs_oneshot(metrics)
    assert v["tie_points"] == pytest.approx(100 * 2 * (2 * 0.9 * 0.1 / 10_000) ** 0.5)
    assert v["tie"] == ["0.5", "0.8"] and v["iterative_better"] == ["0.95"]
    assert "iterating pays" in summary.iterative_text(metrics).data
    assert experiment.key(0.95) == "0.95" and experiment.key(0.3) == "0.3"


# --- results saved before the interleaved protocol still render ---------------------------

LEGACY = Path(__file__).parent / "fixtures"


def test_saved_results_without_intervals_render_and_are_labelled():
    import json

    import matplotlib

    matplotlib.use("Agg")
    record = json.loads((LEGACY / "pruning_saved_before_intervals.json").read_text())
    m = record["metrics"]
    note = summary.saved_run_note(record).data
    assert formatting.NO_INTERVAL in note and "one seed" in note
    assert "structured 50 %: accuracy drop" in note  # the saved run missed that target
    targets = summary.targets_table(m, "saved").data
    assert f"2.68x ({formatting.NO_INTERVAL})" in targets and "**missed**" in targets
    for table in (summary.structured_table(m), summary.comparison_table(m), summary.conclusion(m)):
        assert formatting.NO_INTERVAL in table.data
    assert "Ties" in summary.iterative_text(m).data
    assert "100 runs" in summary.budget_text(m).data
    for figure in (plots.tradeoff, plots.structured, plots.sparsity_sweep, plots.selection):
        assert figure(m).axes
    base = json.loads((LEGACY / "baseline_saved_before_intervals.json").read_text())["metrics"]
    assert formatting.NO_INTERVAL in baseline.latency_table(base).data
    assert formatting.NO_INTERVAL in baseline.full_results_table(base, base, "quick").data

"""Chapter 3: the Taylor criterion, filter removal, the iterative loop, transfer and the
ImageFolder path (all on tiny networks and data, seconds each)."""

from __future__ import annotations

import json

import pytest
import torch
import torch_pruning as tp
from torch import nn

from course_lib.data import TensorLoader
from course_lib.taylor import criterion, imagefolder, loop, network, transfer
from course_lib.taylor import summary as taylor_summary
from course_lib.taylor.criterion import score_filters
from course_lib.taylor.loop import Budget, prune_iteratively
from course_lib.train import TrainConfig, evaluate

# --- tiny networks and data ----------------------------------------------------------------


def tiny_vgg(num_classes: int = 3, seed: int = 0) -> network.SmallVGG16:
    """SmallVGG16 at 1/16 of VGG16's width (4 ... 32 filters): the chapter's layout, small."""
    torch.manual_seed(seed)
    return network.SmallVGG16(num_classes=num_classes, width_divisor=16, hidden=16)


def with_random_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine parameters."""
    generator = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
    return model


def batches(sizes=(5, 3), classes: int = 3, seed: int = 0, size: int = 32):
    generator = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(n, 3, size, size, generator=generator),
            torch.randint(0, classes, (n,), generator=generator),
        )
        for n in sizes
    ]


def image_loader(n: int = 24, classes: int = 3, batch_size: int = 8, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.arange(n) % classes
    return TensorLoader(
        images, labels, batch_size, shuffle=True, augment=True, seed=seed, drop_last=True
    )


# --- the criterion -------------------------------------------------------------------------


def independent_taylor(
    model: nn.Sequential, data, per_example: bool = True
) -> dict[int, torch.Tensor]:
    """The Taylor criterion without hooks: run the layers one by one, keep every feature map
    (the output of the ReLU after each conv), and ask autograd for dLoss_n/dmap directly,
    one image's loss at a time (``per_example``), or for the batch's mean loss."""
    model.eval()
    totals: dict[int, torch.Tensor] = {}
    for x, y in data:
        maps, index, h = [], [], x
        layers = list(model.features) + list(model.classifier)
        for i, layer in enumerate(layers):
            h = layer(h)
            if isinstance(layer, nn.ReLU) and i < len(model.features):
                h = h.clone()  # a fresh node: the next in-place op must not touch it
                maps.append(h)
                index.append(i)
        losses = nn.functional.cross_entropy(h, y, reduction="none")
        n = len(y)
        if per_example:  # image m's map depends on image m alone (eval mode)
            grads = [torch.autograd.grad(losses[m], maps, retain_graph=True) for m in range(n)]
        else:
            grads = [torch.autograd.grad(losses.mean(), maps)]
        for j, (i, z) in enumerate(zip(index, maps, strict=True)):
            height, width = z.shape[2:]
            if per_example:  # 1/N sum_m |1/(HW) sum_hw z_m * dC_m/dz_m|
                per_image = [
                    (z[m] * grads[m][j][m]).sum((1, 2)) / (height * width) for m in range(n)
                ]
                per_filter = torch.stack(per_image).abs().mean(0)
            else:  # |1/N sum_m 1/(HW) sum_hw z_m * dC_m/dz_m| = |1/(HW) sum z * dC/dz|
                per_filter = (z * grads[0][j]).sum((0, 2, 3)).abs() / (height * width)
            totals[i] = totals.get(i, 0) + per_filter
    return totals


@pytest.mark.parametrize("per_example", [True, False], ids=["paper", "taylor-batch"])
def test_taylor_scores_match_an_independent_autograd_computation(per_example):
    model = with_random_batchnorm(tiny_vgg())
    data = batches((5, 3, 7))
    ours = criterion.taylor_scores(model, data, per_example=per_example)
    reference = independent_taylor(model, data, per_example)
    assert len(ours) == len(reference) == 13
    for (name, got), want in zip(ours.items(), reference.values(), strict=True):
        torch.testing.assert_close(got, want.detach(), rtol=1e-4, atol=1e-9, msg=name)
    assert all(p.grad is None for p in model.parameters()), "no gradient left behind"
    assert not any(m._forward_hooks for m in model.modules()), "no hook left behind"


def test_the_magnitude_per_image_never_scores_below_the_batch_variant():
    """|mean| <= mean of |.| (the triangle inequality), with equality only where no image's
    contribution has the other sign: the batch variant lets opposite images cancel."""
    model = with_random_batchnorm(tiny_vgg())
    data = batches((6,))
    paper = criterion.taylor_scores(model, data)
    batch = criterion.taylor_scores(model, data, per_example=False)
    for name in paper:
        assert bool((paper[name] >= batch[name] * (1 - 1e-5) - 1e-12).all()), name
    assert any(bool((paper[n] > 1.01 * batch[n]).any()) for n in paper), "some cancel"


def plain_convnet() -> nn.Sequential:
    """Bias-free convolutions, each followed directly by a ReLU: here the criterion on the
    feature map equals |sum w * dL/dw| over the filter (Euler's theorem: the map is
    positively homogeneous in the filter's weights), which is torch-pruning's Taylor
    importance with ``multivariable=True``, up to the constant factor H * W. That
    importance takes the magnitude of the whole batch's sum: it is the ``taylor-batch``
    variant, not the paper's per-image magnitude."""
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.Conv2d(6, 8, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 5, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(5 * 8 * 8, 4),
    )


def test_taylor_ranks_like_torch_pruning_group_taylor_importance():
    model = plain_convnet()
    ((x, y),) = batches((6,), classes=4, size=16)
    ours = criterion.taylor_scores(model, [(x, y)], per_example=False)
    model.eval()
    nn.functional.cross_entropy(model(x), y).backward()
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=x[:1])
    importance = tp.importance.GroupTaylorImportance(
        multivariable=True, group_reduction="first", normalizer=None
    )
    sizes = {"0": 16 * 16, "2": 16 * 16, "5": 8 * 8}
    for name, conv in network.conv_layers(model).items():
        group = graph.get_pruning_group(
            conv, tp.prune_conv_out_channels, idxs=list(range(conv.out_channels))
        )
        theirs = importance(group)
        # two computations (activation x its gradient, weight x its gradient) of signed float32
        # sums: their error is absolute, of the order of the largest score, not relative to a
        # score that nearly cancels; kernels differ between CPUs (AVX2, AVX-512)
        tol = 1e-5 * float(theirs.abs().max())
        torch.testing.assert_close(ours[name] * sizes[name], theirs, rtol=1e-4, atol=tol)
        # the same ranking, up to scores closer than that tolerance
        ranked = theirs[ours[name].argsort()]
        assert bool((ranked.diff() >= -tol).all()), name


def test_l1_and_activation_scores():
    model = with_random_batchnorm(tiny_vgg())
    l1 = criterion.l1_scores(model)
    first = model.features[0].weight
    torch.testing.assert_close(l1["features.0"], first.detach().abs().sum((1, 2, 3)))
    data = batches((4, 2))
    scores = criterion.activation_scores(model, data)
    model.eval()
    with torch.no_grad():
        maps = torch.cat([model.features[:3](x) for x, _ in data])
    torch.testing.assert_close(scores["features.0"], maps.mean((0, 2, 3)))


def test_feature_maps_follow_batchnorm_and_relu():
    maps = criterion.feature_maps(tiny_vgg())
    assert list(maps) == list(network.conv_layers(tiny_vgg()))
    assert all(isinstance(m, nn.ReLU) for m in maps.values())
    bare = nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2))
    assert isinstance(criterion.feature_maps(bare)["0"], nn.Conv2d)
    with pytest.raises(ValueError, match="no Conv2d"):
        criterion.feature_maps(nn.Linear(3, 3))


def test_layerwise_normalization_and_global_ranking():
    scores = {
        "a": torch.tensor([3.0, 4.0]),
        "b": torch.tensor([0.0, 0.0, 0.0]),
        "c": torch.tensor([1.0, 1.0, 2.0]),
    }
    normalized = criterion.normalize_per_layer(scores)
    torch.testing.assert_close(normalized["a"], torch.tensor([0.6, 0.8]))
    assert normalized["b"].abs().sum() == 0 and normalized["c"].norm().item() == pytest.approx(1.0)
    chosen = criterion.lowest_filters(normalized, 4, min_filters=1)
    assert chosen == {"b": [0, 1], "c": [0, 1]}, "lowest first, but layer b keeps one filter"
    assert criterion.lowest_filters(normalized, 2) == {"b": [0, 1]}
    with pytest.raises(ValueError, match="only 5 can go"):
        criterion.lowest_filters(normalized, 6)


def test_score_filters_rejects_unknown_criteria_and_empty_data():
    model = tiny_vgg()
    with pytest.raises(ValueError, match="unknown criterion 'apoz'"):
        score_filters(model, "apoz", batches())
    with pytest.raises(ValueError, match="no batches"):
        score_filters(model, "taylor", [])
    first = score_filters(model, "random", [], seed=3)
    assert all(
        torch.equal(first[k], v) for k, v in score_filters(model, "random", [], seed=3).items()
    )


# --- removing filters ------------------------------------------------------------------------


def test_removing_filters_removes_the_batchnorm_entries_and_next_inputs():
    model = with_random_batchnorm(tiny_vgg())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 32, 32)
    convs = network.conv_layers(model)
    last = list(convs)[-1]
    loop.remove_filters(model, {"features.0": [1, 3], last: [0, 5, 6]}, x[:1])
    state = model.state_dict()
    keep = [0, 2]  # features.0 had 4 filters
    assert state["features.0.weight"].shape == (2, 3, 3, 3)
    for key in ("weight", "bias", "running_mean", "running_var"):
        torch.testing.assert_close(state[f"features.1.{key}"], before[f"features.1.{key}"][keep])
    torch.testing.assert_close(state["features.3.weight"], before["features.3.weight"][:, keep])
    kept_last = [i for i in range(32) if i not in (0, 5, 6)]
    first_linear = model.classifier[1]
    assert first_linear.in_features == len(kept_last) * 2 * 2
    columns = torch.tensor([4 * c + p for c in kept_last for p in range(4)])
    torch.testing.assert_close(first_linear.weight, before["classifier.1.weight"][:, columns])
    assert model.eval()(x).shape == (2, 3)
    with pytest.raises(ValueError, match="cannot remove all 4 filters"):
        loop.remove_filters(model, {"features.3": [0, 1, 2, 3]}, x[:1])


def test_restore_pruned_rebuilds_the_structure_from_a_plain_state_dict():
    pruned = tiny_vgg()
    loop.remove_filters(
        pruned, {"features.3": [0], "features.40": [1, 2]}, torch.zeros(1, 3, 32, 32)
    )
    fresh = loop.restore_pruned(tiny_vgg(seed=5), pruned.state_dict(), torch.zeros(1, 3, 32, 32))
    assert network.conv_widths(fresh) == network.conv_widths(pruned)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(fresh.eval()(x), pruned.eval()(x))


# --- the loop ----------------------------------------------------------------------------------


def run_loop(model, budget, checkpoint=None, finetune=None, criterion_name="taylor", **kwargs):
    return prune_iteratively(
        model,
        criterion_name,
        batches((6, 6)),
        finetune,
        None,
        budget,
        filters_per_round=kwargs.pop("per_round", 24),
        seed=kwargs.pop("seed", 0),
        checkpoint=checkpoint,
        progress=False,
        **kwargs,
    )


@pytest.mark.parametrize("measure", ["params", "macs"])
def test_loop_stops_at_the_first_round_within_budget(measure):
    run = run_loop(tiny_vgg(), Budget(0.4, measure))
    kept = [1 - getattr(r, f"{measure}_removed") for r in run.rounds]
    assert kept[-1] <= 0.4 < kept[-2], kept
    assert all(a > b for a, b in zip(kept, kept[1:], strict=False)), "every round removes"
    widths = [sum(r.widths) for r in run.rounds]
    assert all(a - b == 24 for a, b in zip(widths, widths[1:], strict=False))
    assert "budget met" in run.stopped and run.rounds[0].round == 0


def test_loop_never_empties_a_layer_and_reports_why_it_stopped():
    run = run_loop(tiny_vgg(), Budget(0.001), per_round=200, min_filters=2)
    assert min(run.last.widths) == 2 and "down to 2" in run.stopped
    capped = run_loop(tiny_vgg(), Budget(0.001), per_round=5, max_rounds=2)
    assert capped.last.round == 2 and "max_rounds" in capped.stopped


def finetune_for_tests(seed: int = 0):
    config = TrainConfig(epochs=1, lr=0.05, schedule="cosine", autocast=False, channels_last=False)
    return loop.finetune_rounds(image_loader(), config, seed)


class Interrupted(RuntimeError):
    pass


def test_resumed_run_ends_exactly_like_an_uninterrupted_one(tmp_path):
    budget = Budget(0.5)
    whole = tiny_vgg()
    expected = run_loop(whole, budget, finetune=finetune_for_tests())
    assert expected.last.round >= 3
    finetune = finetune_for_tests()

    def crash_in_round_3(model, index):
        if index == 3:
            raise Interrupted
        return finetune(model, index)

    checkpoint = tmp_path / "run.pt"
    with pytest.raises(Interrupted):
        run_loop(tiny_vgg(), budget, checkpoint, crash_in_round_3)
    saved = torch.load(checkpoint, weights_only=True)
    assert len(saved["rounds"]) == 3, "rounds 0-2 were saved"
    resumed_model = tiny_vgg()
    resumed = run_loop(resumed_model, budget, checkpoint, finetune_for_tests())
    assert resumed.as_dict() | {"rounds": None} == expected.as_dict() | {"rounds": None}
    for got, want in zip(resumed.rounds, expected.rounds, strict=True):
        assert (got.widths, got.params, got.macs) == (want.widths, want.params, want.macs)
    for key, value in whole.state_dict().items():
        assert torch.equal(resumed_model.state_dict()[key], value), key


def test_resume_refuses_a_checkpoint_of_other_settings(tmp_path):
    checkpoint = tmp_path / "run.pt"
    run_loop(tiny_vgg(), Budget(0.6), checkpoint)
    written = checkpoint.read_bytes()
    with pytest.raises(ValueError, match="other settings"):
        run_loop(tiny_vgg(), Budget(0.6), checkpoint, criterion_name="l1")
    assert checkpoint.read_bytes() == written, "left untouched"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"keep": 0.0}, "strictly between 0 and 1"),
        ({"keep": 1.2}, "strictly between 0 and 1"),
        ({"keep": -0.1}, "strictly between 0 and 1"),
        ({"keep": 0.5, "measure": "flops"}, "unknown budget measure 'flops'"),
    ],
)
def test_budget_out_of_range_is_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Budget(**kwargs)


def test_loop_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown criterion"):
        run_loop(tiny_vgg(), Budget(0.5), criterion_name="weight")
    with pytest.raises(ValueError, match="filters_per_round must be >= 1"):
        run_loop(tiny_vgg(), Budget(0.5), per_round=0)


# --- transfer and the source checkpoint ------------------------------------------------------


def test_replace_head_keeps_every_other_weight():
    model = tiny_vgg(num_classes=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    network.replace_head(model, 2, seed=0)
    assert model.classifier[-1].out_features == 2
    changed = {
        k for k, v in model.state_dict().items() if k not in before or not torch.equal(before[k], v)
    }
    assert changed == {"classifier.7.weight", "classifier.7.bias"}


def test_missing_or_corrupt_source_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(transfer.CheckpointError, match="course_lib.taylor.pretrain"):
        transfer.load_source(tmp_path / "nothing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(transfer.CheckpointError, match="is not a SmallVGG16 source checkpoint"):
        transfer.load_source(corrupt)
    other = tmp_path / "other.pt"
    torch.save(tiny_vgg().state_dict(), other)
    with pytest.raises(transfer.CheckpointError, match="--force"):
        transfer.load_source(other)


def test_committed_source_checkpoint_loads_and_is_small():
    path = transfer.source_checkpoint()
    assert path.exists(), "checkpoints/taylor_source_vgg.pt is part of the course"
    assert path.stat().st_size < 10 * 2**20
    model = transfer.load_source()
    assert model.classifier[-1].out_features == len(transfer.SOURCE_CLASSES) == 8
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["classes"] == list(transfer.SOURCE_CLASSES)
    assert record["test_accuracy"] > 0.8


def test_class_loaders_relabel_and_count():
    from course_lib.data import DataSettings, load_cifar10

    loaders = transfer.class_loaders(
        load_cifar10(), transfer.HELD_OUT, DataSettings(train_per_class=313, batch_size=64)
    )
    assert len(loaders.train.labels) == 626 and len(loaders.test.labels) == 2000
    assert torch.equal(loaders.test.labels.bincount(), torch.tensor([1000, 1000]))
    with pytest.raises(ValueError, match="unknown classes"):
        transfer.check_classes(("automobile", "bus"))
    with pytest.raises(ValueError, match="two distinct"):
        transfer.check_classes(("cat", "cat"))


def test_pretrain_never_overwrites_a_checkpoint(tmp_path):
    from course_lib.taylor import pretrain

    existing = tmp_path / "source.pt"
    existing.write_bytes(b"made by someone")
    with pytest.raises(FileExistsError, match="--force"):
        pretrain.pretrain(existing)
    assert existing.read_bytes() == b"made by someone"


# --- the seed's real experiment: ImageFolder + torchvision VGG16 -----------------------------


def make_image_folder(root, classes=("monet", "farshchian"), per_class=4, size=40):
    """A tiny generated image folder: random RGB PNGs, one sub-folder per class."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in classes:
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


@pytest.mark.slow
def test_image_folder_path_prunes_an_untrained_vgg16(tmp_path):
    root = make_image_folder(tmp_path / "paintings")
    loaders = imagefolder.image_folder_loaders(
        root, image_size=32, test_fraction=0.25, batch_size=4
    )
    assert loaders.classes == ["farshchian", "monet"]
    assert (len(loaders.train.dataset), len(loaders.test.dataset)) == (6, 2)
    model = imagefolder.vgg16_transfer(len(loaders.classes), weights=None)
    config = TrainConfig(epochs=1, lr=1e-3, schedule="cosine", autocast=False, channels_last=False)
    run = prune_iteratively(
        model,
        "taylor",
        loaders.calibration,
        loop.finetune_rounds(loaders.train, config, seed=0),
        lambda m: evaluate(m, loaders.test)[1],
        Budget(0.5),
        filters_per_round=256,
        max_rounds=1,
        input_shape=(1, 3, 32, 32),
        progress=False,
    )
    assert run.last.round == 1 and sum(run.last.widths) == sum(network.VGG16_WIDTHS) - 256
    assert model.classifier[0].in_features == run.last.widths[-1] * 7 * 7
    assert model.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 2)


def test_malformed_image_folder_is_a_clear_error(tmp_path):
    with pytest.raises(imagefolder.ImageFolderError, match="is not a folder"):
        imagefolder.check_image_folder(tmp_path / "missing")
    one_class = make_image_folder(tmp_path / "one", classes=("monet",))
    with pytest.raises(imagefolder.ImageFolderError, match="needs at least two"):
        imagefolder.image_folder_loaders(one_class)
    too_few = make_image_folder(tmp_path / "few", per_class=1)
    with pytest.raises(imagefolder.ImageFolderError, match="holds 1 image"):
        imagefolder.check_image_folder(too_few)
    broken = make_image_folder(tmp_path / "broken")
    (broken / "monet" / "9.png").write_bytes(b"not an image")
    with pytest.raises(imagefolder.ImageFolderError, match="9.png is not a readable image"):
        imagefolder.check_image_folder(broken)
    with pytest.raises(ValueError, match="test_fraction"):
        imagefolder.split_per_class([0, 0, 1, 1], 1.0, seed=0)


@pytest.mark.slow
def test_missing_imagenet_weights_are_a_clear_error(tmp_path, monkeypatch):
    from urllib.error import URLError

    import torchvision.models._api as api

    with pytest.raises(imagefolder.WeightsUnavailable, match="no VGG16 weights at"):
        imagefolder.vgg16_transfer(2, weights=tmp_path / "vgg16.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, wrong)
    with pytest.raises(imagefolder.WeightsUnavailable, match="does not hold torchvision's VGG16"):
        imagefolder.vgg16_transfer(2, weights=wrong)

    def offline(*args, **kwargs):
        raise URLError("no internet")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    with pytest.raises(imagefolder.WeightsUnavailable, match="could not download .* pass its path"):
        imagefolder.vgg16_transfer(2, weights="imagenet")


# --- the first-order check, tables and figures ----------------------------------------------


def test_first_order_check_matches_the_criterion_and_a_direct_measurement():
    model = with_random_batchnorm(tiny_vgg())
    data = batches((6,))
    check = criterion.first_order_check(model, data, "features.7", filters=5)
    scores = criterion.taylor_scores(model, data)["features.7"][:5]
    _, _, h, w = model.features[:9](data[0][0]).shape
    torch.testing.assert_close(torch.tensor(check["estimated"]).abs() / (6 * h * w), scores)
    x, y = data[0]
    model.eval()
    with torch.no_grad():
        base = nn.functional.cross_entropy(model(x), y).item()
        maps = model.features[:10](x).clone()
        maps[:, 2] = 0
        zeroed = nn.functional.cross_entropy(model.classifier(model.features[10:](maps)), y).item()
    assert check["actual"][2] == pytest.approx(zeroed - base, abs=1e-6)
    with pytest.raises(ValueError, match="no conv layer 'features.8'"):
        criterion.first_order_check(model, data, "features.8")


def tiny_metrics() -> dict:
    """A metrics dict of the chapter's layout, from two tiny runs (accuracies made up)."""
    runs = {}
    for name in ("taylor", "random"):
        evaluate = iter([0.9, 0.8, 0.85, 0.7, 0.8, 0.6, 0.75, 0.5, 0.7] * 3).__next__
        run = prune_iteratively(
            tiny_vgg(),
            name,
            batches(),
            None,
            lambda m, e=evaluate: e(),
            Budget(0.6),
            40,
            progress=False,
        )
        runs[name] = {"0": run.as_dict()}
    metrics = {
        "source": {
            "classes": list(transfer.SOURCE_CLASSES),
            "val_accuracy": 0.9,
            "test_accuracy": 0.88,
            "test_images": 8000,
        },
        "pair": list(transfer.HELD_OUT),
        "unpruned": {"0": {"val_accuracy": 0.91, "test_accuracy": 0.9, "wall_time_s": 1.0}},
        "criteria": runs,
        "test_images": 2000,
        "first_order": {
            "layer": "features.7",
            "estimated": [0.1, -0.2, 0.3],
            "actual": [0.2, -0.1, 0.5],
        },
    }
    metrics |= taylor_summary.headline(metrics, 0, 2000)
    metrics["deployment"] = {
        "latency_ms": {
            n: {"median_ms": v, "low_ms": v * 0.9, "high_ms": v * 1.1}
            for n, v in (("unpruned", 1.0), ("pruned", 0.4))
        },
        "speedup": {"pruned": {"median": 2.5, "interval": [2.2, 2.8]}},
        "models": {
            n: {"params": 10, "macs": 20, "torch_bytes": 30, "onnx_bytes": 40}
            for n in ("unpruned", "pruned")
        },
        "baseline": "unpruned",
    }
    return json.loads(json.dumps(metrics))


def test_tables_and_figures_draw_any_metrics():
    import matplotlib.pyplot as plt

    from course_lib.taylor import plots

    m = tiny_metrics()
    assert m["params_removed_fraction"] >= 0.4 and len(m["layer_widths"]["after"]) == 13
    assert m["accuracy_drop_points"] == pytest.approx(100 * (0.9 - m["pruned_test_accuracy"]))
    for table in (
        taylor_summary.transfer_table(m),
        taylor_summary.rounds_table(m["criteria"]["taylor"]["0"]),
        taylor_summary.criteria_table(m),
        taylor_summary.widths_table(m),
        taylor_summary.error_bars(m),
        taylor_summary.deployment_table(m),
        taylor_summary.targets_table(m, "test"),
        taylor_summary.conclusion(m),
        taylor_summary.widths_observation(m),
        taylor_summary.first_order_summary(m["first_order"]),
    ):
        assert table.data.strip()
    assert "3.39" in taylor_summary.error_bars(m).data, "92 % on 64 images: 3.39 points"
    assert "2.50x (2.20-2.80)" in taylor_summary.deployment_table(m).data
    for fig in (plots.criteria(m), plots.layer_widths(m), plots.first_order(m["first_order"])):
        assert fig.axes
        plt.close(fig)

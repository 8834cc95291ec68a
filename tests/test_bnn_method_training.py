"""Every method of :mod:`course_lib.bnn.methods` trains on the binary ResNet-20: a step or
two on tiny data, seeded, twice, and the packed engine still matches the trained model."""

from __future__ import annotations

import pytest
import torch

from course_lib import bnn
from course_lib.bnn import kernel
from course_lib.bnn.methods import train_method
from course_lib.bnn.settings import STE_NET, methods_settings
from course_lib.data import Loaders, TensorLoader
from course_lib.models import resnet20
from course_lib.train import seed_everything

torch.set_num_threads(1)


def tiny_loaders(n: int = 8, size: int = 8) -> Loaders:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, size, size, generator=g)
    y = torch.arange(n) % 4
    train = TensorLoader(x, y, batch_size=n // 2, shuffle=True, seed=0)
    test = TensorLoader(x, y, batch_size=n)
    return Loaders(train, test, test)


def teacher() -> torch.nn.Module:
    seed_everything(5)
    return resnet20()


CONFIG = bnn.BinaryTrainConfig(epochs=1, warmup_epochs=0.5)


def run(method: str, seed: int = 0) -> bnn.MethodRun:
    return train_method(
        method, tiny_loaders(), CONFIG, STE_NET, seed, teacher=teacher(), progress=False
    )


@pytest.mark.slow
@pytest.mark.parametrize("method", bnn.METHODS)
def test_every_method_trains_and_repeats_its_numbers_with_a_seed(method):
    first, second = run(method), run(method)
    assert len(first.val_accuracy) == 1 and first.epochs == 1
    assert isinstance(first.test_accuracy, float)
    assert first.test_accuracy == second.test_accuracy and first.val_accuracy == second.val_accuracy
    assert first.flips == second.flips and first.latent_accuracy == second.latent_accuracy
    a, b = first.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    seed_everything(0)
    fresh = bnn.methods.build_model(method, STE_NET, bnn.MethodOptions())
    moved = [k for k, v in fresh.state_dict().items() if not torch.equal(v, a[k])]
    assert any(k.endswith("weight") for k in moved), "training changed no weight"


@pytest.mark.slow
def test_flips_are_counted_for_ste_and_uncertainty_only():
    assert isinstance(run("ste").flips[0], int) and run("ste").flips[0] > 0
    assert run("uncertainty").flips is not None
    assert run("recu").flips is None and run("fp").flips is None
    assert run("latent_bn").latent_accuracy is not None and run("dabnn").latent_accuracy is None


def test_a_different_seed_gives_a_different_network():
    a, b = run("ste", 0).model.state_dict(), run("ste", 1).model.state_dict()
    assert not all(torch.equal(a[k], b[k]) for k in a)


def test_methods_check_their_arguments():
    with pytest.raises(ValueError, match="unknown method"):
        train_method("xnor++", tiny_loaders(), CONFIG, STE_NET)
    with pytest.raises(ValueError, match="teacher"):
        train_method("bdbnn", tiny_loaders(), CONFIG, STE_NET)
    with pytest.raises(ValueError, match="certainty"):
        bnn.BinaryNetConfig(certainty=1.5)
    with pytest.raises(ValueError):
        methods_settings("medium")


def test_features_are_what_the_classifier_reads():
    model = bnn.binary_resnet20(STE_NET).eval()
    x = torch.randn(2, 3, 8, 8)
    features = model.features(x)
    assert features.shape == (2, STE_NET.widths[-1])
    assert torch.equal(model.head[-1](features), model(x))


@pytest.mark.parametrize("method", ["ste", "recu", "dabnn", "latent_bn", "uncertainty"])
def test_packed_engine_matches_a_trained_method(method):
    model = run(method).model.eval()
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        want = model(x)
    got = bnn.PackedResNet.from_model(model, "torch")(x)
    assert torch.equal(got, want), f"{(got - want).abs().max().item():.3g}"


def test_packing_and_inference_use_the_held_signs_not_the_latent_ones():
    model = run("uncertainty").model.eval()
    conv = model.stages[0].conv1
    held = conv.tracker.previous.clone()
    with torch.no_grad():
        conv.weight.neg_()  # every latent sign flips; the held signs must not
    assert torch.equal(conv.export_binary()["sign"], held)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        want = model(x)
    assert torch.equal(bnn.PackedResNet.from_model(model, "torch")(x), want)


def test_dabnn_amplitudes_run_after_the_kernel_and_survive_the_file(tmp_path):
    model = run("dabnn").model.eval()
    engine = bnn.PackedResNet.from_model(model, "torch")
    assert all(layer.tail is not None for layer in engine.layers)
    assert "18 with DA-BNN amplitudes" in engine.describe()
    bnn.save_packed(engine, tmp_path / "dabnn.cbnn")
    loaded = bnn.load_packed(tmp_path / "dabnn.cbnn", "torch")
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        want = model(x)
    assert torch.equal(loaded(x), want)
    if bnn.kernel_available():
        native = bnn.load_packed(tmp_path / "dabnn.cbnn", "cpp")
        # the native tail sums in another order, in double, and rounds the factors to float
        # as the model does: the same floats, except, rarely, where a factor lies within a
        # double's last bits of a float32 rounding boundary (a sign flipped by it changes
        # some values downstream). A tail that rounds differently makes almost every value
        # after the first DA-BNN layer differ (as the float32 tail did).
        for size in (32, 12):  # maps of 32/16/8 and of 12/6/3 pixels (the remainder loops)
            h = native.stem(torch.randn(4, 3, size, size))
            body = native.body_layer_by_layer(h)
            for isa in kernel.isas_here():  # the portable tail and the AVX2 one
                with kernel.capped_isa(isa):
                    got = native.body(h)
                assert (got == body).float().mean() > 0.9, (size, isa)
        torch.testing.assert_close(native(x), want, atol=1e-5, rtol=1e-5)


def test_eval_folds_the_binary_path_statistics_of_the_dual_batchnorm():
    block = run("latent_bn").model.eval().stages[0]
    mean_b, _ = block.bn1.statistics("binary")
    mean_w, _ = block.bn1.statistics("latent")
    assert not torch.allclose(mean_b, mean_w)
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        unfolded = block.bn1(block.conv1(x), "binary")
        folded = bnn.resnet.folded(block.conv1, block.bn1, x)
    assert torch.allclose(folded, unfolded, atol=1e-4)


def test_the_certainty_sign_flips_fewer_weights_than_plain_ste():
    held, plain = run("uncertainty").flips[0], run("ste").flips[0]
    assert 0 <= held < plain
    gate_open = bnn.MethodOptions(certainty=1.0)
    loaders = tiny_loaders()
    same = train_method("uncertainty", loaders, CONFIG, STE_NET, 0, gate_open, progress=False)
    assert same.flips[0] == plain


def test_curves_are_measured_evenly_within_each_epoch():
    points = bnn.methods.evaluation_steps(steps_per_epoch=10, epochs=2, per_epoch=4)
    assert list(points) == [2, 4, 7, 9, 12, 14, 17, 19]  # the last step of each epoch included
    assert points[4] == 0.5 and points[19] == 2.0
    assert list(bnn.methods.evaluation_steps(3, 1, 1)) == [2]
    with pytest.raises(ValueError, match="evaluations per epoch"):
        bnn.methods.evaluation_steps(3, 1, 4)


def test_a_method_measured_twice_per_epoch_records_where_and_keeps_training():
    twice = train_method(
        "ste", tiny_loaders(), CONFIG, STE_NET, 0, progress=False, evaluations_per_epoch=2
    )
    assert twice.val_epochs == [0.5, 1.0] and len(twice.val_accuracy) == 2
    assert len(twice.flips) == 2 and all(f >= 0 for f in twice.flips)
    once = run("ste")
    # evaluating between the steps leaves the training itself unchanged (train mode restored)
    a, b = (
        twice.model.state_dict(),
        train_method(
            "ste", tiny_loaders(), CONFIG, STE_NET, 0, teacher=teacher(), progress=False
        ).model.state_dict(),
    )
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert once.val_epochs == [1.0]


@pytest.mark.parametrize("method", ["ste", "latent_bn", "fp"])
def test_every_method_starts_from_the_twin_it_is_given(method):
    twin = teacher()
    model = bnn.methods.build_model(method, STE_NET, bnn.MethodOptions(), start=twin)
    state, twin_state = model.state_dict(), twin.state_dict()
    assert torch.equal(state["stem.0.weight"], twin_state["stem.0.weight"])
    assert torch.equal(state["stages.0.conv1.weight"], twin_state["stages.0.conv1.weight"])
    if method == "latent_bn":  # both BatchNorm paths take the twin's statistics
        for path in ("binary", "latent"):
            assert torch.equal(
                state[f"stages.0.bn1.running_var_{path}"], twin_state["stages.0.bn1.running_var"]
            )


def test_a_missing_twin_says_which_chapter_makes_it(tmp_path, monkeypatch):
    from course_lib import paths

    monkeypatch.setattr(paths, "CHECKPOINT_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="run chapter 5 first"):
        bnn.load_twin("full")

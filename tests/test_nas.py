"""Tests of course_lib.nas: fast (tiny inputs, at most two search steps) and exact where they
can be."""

from __future__ import annotations

import sys

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn

from course_lib import data, measure, nas, results, train
from course_lib.data import DataSettings
from course_lib.nas import multicore, plots, summary
from course_lib.nas.supernet import DIRECT, SYNC
from course_lib.train import TrainConfig

TINY = nas.SearchSpace(widths=(4, 6, 8), hidden=16)


def _archs(space: nas.SearchSpace) -> list[nas.Architecture]:
    a, b = space.ops[0], space.ops[-1]
    return [
        nas.Architecture.uniform(space, (a, b)),
        nas.Architecture.uniform(space, (b, a), syncs=[True] * space.levels),
        nas.Architecture.of([[a, a], [b, a], [a, b]], [False, True, False]),
        nas.Architecture.of([[b, b], [a, a], [b, b]], [True, False, True]),
    ]


def _scramble(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN statistics and affine parameters, so that eval mode is not an identity."""
    generator = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
    return model


# --- decision variables --------------------------------------------------------------


def test_softmax_weights_sum_to_one():
    net = nas.SuperNet(nas.SearchSpace(ops=("conv3x3", "conv5x5", "sep3x3"), widths=(4, 8)))
    with torch.no_grad():
        net.op_logits.normal_(0, 3)
        net.sync_logits.normal_(0, 3)
    op_probs, sync_probs = net.op_probs(), net.sync_probs()
    assert op_probs.shape == (2, 2, 3) and sync_probs.shape == (2, 2)
    torch.testing.assert_close(op_probs.sum(-1), torch.ones(2, 2))
    torch.testing.assert_close(sync_probs.sum(-1), torch.ones(2))
    assert (op_probs > 0).all() and (sync_probs > 0).all()


def test_mixed_op_is_the_weighted_sum_of_its_ops():
    op = nas.MixedOp(("conv3x3", "conv5x5"), 3, 4, pool=False).eval()
    x, w = torch.randn(2, 3, 8, 8), torch.tensor([0.3, 0.7])
    with torch.no_grad():
        expected = 0.3 * op.candidates[0](x) + 0.7 * op.candidates[1](x)
        torch.testing.assert_close(op(x, w), expected)


def test_sync_point_mixes_merge_and_direct():
    point = nas.SyncPoint("sum", paths=2, channels=3)
    a, b = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    out = point([a, b], torch.tensor([0.25, 0.75]))
    torch.testing.assert_close(out[0], 0.25 * (a + b) + 0.75 * a)
    torch.testing.assert_close(out[1], 0.25 * (a + b) + 0.75 * b)


def test_decision_variables_and_weights_are_disjoint():
    net = nas.SuperNet(TINY)
    arch_ids = {id(p) for p in net.arch_parameters()}
    weight_ids = {id(p) for p in net.weight_parameters()}
    assert not arch_ids & weight_ids
    assert len(arch_ids) + len(weight_ids) == len(list(net.parameters()))


# --- derivation ----------------------------------------------------------------------


@pytest.mark.parametrize("merge", ["conv", "sum"])
def test_one_hot_supernet_equals_derived_network_exactly(merge):
    space = nas.SearchSpace(widths=(4, 6, 8), hidden=16, merge=merge)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for arch in _archs(space):
        supernet = _scramble(nas.SuperNet(space)).eval()
        nas.fix_decisions(supernet, arch)
        assert nas.derive(supernet) == arch
        net = nas.extract_network(supernet).eval()
        with torch.no_grad():
            assert torch.equal(supernet(x), net(x)), arch.describe()


def test_derive_takes_argmax_op_and_sync_if_more_likely():
    supernet = nas.SuperNet(TINY)
    with torch.no_grad():
        supernet.op_logits.zero_()
        supernet.op_logits[1, 0, 1] = 2.0  # level 1, path 0 -> conv5x5
        supernet.sync_logits.zero_()
        supernet.sync_logits[:, DIRECT] = 0.1
        supernet.sync_logits[2, SYNC] = 0.2  # only the last point syncs
    arch = nas.derive(supernet)
    assert arch.ops == (("conv3x3", "conv3x3"), ("conv5x5", "conv3x3"), ("conv3x3", "conv3x3"))
    assert arch.syncs == (False, False, True)


def test_derived_network_holds_only_chosen_ops_and_syncs():
    arch = nas.Architecture.of(
        [["conv3x3", "conv5x5"], ["conv5x5", "conv5x5"], ["conv3x3", "conv3x3"]],
        [True, False, False],
    )
    net = nas.ParallelNet(TINY, arch)
    names = [name for name, _ in net.named_parameters()]
    assert not any("logits" in name for name in names)
    assert not any(isinstance(m, nas.MixedOp | nas.SyncPoint) for m in net.modules())
    kernels = [m.kernel_size[0] for m in net.modules() if isinstance(m, nn.Conv2d)]
    # level by level, path by path, then the one kept 1x1 merge (after level 0)
    assert kernels == [3, 5, 5, 5, 3, 3, 1]
    assert list(net.merges) == ["0"]
    supernet = nas.fix_decisions(nas.SuperNet(TINY), arch)
    assert measure.count_params(nas.extract_network(supernet)) == measure.count_params(net)
    assert measure.count_params(net) < measure.count_params(supernet)


# --- costs ---------------------------------------------------------------------------


def test_cost_formulas_match_hand_computed_values():
    # eq. 7-8: a 3x3 conv, 2 -> 4 channels, 5x5 output: 9*2*25*4 = 1800 multiplications,
    # each output sums 18 products with 17 additions: 17*25*4 = 1700 additions
    assert nas.conv_mults(3, 5, 5, 2, 4) == 1800
    assert nas.conv_adds(3, 5, 5, 2, 4) == 1700
    # eq. 9-10: FC 10 -> 3
    assert nas.fc_mults(10, 3) == 30
    assert nas.fc_adds(10, 3) == 27
    # separable 3x3, 2 -> 4 channels at 5x5: depthwise 9*25*2 = 450 (8*50 = 400 adds),
    # pointwise 2*25*4 = 200 (1*100 = 100 adds)
    assert nas.op_cost("sep3x3", 2, 4, 5) == nas.OpCost(650, 500)
    assert nas.op_cost("conv5x5", 3, 8, 32).flops == 25 * 3 * 1024 * 8 + (75 - 1) * 1024 * 8


@pytest.mark.parametrize("op", nas.OPS)
def test_op_cost_matches_independent_counter(op):
    module = nas.make_op(op, 6, 10)
    assert nas.op_cost(op, 6, 10, 12).mults == measure.count_macs(module, (1, 6, 12, 12))


@pytest.mark.parametrize("merge", ["conv", "sum"])
def test_architecture_cost_matches_independent_counter(merge):
    space = nas.SearchSpace(widths=(4, 6, 8), hidden=16, merge=merge, ops=("conv3x3", "sep5x5"))
    for arch in _archs(space):
        assert nas.architecture_cost(space, arch).mults == measure.count_macs(
            nas.ParallelNet(space, arch)
        )


def test_cost_losses_are_normalized_and_follow_eq_12():
    table = nas.op_cost_table(TINY)
    assert table.shape == (3, 2, 2) and (table[..., 1] > table[..., 0]).all()
    cheap = torch.tensor([1.0, 0.0]).expand(3, 2, 2)
    dear = torch.tensor([0.0, 1.0]).expand(3, 2, 2)
    assert nas.ops_loss(dear, table).item() == pytest.approx(1.0)
    # by hand, (mults + adds) per level for 3x3 and 5x5 (3->4 at 32x32, 4->6 at 16x16,
    # 6->8 at 8x8): 3x3: 217088 + 109056 + 54784; 5x5: 610304 + 305664 + 153088
    assert table[:, 0].tolist() == [[217088, 610304], [109056, 305664], [54784, 153088]]
    assert nas.ops_loss(cheap, table).item() == pytest.approx(380928 / 1069056)
    syncs = nas.sync_cost_table(TINY)
    assert nas.sync_loss(torch.tensor([[1.0, 0.0]] * 3), syncs).item() == pytest.approx(1.0)
    assert nas.sync_loss(torch.tensor([[0.0, 1.0]] * 3), syncs).item() == 0.0
    total = nas.total_loss(torch.tensor(2.0), torch.tensor(0.5), torch.tensor(0.25), 0.28, 0.1)
    assert total.item() == pytest.approx(0.28 * 2.0 + 0.1 * 0.75)


def test_measured_sync_cost_plugs_into_the_loss():
    # 2 levels of sync time (ms) at 1e6 FLOPs per ms: C_sync in op-FLOP equivalents
    costs = nas.measured_sync_costs([0.01, 0.02, 0.03], 1e6)
    assert costs == (1e4, 2e4, 3e4)
    ops, syncs, scale = nas.cost_tables(TINY, costs)
    assert syncs.tolist() == [1e4, 2e4, 3e4]
    assert scale == pytest.approx(ops.amax(dim=-1).sum().item())  # the ops' normalizer
    probs = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    expected = (1e4 + 0.5 * 2e4) / scale
    assert nas.sync_loss(probs, syncs, scale).item() == pytest.approx(expected)
    # the default: merge FLOPs, normalized by themselves
    _, flops, none = nas.cost_tables(TINY)
    assert none is None and torch.equal(flops, nas.sync_cost_table(TINY))
    with pytest.raises(ValueError, match="3 sync points"):
        nas.cost_tables(TINY, (1.0, 2.0))
    with pytest.raises(ValueError, match="throughput"):
        nas.measured_sync_costs([0.1], 0.0)
    with pytest.raises(ValueError, match="sync_costs"):
        nas.SearchConfig(sync_costs=(-1.0, 0.0, 0.0))


def test_search_with_a_higher_measured_sync_cost_drops_sync_points_faster():
    def search_with(sync_costs):
        torch.manual_seed(0)
        supernet = nas.SuperNet(TINY)
        config = nas.SearchConfig(
            weights=TrainConfig(epochs=1, lr=0.05, autocast=False, channels_last=False),
            arch_lr=0.5,
            beta=1.0,
            sync_costs=sync_costs,
        )
        history = nas.search(supernet, _Batches(), config, progress=False)
        return torch.tensor(history.sync_probs[-1])[:, 0], history

    cheap, _ = search_with((0.0, 0.0, 0.0))
    dear, history = search_with((1e7, 1e7, 1e7))
    assert (dear < cheap).all()
    assert history.sync_loss[-1] > 0


def test_cost_gradient_prefers_cheaper_ops():
    supernet = nas.SuperNet(TINY)
    loss = nas.ops_loss(supernet.op_probs(), nas.op_cost_table(TINY))
    loss.backward()
    assert (supernet.op_logits.grad[..., 1] > 0).all()  # descending lowers the 5x5 logits
    assert (supernet.op_logits.grad[..., 0] < 0).all()


# --- parallel execution --------------------------------------------------------------


def test_stages_cut_at_kept_sync_points():
    arch = nas.Architecture.of([["conv3x3", "conv5x5"]] * 3, [True, False, True])
    assert len(nas.stages(nas.ParallelNet(TINY, arch))) == 3
    assert (
        len(nas.stages(nas.ParallelNet(TINY, nas.Architecture.uniform(TINY, ("conv3x3",) * 2))))
        == 1
    )


def test_parallel_executor_gives_the_same_outputs_as_sequential():
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)
    for arch in _archs(TINY)[:3]:
        net = _scramble(nas.ParallelNet(TINY, arch)).eval()
        with (
            nas.PathExecutor(net, parallel=True) as par,
            nas.PathExecutor(net, parallel=False) as seq,
        ):
            out_par, out_seq = par(x), seq(x)
            assert np.array_equal(out_par, out_seq)  # same batch, same kernels: exact
            assert np.array_equal(par(x[:1]), seq(x[:1]))
            # batch 1 against batch 2: ONNX Runtime may pick other kernels for another batch
            # size or instruction set (AVX2, AVX-512), which sum in another order
            np.testing.assert_allclose(par(x[:1]), out_par[:1], rtol=1e-5, atol=1e-6)
        with torch.no_grad():
            np.testing.assert_allclose(
                out_par, net(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5
            )


def test_parallel_executor_raises_on_bad_input_and_recovers():
    net = nas.ParallelNet(TINY, nas.Architecture.uniform(TINY, ("conv3x3", "conv5x5"))).eval()
    x = np.zeros((1, 3, 32, 32), dtype=np.float32)
    with nas.PathExecutor(net) as par:
        good = par(x)
        with pytest.raises(Exception):  # noqa: B017 - whatever ONNX Runtime raises
            par(np.zeros((1, 4, 32, 32), dtype=np.float32))
        assert np.array_equal(par(x), good)  # no stale result of the failed call


@pytest.mark.slow
@pytest.mark.parametrize("merge", ["conv", "sum"])
def test_fork_executor_gives_the_networks_logits(merge):
    space = nas.SearchSpace(widths=(4, 6, 8), hidden=16, merge=merge)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for arch in _archs(space):
        net = _scramble(nas.ParallelNet(space, arch)).eval()
        before = {k: v.clone() for k, v in net.state_dict().items()}
        forked, inline = nas.ForkExecutor(net), nas.ForkExecutor(net, parallel=False)
        assert forked.stages == 1 + sum(arch.syncs[:-1]) + (0 if not arch.syncs[-1] else 1)
        out = forked(x)
        assert torch.equal(out, inline(x)), "forked and sequential runs use the same kernels"
        with torch.no_grad():
            torch.testing.assert_close(out, net(x), rtol=1e-4, atol=1e-5)
        assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
        assert net.training is False and next(net.parameters()).requires_grad


def test_fork_executor_raises_on_bad_input_and_recovers():
    net = nas.ParallelNet(TINY, nas.Architecture.uniform(TINY, ("conv3x3", "conv5x5"), [True] * 3))
    forked = nas.ForkExecutor(net.eval())
    x = torch.zeros(1, 3, 32, 32)
    good = forked(x)
    for bad in (torch.zeros(1, 4, 32, 32), torch.zeros(3, 32, 32), torch.zeros(1, 3, 30, 30)):
        with pytest.raises(ValueError, match=r"expected images of shape \(N, 3, 32, 32\)"):
            forked(bad)
    assert torch.equal(forked(x), good)


def test_handoff_cost_is_a_paired_difference_with_an_interval():
    from course_lib.nas.forked import paired_difference

    rounds = {"a": [2.0, 2.1, 1.9, 2.0], "b": [1.0, 1.0, 1.0, 1.0]}
    diff = paired_difference(rounds, "a", "b")
    assert diff["median_ms"] == pytest.approx(1.0) and diff["low_ms"] <= 1.0 <= diff["high_ms"]
    cost = nas.handoff_cost(rounds=3, calls=20)
    assert cost["low_ms"] <= cost["median_ms"] <= cost["high_ms"]


def test_parallel_bound_counts_the_slower_path_and_the_serial_parts():
    space = nas.SearchSpace(widths=(8, 16, 32, 64))
    free = multicore.parallel_bound(space, multicore.balanced(space))
    synced = multicore.parallel_bound(space, multicore.balanced(space, syncs=True))
    unbalanced = multicore.parallel_bound(
        space, nas.Architecture.uniform(space, ("conv3x3", "conv5x5"))
    )
    assert 1.9 < free < 2.0  # the head runs on one core
    assert synced < free  # merges run on one core
    assert 1.0 < unbalanced < (9 + 25) / 25 + 1e-9  # waits for the 5x5 path


def test_multicore_cell_measures_every_way_with_intervals():
    (row,) = multicore.measure_network(
        TINY,
        nas.Architecture.uniform(TINY, ("conv3x3", "conv5x5"), [True, False, False]),
        (1,),
        2,
        twin=True,
    )
    assert set(row["latency_ms"]) == {
        "sequential",
        "path-parallel",
        "sessions, sequential",
        "sessions, parallel",
        "onnx, 1 thread",
        "onnx, P intra-op",
        "ORT_PARALLEL",
        "single path, onnx, 1 thread",
        "single path, onnx, P intra-op",
    }
    assert set(row["speedup"]) == set(multicore.SPEEDUPS)
    for ratio in row["speedup"].values():
        low, high = ratio["interval"]
        assert low <= ratio["median"] <= high
    assert (
        row["syncs"] == 1
        and row["macs"]
        == nas.architecture_cost(
            TINY, nas.Architecture.uniform(TINY, ("conv3x3", "conv5x5"), [True, False, False])
        ).mults
    )


# --- the second training ---------------------------------------------------------------


def test_search_and_derive_keeps_the_search_weights_and_the_warm_start_uses_them(
    tmp_path, monkeypatch
):
    config = nas.SearchConfig(
        weights=TrainConfig(epochs=1, lr=0.05, autocast=False, channels_last=False), beta=0.5
    )
    result = nas.search_and_derive(TINY, config, _Batches(), _Batches(seed=1), seed=3)
    torch.manual_seed(3)  # the same search by hand
    supernet = nas.SuperNet(TINY)
    nas.search(supernet, _Batches(), config, _Batches(seed=1), seed=3, progress=False)
    assert nas.derive(supernet) == result.arch
    expected = nas.extract_network(supernet, result.arch).state_dict()
    assert set(expected) == set(result.weights)
    assert all(torch.equal(expected[k], result.weights[k]) for k in expected)
    # cached: the same result, weights included, without searching again
    cache = tmp_path / "search.pt"
    first = nas.search_and_derive(TINY, config, _Batches(), _Batches(seed=1), seed=3, cache=cache)

    def no_search(*args, **kwargs):
        raise AssertionError("a cached search ran again")

    monkeypatch.setattr(sys.modules["course_lib.nas.derive"], "search", no_search)
    again = nas.search_and_derive(TINY, config, _Batches(), _Batches(seed=1), seed=3, cache=cache)
    assert again.arch == first.arch
    assert all(torch.equal(first.weights[k], again.weights[k]) for k in first.weights)

    # the second training starts from exactly these weights
    seen = {}

    def fake_fit(net, *args, **kwargs):
        seen.update({k: v.detach().clone() for k, v in net.state_dict().items()})
        return train.History(val_accuracy=[0.5], epoch_time_s=[0.0])

    monkeypatch.setattr(train, "fit", fake_fit)
    monkeypatch.setattr(train, "evaluate", lambda net, loader: (0.0, 0.5))
    monkeypatch.setattr(data, "make_loaders", lambda *a, **k: data.Loaders(*[_Batches()] * 3))
    epoch = TrainConfig(epochs=1, autocast=False, channels_last=False)
    nas.retrain(TINY, result.arch, None, DataSettings(), epoch, seed=0, start=result.weights)
    assert all(torch.equal(seen[k], result.weights[k]) for k in result.weights)
    nas.retrain(TINY, result.arch, None, DataSettings(), epoch, seed=0)  # from scratch
    assert not all(torch.equal(seen[k], result.weights[k]) for k in result.weights)


def test_single_path_twin_has_about_the_same_macs():
    space = nas.SearchSpace(widths=(8, 16, 32, 64))
    arch = nas.Architecture.uniform(space, ("conv3x3", "conv5x5"))
    twin_space, twin = nas.single_path_twin(space, arch)
    assert twin_space.paths == 1
    target = nas.architecture_cost(space, arch).mults
    assert abs(nas.architecture_cost(twin_space, twin).mults - target) < 0.05 * target


def test_cache_reuses_a_result_only_for_the_same_key(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"value": len(calls)}

    path = tmp_path / "result.json"
    assert nas.load_or_compute(path, {"a": (1, 2)}, compute) == {"value": 1}
    assert nas.load_or_compute(path, {"a": (1, 2)}, compute) == {
        "value": 1
    }  # tuple key == JSON list
    assert nas.load_or_compute(path, {"a": (1, 3)}, compute) == {"value": 2}
    assert nas.load_or_compute(None, {"a": (1, 3)}, compute) == {"value": 3}
    assert len(calls) == 3


# --- invalid configurations ----------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"paths": 0}, "paths must be >= 1"),
        ({"ops": ("conv3x3", "conv7x7")}, "unknown op 'conv7x7'"),
        ({"ops": ()}, "at least one"),
        ({"merge": "mean"}, "unknown merge"),
        ({"widths": (8, 0)}, "positive"),
        ({"widths": ()}, "non-empty"),
        ({"pool_after": (5,)}, "outside"),
    ],
)
def test_invalid_search_space_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        nas.SearchSpace(**kwargs)


def test_mismatched_architecture_raises():
    with pytest.raises(ValueError, match="3 levels"):
        nas.ParallelNet(TINY, nas.Architecture.of([["conv3x3", "conv3x3"]] * 4, [False] * 4))
    with pytest.raises(ValueError, match="1 ops for 2 paths"):
        nas.ParallelNet(TINY, nas.Architecture.of([["conv3x3"]] * 3, [False] * 3))
    with pytest.raises(ValueError, match="unknown op"):
        nas.ParallelNet(TINY, nas.Architecture.of([["conv3x3", "pool"]] * 3, [False] * 3))
    with pytest.raises(ValueError, match="not a candidate"):
        nas.fix_decisions(nas.SuperNet(TINY), nas.Architecture.uniform(TINY, ("sep3x3", "conv3x3")))


def test_mismatched_merge_inputs_raise():
    with pytest.raises(ValueError, match="expects 2 inputs"):
        nas.Merge("sum", 2, 4)([torch.zeros(1, 4, 2, 2)])
    with pytest.raises(ValueError, match="unknown merge"):
        nas.Merge("max", 2, 4)
    for kind in ("sum", "conv"):
        with pytest.raises(ValueError, match="mismatched widths"):
            nas.Merge(kind, 2, 4)([torch.zeros(1, 4, 2, 2), torch.zeros(1, 6, 2, 2)])


def test_invalid_search_config_raises():
    with pytest.raises(ValueError, match="unknown scheme"):
        nas.SearchConfig(scheme="bilevel")
    with pytest.raises(ValueError, match="alpha and beta"):
        nas.SearchConfig(beta=-1.0)


# --- the search loop (two steps on random tensors) ----------------------------------


class _Batches:
    def __init__(self, n: int = 2, batch: int = 8, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.batches = [
            (
                torch.randn(batch, 3, 32, 32, generator=g),
                torch.randint(0, 10, (batch,), generator=g),
            )
            for _ in range(n)
        ]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)

    def set_epoch(self, epoch: int) -> None:
        pass


@pytest.mark.parametrize("scheme", ["joint", "alternating"])
def test_search_updates_weights_and_decisions_with_their_own_rates(scheme):
    torch.manual_seed(0)
    supernet = nas.SuperNet(TINY)
    before = [p.detach().clone() for p in supernet.arch_parameters()]
    weights_before = supernet.head.classifier[-1].weight.detach().clone()
    config = nas.SearchConfig(
        weights=TrainConfig(epochs=1, lr=0.05, autocast=False, channels_last=False),
        arch_lr=0.5,
        beta=1.0,
        scheme=scheme,
    )
    history = nas.search(supernet, _Batches(), config, _Batches(seed=1), progress=False)
    assert len(history.loss) == 1 and len(history.op_probs) == 1
    assert not torch.equal(supernet.head.classifier[-1].weight, weights_before)
    assert not torch.equal(supernet.op_logits, before[0])
    assert not torch.equal(supernet.sync_logits, before[1])
    # with beta = 1 the cost term dominates: every block moves towards its cheaper op
    probs = torch.tensor(history.op_probs[-1])
    assert (probs[..., 0] > 0.5).all()


def test_alternating_search_needs_validation_data():
    config = nas.SearchConfig(scheme="alternating")
    with pytest.raises(ValueError, match="val_loader"):
        nas.search(nas.SuperNet(TINY), _Batches(), config, None, progress=False)


# --- what the chapter shows --------------------------------------------------------------


def _latency(ms: float) -> dict:
    return {"median_ms": ms, "low_ms": 0.9 * ms, "high_ms": 1.1 * ms}


def _assessment(accuracy: float, ms: float, retrain: str = "warm_start") -> dict:
    arch = nas.Architecture.uniform(nas.SearchSpace(), ("conv3x3", "conv5x5"))
    return {
        "retrain": retrain,
        "structure": arch.describe(),
        "architecture": arch.as_dict(),
        "accuracies": [accuracy],
        "accuracy_mean": accuracy,
        "accuracy_std": 0.0,
        "val_accuracy_mean": accuracy,
        "macs": 1000,
        "params": 10,
        "latency_ms": {
            k: _latency(ms * f) for k, f in (("onnx", 1), ("parallel", 0.6), ("sequential", 1))
        },
        "parallel_speedup": {"median": 1.6, "interval": [1.5, 1.7]},
        "train_time_s": 1.0,
    }


def _metrics() -> dict:
    """A small metrics dict in the layout ChapterRun writes (numbers made up)."""
    space = nas.SearchSpace()
    arch = nas.Architecture.uniform(space, ("conv3x3", "conv5x5"))
    search = {
        "seed": 0,
        "structure": arch.describe(),
        "architecture": arch.as_dict(),
        "op_probs": [[[0.6, 0.4]] * 2] * 4,
        "sync_probs": [[0.3, 0.7]] * 4,
        "decision_margin": 0.6,
        "op_probs_history": [[[[0.6, 0.4]] * 2] * 4],
        "sync_probs_history": [[[0.3, 0.7]] * 4],
    }
    sweep = [
        {
            "beta": beta,
            "structure": arch.describe(),
            "searches": [search, {**search, "seed": 1}],
            "agreement": {"same": True, "differing": 0, "decisions": 12},
            **_assessment(0.5 + beta / 10, 1 - beta / 10),
            "warm_start": [_assessment(0.5, 1.0)] * 2,
            "from_scratch": _assessment(0.4, 1.0, "from_scratch"),
        }
        for beta in (1.0, 0.1)
    ]
    row = {
        "widths": "paper",
        "channels": [8, 16, 32, 64],
        "batch": 1,
        "syncs": 0,
        "flop_bound": 1.4,
        "latency_ms": {k: _latency(0.2) for k in summary.COLUMNS},
        "speedup": {k: {"median": 1.2, "interval": [1.1, 1.3]} for k in multicore.SPEEDUPS},
    }
    table = [
        {**row, "network": name, "syncs": 4 * ("all" in name or name == "best searched")}
        for name in multicore.networks(arch, space)
    ]
    return {
        "profile": "quick",
        "protocol": {"retrain_epochs": 1, "seeds": [0]},
        "sync_configs": {
            name: _assessment(0.5, 0.1 + i / 10) for i, name in enumerate(("none", "all"))
        },
        "beta_sweep": sweep,
        "sync_cost": {
            "handoff_ms": _latency(0.01),
            "ops": ["conv3x3", "conv5x5"],
            "op_flops": nas.op_cost_table(space)[:, 0].tolist(),
            "flops_per_ms": 1e7,
            "sync_ms": [0.03] * 4,
            "sync_costs": [3e5] * 4,
            "merge_flops": nas.sync_cost_table(space).tolist(),
            "ops_normalizer": 1e7,
        },
        "latency_cost_sweep": [
            {**search, "beta": e["beta"], "same_as_flops_model": True} for e in sweep
        ],
        "best_network": {"beta": 0.1, "search_seed": 0, "epochs": 1, **_assessment(0.6, 1.0)},
        "best_test_accuracy": 0.6,
        "parallel_table": table,
        "parallel_speedup_b1_paper_widths": 1.2,
        "parallel_speedup_b1_paper_widths_interval": [1.1, 1.3],
    }


def test_summary_and_plots_draw_this_runs_metrics():
    m = summary.normalize(_metrics())
    assert m["legacy"] is False
    text = "\n".join(part.data for part in summary.report(m, 60.0))
    assert "quick-profile run" in text and "smoke test" in text
    assert "1.20x (1.10-1.30)" in text  # every speed-up with its interval
    assert "0.1 ms (0.09-0.11)" in text  # every latency with its interval
    assert "seeds derive the same network" in text
    assert len(plots.report(m)) == 4


def test_summary_reads_the_results_saved_before_intervals():
    record = results.load_results("nas")
    assert record is not None, "results/nas.json is committed"
    m = summary.normalize(record["metrics"])
    if m["legacy"]:  # replaced by a new full run: then it must read as the current layout
        text = "\n".join(part.data for part in summary.report(m, record["wall_time_s"]))
        assert "saved before latencies carried intervals" in text
        assert m["sync_configs"]["all"]["latency_ms"]["onnx"]["low_ms"] is None
    assert summary.report(m) and plots.report(m)
    plt.close("all")


def test_supernet_diagram_draws_every_block_and_sync_point():
    space = nas.SearchSpace(paths=3, widths=(4, 8))
    fig = plots.supernet_diagram(space)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert sum("mixed op" in t for t in texts) == space.paths * space.levels
    assert sum(t.startswith("sync ") for t in texts) == space.levels
    plt.close(fig)


def test_chapter_run_rejects_unknown_profiles_and_sections_out_of_order(cifar):
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        nas.ChapterRun("fast")
    run = nas.ChapterRun("quick", seed=0, progress=False)
    assert run.cache("x.json") is None, "a quick run keeps nothing"
    with pytest.raises(RuntimeError, match=r"run ChapterRun.beta_searches\(\) first"):
        run.beta_retraining()
    with pytest.raises(RuntimeError, match=r"best_network\(\) before multicore"):
        run.multicore()
    assert run.save() is None, "a quick run writes no results"


def test_full_profile_is_estimated_within_90_minutes():
    from course_lib.profiles import total_minutes

    full, quick = nas.nas_settings("full"), nas.nas_settings("quick")
    assert total_minutes(full.estimate_min) <= 90
    assert total_minutes(quick.estimate_min) < total_minutes(full.estimate_min) / 10
    assert full.search_seeds == (0, 1), "at least two search seeds per beta (stability)"
    assert set(full.multicore_widths) == {"paper", "course"} and full.multicore_batches == (1, 16)


# --- what counts as a difference (ties within uncertainty, undecided choices) ---------------


def _search(arch: nas.Architecture, op_p: float, sync_p: float, seed: int = 0) -> dict:
    """A search record whose every choice was won with ``op_p`` (ops) and ``sync_p`` (syncs)."""
    paths = len(arch.ops[0])
    return {
        "seed": seed,
        "structure": arch.describe(),
        "architecture": arch.as_dict(),
        "op_probs": [[[op_p, 1 - op_p]] * paths] * len(arch.ops),
        "sync_probs": [[sync_p, 1 - sync_p]] * len(arch.ops),
        "decision_margin": min(op_p, sync_p),
    }


def test_accuracy_and_latency_differences_need_to_exceed_their_uncertainty():
    # binomial: sqrt(0.75 * 0.25 / 10,000) = 0.43 points per accuracy
    assert summary.accuracy_se(0.75, 10_000) == pytest.approx(0.00433, abs=1e-5)
    assert summary.accuracy_se(0.75, 10_000, [0.74, 0.76]) == pytest.approx(0.01)  # seeds wider
    se = summary.accuracy_se(0.757, 10_000)
    assert summary.accuracy_sign((0.7574, se), (0.7559, se)) == 0  # 0.15 points: a tie
    assert summary.accuracy_sign((0.7574, se), (0.7317, se)) == 1
    assert summary.accuracy_sign((0.7317, se), (0.7574, se)) == -1
    slow, fast = _latency(1.0), _latency(0.8)  # intervals 0.9-1.1 and 0.72-0.88: apart
    assert summary.latency_sign(slow, fast) == 1 and summary.latency_sign(fast, slow) == -1
    assert summary.latency_sign(_latency(1.0), _latency(0.95)) == 0  # intervals overlap
    narrow = {"median_ms": 1.03, "low_ms": 1.029, "high_ms": 1.031}
    assert (
        summary.latency_sign(narrow, {**narrow, "median_ms": 1.0, "high_ms": 1.001}) == 0
    )  # < 5 %
    assert summary.latency_sign({"median_ms": 2.0, "low_ms": None}, _latency(1.0)) == 0


def test_fig7_reports_ties_within_noise_instead_of_a_point_ordering():
    m = summary.normalize(_metrics())
    m["protocol"]["test_images"] = 10_000
    m["sync_configs"] = {
        name: {**_assessment(acc, ms, "from_scratch"), "accuracies": [acc, acc]}
        for name, acc, ms in (
            ("none", 0.7317, 0.65),
            ("first two", 0.7559, 0.68),
            ("last two", 0.7463, 0.75),
            ("all", 0.7574, 0.79),
        )
    }
    table = summary.fig7_orderings(m).data
    accuracy = next(line for line in table.splitlines() if line.startswith("| accuracy"))
    assert "all ≈ first two" in accuracy and "all > none" in accuracy
    assert accuracy.endswith("| partly: 3 of 5 pairs |"), accuracy
    assert "| yes |" not in accuracy
    m["sync_configs"]["none"]["latency_ms"]["onnx"]["low_ms"] = None  # saved without intervals
    onnx = next(line for line in summary.fig7_orderings(m).data.splitlines() if "| ONNX" in line)
    assert onnx.endswith(f"| - | {summary.UNTESTED} |"), onnx


def test_fig8_counts_betas_that_derive_the_same_network_as_one_step():
    m = summary.normalize(_metrics())
    small = nas.Architecture.uniform(nas.SearchSpace(), ("conv3x3", "conv3x3"))
    big = nas.Architecture.uniform(nas.SearchSpace(), ("conv5x5", "conv5x5"))
    sweep = []
    for beta, arch, acc, ms, macs in (
        (0.01, big, 0.80, 2.0, 3000),
        (0.1, small, 0.70, 1.0, 1000),
        (1.0, small, 0.71, 1.0, 1000),
    ):
        e = {**_assessment(acc, ms), "beta": beta, "macs": macs}
        e["searches"] = [_search(arch, 0.9, 0.9)]
        e["warm_start"] = [{**e, "searches": None}]
        sweep.append(e)
    m["beta_sweep"] = sweep
    text = summary.fig8_orderings(m).data
    assert "one point (beta = 0.1 and 1): 1 step" in text
    assert "| accuracy | falls as beta grows | 0.01 > {0.1, 1} | yes |" in text
    m["beta_sweep"][0]["warm_start"][0]["accuracy_mean"] = 0.712  # within noise of 0.70-0.71
    assert "| 0 of 1 steps, 1 tie |" in summary.fig8_orderings(m).data


def test_deploy_choice_takes_the_cheapest_network_within_noise_and_budget():
    m = summary.normalize(_metrics())
    m["protocol"].update(val_images=5000, deploy_macs=2500)
    sweep = []
    for beta, val, macs in ((0.001, 0.806, 3300), (0.01, 0.798, 1900), (0.1, 0.774, 1700)):
        w = {**_assessment(val, 1.0), "val_accuracy_mean": val, "macs": macs}
        sweep.append({**w, "beta": beta, "searches": [{"seed": 0}], "warm_start": [w]})
    m["beta_sweep"] = sweep
    choice = summary.deploy_choice(m)
    assert (choice["beta"], choice["fits"], choice["within_noise"]) == (0.01, 2, 1)
    # without a binding budget, 0.001 leads 0.01 by 0.8 points, within two standard errors
    # (1.6 points on 5,000 images): the cheaper 0.01 is still the one to deploy
    assert summary.deploy_choice(m, budget_macs=10_000)["beta"] == 0.01
    assert summary.deploy_choice(m, budget_macs=100)["over_budget"]
    m["best_network"] = {**m["best_network"], "beta": 0.001, "search_seed": 0}
    text = summary.best_text(m).data
    assert "Network to deploy" in text and "beta = 0.01" in text and "2,500 MACs" in text
    assert "the cheapest of them is deployed" in text and "saved before this rule" in text


def test_undecided_choices_are_marked_and_not_counted_as_changes():
    space = nas.SearchSpace()
    arch = nas.Architecture.uniform(space, ("conv3x3", "conv5x5"))
    flipped = nas.Architecture(arch.ops, (True,) + arch.syncs[1:])
    decided, coin = _search(arch, 0.9, 0.9), _search(flipped, 0.9, 0.52, seed=1)
    assert summary.differences(decided, coin) == (0, 1)
    assert summary.differences(decided, _search(flipped, 0.9, 0.9)) == (1, 1)
    assert summary.marked_structure(coin)[0] == f"3x3 - 5x5, sync{summary.UNDECIDED}"
    m = summary.normalize(_metrics())
    for e in m["beta_sweep"]:
        e["searches"] = [decided, coin]
    m["latency_cost_sweep"] = [
        {**coin, "beta": 1.0, "same_as_flops_model": False},
        {**_search(flipped, 0.9, 0.9), "beta": 0.1, "same_as_flops_model": False},
    ]
    table = summary.structures_table(m).data
    assert f"all undecided {summary.UNDECIDED}" in table and "Undecided:" in table
    sweep = summary.latency_sweep_table(m).data
    assert "1 of 2 derived structures change by a decided choice; 1 more" in sweep


def test_sync_points_without_a_measurable_cost_say_so():
    free = {"syncs": 0, "latency_ms": {"path-parallel": _latency(1.0), "sequential": _latency(1.0)}}
    synced = {
        "syncs": 4,
        "latency_ms": {"path-parallel": _latency(1.5), "sequential": _latency(0.999)},
    }
    text = summary._per_sync_text(free, synced)
    assert "adds 125 µs to the forked run" in text
    assert "no measurable cost in the sequential one" in text and "-" not in text.split("(")[0]
    synced["latency_ms"]["path-parallel"] = _latency(1.01)  # positive, inside the intervals
    assert summary._per_sync_text(free, synced).startswith(
        "each sync point has no measurable cost in either run"
    )

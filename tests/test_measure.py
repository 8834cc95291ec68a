import torch
import torch_pruning as tp
from torch import nn
from torch.nn.utils import prune

from course_lib import measure, models


def test_conv_macs_match_hand_computed_values():
    # out 8x32x32, each output sums 3 * 3 * 3 products
    assert measure.count_macs(nn.Conv2d(3, 8, 3, padding=1)) == 32 * 32 * 8 * 3 * 3 * 3
    # stride 2, no padding: out 16 x 15 x 15
    assert measure.count_macs(nn.Conv2d(3, 16, 3, stride=2)) == 15 * 15 * 16 * 3 * 9
    # depthwise: each output element sums k*k products only
    depthwise = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 5, padding=2, groups=8))
    assert measure.count_macs(depthwise) == 32 * 32 * 8 * 3 + 32 * 32 * 8 * 25


def test_linear_macs_match_hand_computed_values():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 100), nn.Linear(100, 10))
    assert measure.count_macs(mlp) == 3072 * 100 + 100 * 10
    assert measure.count_macs(mlp, (4, 3, 32, 32)) == 4 * (3072 * 100 + 100 * 10)


def test_macs_agree_with_torch_pruning_counter_on_conv_and_linear_nets():
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False),
        nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False),
        nn.Flatten(),
        nn.Linear(32 * 16 * 16, 10, bias=False),
    )  # torch-pruning also counts one op per bias add; the course counts MACs only
    independent, params = tp.utils.count_ops_and_params(net, torch.zeros(1, 3, 32, 32))
    assert measure.count_macs(net) == independent
    assert measure.count_params(net) == params


def test_depthwise_and_grouped_conv_macs_agree_with_torch_pruning_counter():
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False),
        nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False),  # depthwise
        nn.Conv2d(16, 32, 3, stride=2, padding=1, groups=4, bias=False),  # 4 blocks of 4 -> 8
        nn.Flatten(),
        nn.Linear(32 * 16 * 16, 10, bias=False),
    )
    costs = measure.layer_costs(net)
    assert costs[1].macs == 16 * 3 * 3 * 32 * 32  # C k^2 H W, not C^2 k^2 H W
    assert costs[2].macs == 32 * (16 // 4) * 3 * 3 * 16 * 16
    independent, params = tp.utils.count_ops_and_params(net, torch.zeros(1, 3, 32, 32))
    assert measure.count_macs(net) == independent
    assert measure.count_params(net) == params


def test_baseline_layer_table_adds_up():
    model = models.BaselineCNN()
    costs = measure.layer_costs(model)
    assert [c.kind for c in costs].count("Conv2d") == 6 and costs[-1].output_shape == (1, 10)
    assert sum(c.macs for c in costs) == measure.count_macs(model) == 39_160_320
    assert measure.count_params(models.resnet20()) == 272_474


def test_nonzero_params_see_pruning_masks():
    model = nn.Sequential(nn.Linear(10, 10, bias=False))
    prune.l1_unstructured(model[0], "weight", amount=30)
    assert measure.count_params(model) == 100
    assert measure.count_nonzero_params(model) == 70


def test_size_on_disk_is_about_four_bytes_per_parameter():
    model = models.BaselineCNN()
    size = measure.size_on_disk(model)
    assert 4 * measure.count_params(model) < size < 4 * measure.count_params(model) * 1.05


def test_latency_records_its_protocol():
    model = models.BaselineCNN()
    for runtime in measure.RUNTIMES:
        runner = measure.model_runner(model, runtime, batch_size=2)
        latency = measure.latency(runner, rounds=5, calls=2, warmup=1)
        assert latency.rounds == 5 and latency.threads == 1 and latency.batch_size == 2
        assert latency.runtime.startswith("torch" if runtime == "torch" else "onnxruntime")
        assert 0 < latency.low_ms <= latency.median_ms <= latency.high_ms
        assert latency.p10_ms <= latency.median_ms <= latency.p90_ms


def test_compare_orders_two_models_of_known_different_cost():
    small = models.BaselineCNN(widths=(8, 16, 32), hidden=32)  # ~1/16 of the MACs
    large = models.BaselineCNN(widths=(64, 128, 256), hidden=256)
    comparison = measure.compare_models({"small": small, "large": large}, "onnx", rounds=8)
    ratio = comparison.speedup("small", "large")
    assert comparison["small"].median_ms < comparison["large"].median_ms
    assert ratio.low > 1.5, ratio  # 16x fewer MACs: clearly faster, whatever the noise


def test_a_model_compared_with_itself_gives_an_interval_around_one():
    model = models.BaselineCNN()
    comparison = measure.compare_models({"a": model, "b": model}, "torch", rounds=20, calls=3)
    ratio = comparison.speedup("a", "b")
    # not a timing assertion: on shared cores the interval can miss 1.0 by a few percent
    assert ratio.low <= ratio.median <= ratio.high, ratio
    assert 0.5 < ratio.median < 2.0, ratio
    record = comparison.as_dict(baseline="b")
    assert record["speedup"]["a"]["interval"] == [ratio.low, ratio.high]
    assert str(ratio).endswith(f"({ratio.low:.2f}-{ratio.high:.2f})")


def test_measuring_never_changes_the_callers_model(tmp_path):
    model = models.BaselineCNN().train().to(memory_format=torch.channels_last)
    measure.latency(measure.torch_runner(model), rounds=2, calls=1, warmup=0)
    measure.latency(measure.onnx_runner(model), rounds=2, calls=1, warmup=0)
    measure.export_onnx(model, tmp_path / "m.onnx")
    assert model.training
    assert model.features[0][0].weight.is_contiguous(memory_format=torch.channels_last)


def test_compare_rejects_a_protocol_without_rounds():
    import pytest

    with pytest.raises(ValueError, match="rounds >= 2"):
        measure.compare({"x": measure.Runner(lambda: None, "none", 1)}, rounds=1)


def test_onnx_export_matches_pytorch(tmp_path):
    model = models.BaselineCNN().eval()
    path = measure.export_onnx(model, tmp_path / "m.onnx")
    session = measure.onnx_session(path)
    x = torch.randn(3, 3, 32, 32)
    (logits,) = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(logits), model(x), atol=1e-4)

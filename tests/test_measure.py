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


def test_latency_harness_records_its_protocol():
    model = models.BaselineCNN()
    for timer in (measure.torch_latency, measure.onnx_latency):
        latency = timer(model, batch_size=2, warmup=2, repeats=5, threads=1)
        assert latency.repeats == 5 and latency.threads == 1 and latency.batch_size == 2
        assert 0 < latency.p10_ms <= latency.median_ms <= latency.p90_ms


def test_onnx_export_matches_pytorch(tmp_path):
    model = models.BaselineCNN().eval()
    path = measure.export_onnx(model, tmp_path / "m.onnx")
    session = measure.onnx_session(path)
    x = torch.randn(3, 3, 32, 32)
    (logits,) = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(logits), model(x), atol=1e-4)

"""Binary conv (bit-packed, XNOR + popcount) vs the float32 conv (PyTorch and ONNX Runtime),
and the packed binary ResNet-20 vs its float32 twin (PyTorch, ONNX Runtime) and the twin
quantized to int8 with ONNX Runtime's own tools: batch 1, the course's interleaved protocol.

    python benchmarks/bench_bnn_kernel.py                 # 64, 256, 512 channels, 3x3, 8x8
    python benchmarks/bench_bnn_kernel.py --rounds 60     # more rounds: tighter intervals
    python benchmarks/bench_bnn_kernel.py --json results/bench/bnn_kernel.json
                                                          # also write every number, with provenance

Latency does not depend on the weights' values, so both networks are untrained unless the
chapter's full run left ``checkpoints/bnn_resnet20_latent.pt`` and ``resnet20_fp.pt``. The
int8 twin is calibrated on 500 training images (``COURSE_DATA_DIR``, see the README); its
accuracy is measured on the 10,000 test images. Larq Compute Engine, the peer binary engine,
is reported on (see ``peer_engine``) but not timed: its x86 kernels are reference code and
its models come from TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import torch

from course_lib import bnn, quantize, results
from course_lib.bnn.experiment import BINARY_FILE, TWIN_FILE
from course_lib.bnn.settings import NET
from course_lib.data import load_cifar10, normalize, stratified_subset
from course_lib.models import resnet20
from course_lib.paths import CHECKPOINT_DIR


def networks() -> tuple[torch.nn.Module, torch.nn.Module, str]:
    binary, twin = bnn.binary_resnet20(NET), resnet20()
    if (CHECKPOINT_DIR / BINARY_FILE).exists() and (CHECKPOINT_DIR / TWIN_FILE).exists():
        binary.load_state_dict(torch.load(CHECKPOINT_DIR / BINARY_FILE, weights_only=True))
        twin.load_state_dict(torch.load(CHECKPOINT_DIR / TWIN_FILE, weights_only=True))
        return binary, twin, "trained (checkpoints/)"
    bnn.set_tau(binary, 0.99)
    return binary, twin, "untrained (no checkpoints yet)"


def peer_engine() -> str:
    """Why Larq Compute Engine is not timed beside the course's kernel."""
    installed = importlib.util.find_spec("larq_compute_engine") is not None
    return (
        f"larq-compute-engine {'is' if installed else 'is not'} installed here. Its PyPI wheel "
        "(0.16.0, CPython 3.11, x86-64) does install, but its own documentation says that on x86 "
        "its interpreter runs reference kernels (the optimized ones are for 64-bit ARM), and "
        "importing the package requires TensorFlow, which also converts models to its format. "
        "A side-by-side on this CPU would time LCE's reference code, so it is not run."
    )


def int8_twin(twin: torch.nn.Module, folder: Path) -> tuple[Path, float | None]:
    """The twin quantized to int8 (calibrated on 500 training images) and its test accuracy
    (``None`` with an untrained twin, whose accuracy means nothing)."""
    data = load_cifar10()
    calibration = normalize(data.x_train[stratified_subset(data.y_train, 50, seed=0)])
    path = quantize.quantize_int8(twin, calibration, folder / "twin_int8.onnx")
    predictions = quantize.onnx_predictions(path, normalize(data.x_test))
    return path, (predictions == data.y_test).float().mean().item()


def print_network(net: dict, label: str) -> None:
    print(f"\nResNet-20, {label}:")
    for name, lat in net["latency_ms"].items():
        print(f"  {name:28s} {lat['median_ms']:.3f} ms ({lat['low_ms']:.3f}-{lat['high_ms']:.3f})")
    rows = [("float32 twin in PyTorch", net["speedup"]["binary, packed"])]
    rows.append(("float32 twin in ONNX Runtime", net["speedup_vs_onnxruntime"]))
    if "speedup_vs_int8" in net:
        rows.append(("int8 twin in ONNX Runtime", net["speedup_vs_int8"]))
    for name, r in rows:
        low, high = r["interval"]
        print(f"  packed binary vs {name}: {r['median']:.2f}x ({low:.2f}-{high:.2f})")
    if "int8_vs_float32_onnxruntime" in net:
        r = net["int8_vs_float32_onnxruntime"]
        print(
            f"  int8 vs float32, both ONNX Runtime: {r['median']:.2f}x "
            f"({r['interval'][0]:.2f}-{r['interval'][1]:.2f})"
        )
    share = 100 * net["full_precision_share"]
    print(f"  full-precision stem + head: {share:.0f} % of the packed time")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, nargs="+", default=[64, 256, 512])
    parser.add_argument("--size", type=int, default=8, help="feature map height and width")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--json", type=Path, help="write every measured number here")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, popcount kernel: {bnn.kernel_path()}, batch 1")
    kernel = bnn.kernel_benchmark(tuple(args.channels), args.size, args.rounds, args.calls)
    rate = kernel[str(args.channels[0])]["popcount_rate"]
    print(f"inner loop alone (popcount GEMM, words in cache): {rate / 1e9:.2f} G word ops/s")
    for c in map(str, args.channels):
        entry = kernel[c]
        lat, s, o = entry["latency_ms"], entry["speedup"], entry["speedup_vs_onnxruntime"]
        print(
            f"{c:>4} channels: float32 {lat['float32 conv']['median_ms']:.4f} ms (ONNX Runtime "
            f"{lat['float32 conv, ONNX Runtime']['median_ms']:.4f}), binary "
            f"{lat['binary conv']['median_ms']:.4f} ms -> {s['median']:.1f}x "
            f"({s['interval'][0]:.1f}-{s['interval'][1]:.1f}) over PyTorch, {o['median']:.1f}x "
            f"({o['interval'][0]:.1f}-{o['interval'][1]:.1f}) over ONNX Runtime; "
            f"{entry['word_ops']:,} word ops, {100 * entry['peak_fraction']:.0f} % of the "
            "inner loop's rate"
        )
    binary, twin, which = networks()
    out = {"kernel": kernel, "kernel_path": bnn.kernel_path(), "networks": which}
    with tempfile.TemporaryDirectory() as folder:
        int8, int8_accuracy = int8_twin(twin, Path(folder))
        if which.startswith("untrained"):
            int8_accuracy = None
        for threads in (1, 2):
            net = bnn.network_benchmark(binary, twin, args.rounds, threads=threads, int8=int8)
            print_network(net, f"{which}, {threads} thread{'s' if threads > 1 else ''}")
            out[f"network_{threads}_threads"] = net
    if int8_accuracy is not None:
        print(f"  int8 twin test accuracy: {100 * int8_accuracy:.2f} % (10,000 images)")
    out["int8_test_accuracy"] = int8_accuracy
    plain = bnn.binary_resnet20(NET).eval()
    adaptive = bnn.binary_resnet20(replace(NET, amplitude=True)).eval()
    amp = bnn.benchmark.amplitude_benchmark(plain, adaptive, rounds=args.rounds)
    r = amp["speedup"]["DA-BNN, packed"]
    print(
        f"\nDA-BNN amplitudes: the packed DA-BNN network takes {1 / r['median']:.2f}x the time "
        f"of the plain packed network ({1 / r['interval'][1]:.2f}-{1 / r['interval'][0]:.2f})"
    )
    out["amplitude"] = amp
    print("\n" + peer_engine())
    if args.json:
        out["provenance"] = {
            "command": "python benchmarks/bench_bnn_kernel.py " + " ".join(argv or sys.argv[1:]),
            "commit": results.git_commit(),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": results.machine_info(),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

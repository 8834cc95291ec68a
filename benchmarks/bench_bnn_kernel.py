"""Binary conv (bit-packed, XNOR + popcount) vs PyTorch's float32 conv, and the packed binary
ResNet-20 vs its float32 twin: one thread, batch 1, the course's interleaved protocol.

    python benchmarks/bench_bnn_kernel.py                 # 64, 256, 512 channels, 3x3, 8x8
    python benchmarks/bench_bnn_kernel.py --rounds 60     # more rounds: tighter intervals

Latency does not depend on the weights' values, so both networks are untrained unless the
chapter's full run left ``checkpoints/bnn_resnet20_latent.pt`` and ``resnet20_fp.pt``.
Larq Compute Engine, the peer binary engine, is reported on (see ``peer_engine``) but not
timed: its x86 kernels are reference code and its models come from TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib.util

import torch

from course_lib import bnn
from course_lib.bnn.experiment import BINARY_FILE, TWIN_FILE
from course_lib.bnn.settings import NET
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, nargs="+", default=[64, 256, 512])
    parser.add_argument("--size", type=int, default=8, help="feature map height and width")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, popcount kernel: {bnn.kernel_path()}, 1 thread, batch 1")
    kernel = bnn.kernel_benchmark(tuple(args.channels), args.size, args.rounds, args.calls)
    for c, entry in kernel.items():
        lat, s = entry["latency_ms"], entry["speedup"]
        print(
            f"{c:>4} channels: float32 {lat['float32 conv']['median_ms']:.4f} ms, binary "
            f"{lat['binary conv']['median_ms']:.4f} ms -> {s['median']:.1f}x "
            f"({s['interval'][0]:.1f}-{s['interval'][1]:.1f})"
        )
    binary, twin, which = networks()
    net = bnn.network_benchmark(binary, twin, rounds=args.rounds)
    print(f"\nResNet-20, {which}:")
    for name, lat in net["latency_ms"].items():
        print(f"  {name:28s} {lat['median_ms']:.3f} ms ({lat['low_ms']:.3f}-{lat['high_ms']:.3f})")
    for name, ratio in net["speedup"].items():
        if name == "binary, packed":
            print(
                f"  packed binary vs float32 twin in PyTorch: {ratio['median']:.2f}x "
                f"({ratio['interval'][0]:.2f}-{ratio['interval'][1]:.2f})"
            )
    r = net["speedup_vs_onnxruntime"]
    print(
        f"  packed binary vs float32 twin in ONNX Runtime: {r['median']:.2f}x "
        f"({r['interval'][0]:.2f}-{r['interval'][1]:.2f})"
    )
    print(
        f"  full-precision stem + head: {100 * net['full_precision_share']:.0f} % of the packed time"
    )
    print("\n" + peer_engine())


if __name__ == "__main__":
    main()

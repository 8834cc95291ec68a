"""From a trained supernet to a deployable network: argmax op per block, and a sync point
wherever ``P_sync > P_direct``. :func:`extract_network` copies the supernet's weights of the chosen
ops, kept merges and head into the derived network: the paper's second training starts
from there (seed 001, introduction), and the tests use it to prove that the derived network
is exactly the supernet with one-hot decisions.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..paths import atomic_path
from ..train import default_device, seed_everything
from .network import ParallelNet
from .search import SearchConfig, SearchHistory, search
from .space import Architecture, SearchSpace
from .supernet import DIRECT, SYNC, SuperNet


def decide(
    op_logits: torch.Tensor, sync_logits: torch.Tensor, ops: tuple[str, ...]
) -> Architecture:
    """The architecture that decision variables point at: per block the op of largest
    probability (``op_logits`` is (levels, paths, len(ops))), per level a sync point where
    ``P_sync > P_direct`` (``sync_logits`` is (levels, 2), sync first). The softmax is
    monotonic, so comparing logits is comparing probabilities."""
    choice = op_logits.detach().argmax(dim=-1).tolist()
    syncs = sync_logits.detach()
    return Architecture.of(
        [[ops[n] for n in level] for level in choice], (syncs[:, SYNC] > syncs[:, DIRECT]).tolist()
    )


def derive(supernet: SuperNet) -> Architecture:
    """The architecture a supernet's decision variables point at."""
    space = supernet.space
    return decide(supernet.op_logits, supernet.sync_logits, space.ops).check(space)


@torch.no_grad()
def fix_decisions(supernet: SuperNet, arch: Architecture) -> SuperNet:
    """Set the decision variables so that the softmax is exactly one-hot on ``arch``
    (chosen logits 0, the others ``-inf``). Returns ``supernet``, modified in place."""
    space = supernet.space
    arch.check(space)
    supernet.op_logits.fill_(float("-inf"))
    supernet.sync_logits.fill_(float("-inf"))
    for level in range(space.levels):
        for path, op in enumerate(arch.ops[level]):
            if op not in space.ops:
                raise ValueError(f"{op!r} is not a candidate of this supernet ({space.ops})")
            supernet.op_logits[level, path, space.ops.index(op)] = 0.0
        supernet.sync_logits[level, SYNC if arch.syncs[level] else DIRECT] = 0.0
    return supernet


def extract_network(supernet: SuperNet, arch: Architecture | None = None) -> ParallelNet:
    """A :class:`ParallelNet` of ``arch`` (default: :func:`derive`) holding copies of the
    supernet's weights for the chosen ops, kept merges and head."""
    space = supernet.space
    arch = derive(supernet) if arch is None else arch.check(space)
    net = ParallelNet(space, arch).to(next(supernet.parameters()).device)
    for level in range(space.levels):
        for path, op in enumerate(arch.ops[level]):
            if op not in space.ops:
                raise ValueError(f"{op!r} is not a candidate of this supernet ({space.ops})")
            chosen = supernet.blocks[level][path].candidates[space.ops.index(op)]
            net.blocks[level][path][0].load_state_dict(chosen.state_dict())
        if arch.syncs[level]:
            net.merges[str(level)].load_state_dict(supernet.sync_points[level].merge.state_dict())
    net.head.load_state_dict(supernet.head.state_dict())
    return net


@dataclass
class SearchResult:
    """One search: the derived architecture, the search's history, its ``seed`` and
    ``weights``, the state dict of :func:`extract_network` (CPU tensors): the warm start of the
    second training."""

    arch: Architecture
    history: SearchHistory
    seed: int
    weights: dict[str, torch.Tensor]


def search_and_derive(
    space: SearchSpace,
    config: SearchConfig,
    train_loader,
    val_loader=None,
    seed: int = 0,
    cache: str | Path | None = None,
) -> SearchResult:
    """Build a seeded supernet of ``space``, :func:`~course_lib.nas.search.search` it,
    :func:`derive` the architecture and :func:`extract_network` its weights. With ``cache`` (a
    ``.pt`` file), a finished search with the same inputs is reused."""
    key = {
        "space": asdict(space),
        "config": asdict(config),
        "seed": seed,
        "train_images": len(getattr(train_loader, "labels", ())),
    }
    key = json.loads(json.dumps(key))  # tuples -> lists, as they come back from a file
    if cache is not None and Path(cache).exists():
        saved = torch.load(cache, weights_only=True)
        if saved["key"] == key:
            return _result(saved["value"], seed)
    seed_everything(seed)
    supernet = SuperNet(space).to(default_device())
    history = search(supernet, train_loader, config, val_loader, seed=seed, progress=False)
    arch = derive(supernet)
    weights = {k: v.detach().cpu() for k, v in extract_network(supernet, arch).state_dict().items()}
    value = {"arch": arch.as_dict(), "history": asdict(history), "weights": weights}
    if cache is not None:
        with atomic_path(cache) as tmp:
            torch.save({"key": key, "value": value}, tmp)
    return _result(value, seed)


def _result(value: dict, seed: int) -> SearchResult:
    arch = Architecture.of(value["arch"]["ops"], value["arch"]["syncs"])
    return SearchResult(arch, SearchHistory(**value["history"]), seed, value["weights"])

"""What unstructured sparsity saves on disk: dense vs sparse encodings, in bytes.

A pruned model saved with ``torch.save`` is exactly as large as the dense one: the zeros
are stored like any other float32. To turn sparsity into bytes the zeros must not be
stored. Two classic encodings, each compressed afterwards (``zlib`` level 6 by default,
or ``lzma`` preset 6):

- ``bitmask``: one bit per weight saying "non-zero?", then the non-zero values in order.
  Costs ``n / 8 + 4 * nnz`` bytes before compression.
- ``csr`` (compressed sparse rows, the tensor viewed as ``(shape[0], -1)``): row pointers
  (int32), the column index of every non-zero (uint16 when it fits, else int32) and the
  values. Costs ``4 * (rows + 1) + (2 or 4) * nnz + 4 * nnz`` bytes before compression.
- ``dense``: the raw bytes, the reference (compression alone already shrinks long runs of
  zeros a little).

Every blob starts with a small header (format, dtype, shape), so :func:`decode` needs
nothing else; decoding returns exactly the values encoded (a ``-0.0`` comes back as ``0.0``).
"""

from __future__ import annotations

import lzma
import struct
import zlib

import numpy as np
import torch
from torch import nn

FORMATS = ("dense", "bitmask", "csr")
CODECS = ("none", "zlib", "lzma")
_FORMAT_ID = {name: i for i, name in enumerate(FORMATS)}
_CODEC_ID = {name: i for i, name in enumerate(CODECS)}


def _compress(payload: bytes, codec: str) -> bytes:
    if codec == "zlib":
        return zlib.compress(payload, 6)
    if codec == "lzma":
        return lzma.compress(payload, preset=6)
    return payload


def _decompress(payload: bytes, codec: str) -> bytes:
    if codec == "zlib":
        return zlib.decompress(payload)
    if codec == "lzma":
        return lzma.decompress(payload)
    return payload


def _header(fmt: str, codec: str, array: np.ndarray) -> bytes:
    dtype = array.dtype.str.encode()
    return struct.pack(
        f"<BBB{len(dtype)}sB{array.ndim}q",
        _FORMAT_ID[fmt],
        _CODEC_ID[codec],
        len(dtype),
        dtype,
        array.ndim,
        *array.shape,
    )


def encode(tensor: torch.Tensor, fmt: str = "bitmask", codec: str = "zlib") -> bytes:
    """``tensor`` as a self-describing blob in format ``fmt``, compressed with ``codec``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}: use one of {', '.join(CODECS)}")
    array = tensor.detach().cpu().contiguous().numpy()
    flat = array.reshape(-1)
    if fmt == "dense":
        body = flat.tobytes()
    elif fmt == "bitmask":
        nonzero = flat != 0
        body = np.packbits(nonzero).tobytes() + flat[nonzero].tobytes()
    else:
        rows = array.reshape(array.shape[0] if array.ndim > 1 else 1, -1)
        row_index, col_index = np.nonzero(rows)
        pointers = np.zeros(rows.shape[0] + 1, dtype=np.int32)
        np.cumsum(np.bincount(row_index, minlength=rows.shape[0]), out=pointers[1:])
        index_dtype = np.uint16 if rows.shape[1] <= 65536 else np.int32
        body = (
            pointers.tobytes()
            + col_index.astype(index_dtype).tobytes()
            + rows[row_index, col_index].tobytes()
        )
    return _header(fmt, codec, array) + _compress(body, codec)


def decode(blob: bytes) -> torch.Tensor:
    """The tensor an :func:`encode` blob holds (on the CPU)."""
    fmt_id, codec_id, dtype_len = struct.unpack_from("<BBB", blob)
    offset = 3
    (dtype,) = struct.unpack_from(f"<{dtype_len}s", blob, offset)
    offset += dtype_len
    (ndim,) = struct.unpack_from("<B", blob, offset)
    offset += 1
    shape = struct.unpack_from(f"<{ndim}q", blob, offset)
    offset += 8 * ndim
    fmt, dtype = FORMATS[fmt_id], np.dtype(dtype.decode())
    body = _decompress(blob[offset:], CODECS[codec_id])
    numel = int(np.prod(shape, dtype=np.int64))
    if fmt == "dense":
        flat = np.frombuffer(body, dtype=dtype, count=numel).copy()
    elif fmt == "bitmask":
        mask_bytes = (numel + 7) // 8
        nonzero = np.unpackbits(np.frombuffer(body[:mask_bytes], np.uint8), count=numel)
        flat = np.zeros(numel, dtype=dtype)
        flat[nonzero.astype(bool)] = np.frombuffer(body[mask_bytes:], dtype=dtype)
    else:
        n_rows = shape[0] if ndim > 1 else 1
        n_cols = numel // n_rows if n_rows else 0
        pointers = np.frombuffer(body, np.int32, count=n_rows + 1)
        nnz = int(pointers[-1])
        index_dtype = np.uint16 if n_cols <= 65536 else np.int32
        start = 4 * (n_rows + 1)
        cols = np.frombuffer(body, index_dtype, count=nnz, offset=start)
        values = np.frombuffer(body, dtype, count=nnz, offset=start + nnz * cols.itemsize)
        dense = np.zeros((n_rows, n_cols), dtype=dtype)
        dense[np.repeat(np.arange(n_rows), np.diff(pointers)), cols] = values
        flat = dense.reshape(-1)
    return torch.from_numpy(flat.reshape(shape))


def effective_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict a deployed model needs: pruning masks applied (``weight_orig`` and
    ``weight_mask`` become one ``weight``), buffers such as BatchNorm statistics included."""
    full, state = model.state_dict(), {}
    for name, tensor in full.items():
        if name.endswith("_mask"):
            continue
        if name.endswith("_orig"):
            base = name[: -len("_orig")]
            state[base] = tensor * full[base + "_mask"]
        else:
            state[name] = tensor
    return state


def state_dict_bytes(model: nn.Module, fmt: str = "bitmask", codec: str = "zlib") -> int:
    """Bytes of every tensor of :func:`effective_state_dict` encoded with ``fmt`` and
    ``codec`` (floating-point tensors only; integer buffers are stored dense)."""
    total = 0
    for tensor in effective_state_dict(model).values():
        tensor_fmt = fmt if tensor.is_floating_point() and tensor.ndim > 0 else "dense"
        total += len(encode(tensor, tensor_fmt, codec))
    return total


def storage_report(model: nn.Module, codec: str = "zlib") -> dict[str, int]:
    """Bytes of the model stored dense (raw float32, then compressed) and sparse
    (``bitmask`` and ``csr``, compressed with ``codec``)."""
    return {
        "dense_raw": state_dict_bytes(model, "dense", "none"),
        f"dense_{codec}": state_dict_bytes(model, "dense", codec),
        f"bitmask_{codec}": state_dict_bytes(model, "bitmask", codec),
        f"csr_{codec}": state_dict_bytes(model, "csr", codec),
    }

"""Weights as bytes: a deterministic safetensors writer and the canonical weights digest.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON header
(`{name: {"dtype", "shape", "data_offsets"}, "__metadata__": {str: str}}`), then the raw
little-endian tensor bytes. The `safetensors` package reads such files without running
anything from them, but its writer emits the metadata in hash order, so two saves of the same
model differ byte for byte. We write the container here instead: sorted header keys, tensors
in name order, the header padded with spaces to a multiple of 8 bytes (as the format allows).

This module needs numpy only, so a checker outside npi-verify can recompute the digest.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

WEIGHTS_DIGEST = "npi-verify-weights/1"
DTYPE_NAMES = {
    "float64": "F64", "float32": "F32", "float16": "F16",
    "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL",
}  # fmt: skip
SAFETENSORS_HEAD = 9  # bytes that tell a safetensors file apart: length, then "{"
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's container (the legacy checkpoint format)


def canonical_json(data: Any) -> str:
    """Sorted keys, no spaces: one text per value, whatever the dict order."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)


def dtype_name(array: np.ndarray) -> str:
    """The safetensors name of an array's dtype ("F32", ...)."""
    name = array.dtype.name
    if name not in DTYPE_NAMES:
        raise ValueError(f"dtype {name} has no safetensors name here")
    return DTYPE_NAMES[name]


def little_endian_bytes(array: np.ndarray) -> bytes:
    """The array's values in C order as little-endian bytes, whatever the host's byte order."""
    array = np.ascontiguousarray(array)
    return array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


def encode_safetensors(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> bytes:
    """A safetensors file holding `tensors` and the string `metadata`; same input, same bytes."""
    header: dict[str, Any] = {"__metadata__": dict(metadata)}
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        raw = little_endian_bytes(tensors[name])
        header[name] = {
            "dtype": dtype_name(tensors[name]),
            "shape": list(tensors[name].shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    text = canonical_json(header).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def looks_like_safetensors(head: bytes) -> bool:
    """The first bytes of a file could start a safetensors file (a length, then a JSON object)."""
    return len(head) >= SAFETENSORS_HEAD and head[8:9] == b"{"


def header_length(head: bytes) -> int:
    return int(struct.unpack("<Q", head[:8])[0])


def weights_digest(config: Mapping[str, Any], tensors: Mapping[str, np.ndarray]) -> str:
    """sha256 naming the network a checkpoint computes, whatever file format holds it.

    It hashes the line `npi-verify-weights/1`, the config as canonical JSON (sorted keys, no
    spaces) and a newline, then for each tensor in name order the canonical JSON
    `[name, dtype, shape]` (dtype as safetensors names it, e.g. "F32"), a newline and the
    tensor's raw little-endian bytes in C order."""
    digest = hashlib.sha256(f"{WEIGHTS_DIGEST}\n{canonical_json(config)}\n".encode())
    for name in sorted(tensors):
        array = tensors[name]
        entry = canonical_json([name, dtype_name(array), list(array.shape)])
        digest.update(f"{entry}\n".encode())
        digest.update(little_endian_bytes(array))
    return digest.hexdigest()

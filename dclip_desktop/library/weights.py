"""How attribute weights are stored in weights.safetensors, and integrity checks of that file.

- LoRA factors: '<param>.lora_A' / '.lora_B' in fp16 (half the size; the edit is defined by the
  stored factors, so export/import round trips stay bit-identical), '.lora_scale' in fp32.
- Full fine-tunes: the delta Δθ per parameter in fp16 with a power-of-two fp32 scale per tensor
  ('<param>::scale'), so the tiny deltas of a 4e-6 learning rate keep fp16's 11 significant bits
  instead of falling into its subnormal range.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .errors import LibraryError

FORMAT = "dclip-attribute-1"
SCALE_SUFFIX = "::scale"
_FP16_MAX = 65504.0
_MAX_HEADER = 100 << 20


def _amax(name: str, t: torch.Tensor) -> float:
    """max |t|, refusing NaN/inf (a NaN anywhere makes the max NaN)."""
    amax = float(t.abs().max()) if t.numel() else 0.0
    if not math.isfinite(amax):
        raise LibraryError(f"weights '{name}' contain NaN or infinite values; not saving a broken attribute")
    return amax


def encode(weights: dict[str, torch.Tensor], kind: str) -> bytes:
    """The safetensors bytes for an attribute's weights."""
    if not weights:
        raise LibraryError("the attribute has no weights (nothing changed during fine-tuning?)")
    out: dict[str, torch.Tensor] = {}
    if kind == "lora":
        for key, t in weights.items():
            t = t.detach().cpu()
            amax = _amax(key, t.float() if not t.is_floating_point() else t)
            if key.endswith(".lora_scale"):
                out[key] = t.to(torch.float32).reshape(())
            elif key.endswith((".lora_A", ".lora_B")):
                pname = key.rsplit(".", 1)[0]
                for part in (".lora_A", ".lora_B", ".lora_scale"):
                    if pname + part not in weights:
                        raise LibraryError(f"LoRA weights for '{pname}' lack '{part[1:]}'")
                out[key] = t.to(torch.float16 if amax < _FP16_MAX else torch.float32).contiguous()
            else:
                raise LibraryError(f"'{key}' is not a LoRA factor (expected .lora_A, .lora_B or .lora_scale)")
    elif kind == "full_delta":
        for key, t in weights.items():
            if key.endswith(SCALE_SUFFIX):
                raise LibraryError(f"parameter name '{key}' is reserved")
            t = t.detach().cpu().float()
            amax = _amax(key, t)
            # amax < 2**e, so the scaled tensor stays below 2**15 and is exact up to fp16 rounding.
            scale = 2.0 ** (math.frexp(amax)[1] - 15) if amax > 0 else 1.0
            out[key] = (t / scale).to(torch.float16).contiguous()
            out[key + SCALE_SUFFIX] = torch.tensor(scale, dtype=torch.float32)
    else:
        raise LibraryError(f"weight kind must be 'lora' or 'full_delta', got {kind!r}")
    return st_save(out, metadata={"format": FORMAT, "kind": kind})


def decode(data: bytes, kind: str) -> dict[str, torch.Tensor]:
    """Inverse of `encode`: LoRA factors as stored; full deltas as float32 Δθ by parameter name."""
    tensors = st_load(data)
    if kind == "lora":
        return tensors
    out = {}
    for key, t in tensors.items():
        if key.endswith(SCALE_SUFFIX):
            continue
        scale = tensors.get(key + SCALE_SUFFIX)
        out[key] = t.float() * (float(scale) if scale is not None else 1.0)
    return out


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_header(path: Path) -> None:
    """Cheap structural check of a safetensors file: the header parses and the data it describes is
    exactly what the file holds. Raises ValueError with the reason (e.g. a truncated download)."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise ValueError(f"weight file is truncated ({size} bytes, no header)")
        (n,) = struct.unpack("<Q", head)
        if n > _MAX_HEADER or 8 + n > size:
            raise ValueError(f"weight file is truncated or not safetensors (header of {n} bytes, file {size} bytes)")
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("weight file header is not valid JSON (not a safetensors file?)") from None
    if not isinstance(header, dict):
        raise ValueError("weight file header is not a JSON object")
    end = 0
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            start, stop = (int(v) for v in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"weight file header entry '{key}' is malformed") from None
        if not 0 <= start <= stop:
            raise ValueError(f"weight file header entry '{key}' has bad offsets")
        end = max(end, stop)
    data_len = size - 8 - n
    if end > data_len:
        raise ValueError(f"weight file is truncated ({data_len} data bytes, header needs {end})")
    if end < data_len:
        raise ValueError(f"weight file has {data_len - end} unexpected trailing bytes")

"""How attribute weights are stored in weights.safetensors, and integrity checks of that file.

- LoRA factors: '<param>.lora_A' / '.lora_B' in fp16 (half the size; the edit is defined by the
  stored factors, so export/import round trips stay bit-identical), '.lora_scale' in fp32.
- Full fine-tunes: the delta Δθ per parameter in fp16 with a power-of-two fp32 scale per tensor
  ('<param>::scale'), so the tiny deltas of a 4e-6 learning rate keep fp16's 11 significant bits
  instead of falling into its subnormal range.
- Low-rank full fine-tunes (core/low_rank.py): '<param>::A' and '<param>::B' in fp16, each factor
  brought to fp16's range by a power of two whose product is '<param>::scale'; 1-D changes, and
  layers whose factors would be no smaller, stay dense as in a full delta. They decode to the same
  dense float32 Δθ a full delta does, so merging and mixing never see the difference.
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

from ..core.low_rank import A_SUFFIX, B_SUFFIX, expand
from ..errors import BadInput
from .errors import LibraryError, first_line
from .manifest import KINDS

FORMAT = "dclip-attribute-1"
SCALE_SUFFIX = "::scale"
LORA_PARTS = (".lora_A", ".lora_B", ".lora_scale")
_FP16_MAX = 65504.0
_MAX_HEADER = 100 << 20
# How much larger than the parameter itself (RMS against RMS) an attribute's change may be before
# the file is refused as no fine-tune at all. Measured on the demo base with `dclip finetune`: the
# default LoRA recipe changes a parameter by at most 0.08× its RMS, a full fine-tune by 0.008×, and
# a LoRA at ten times the default learning rate by 1.9×. 100× is far above any training run, and
# far below what a wrong scale, a unit mix-up or garbage values give (1e3× and up). Small
# parameters (zero-initialised biases) are measured against the model's overall RMS instead.
MAX_DELTA_RATIO = 100.0


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
    elif kind in ("full_delta", "low_rank"):
        for key, t in weights.items():
            if key.endswith(SCALE_SUFFIX):
                raise LibraryError(f"parameter name '{key}' is reserved")
            if kind == "low_rank" and key.endswith((A_SUFFIX, B_SUFFIX)):
                _encode_factor(key, t, weights, out)
                continue
            if kind == "low_rank" and "::" in key:
                raise LibraryError(f"'{key}' is not a low-rank factor (expected ::A or ::B)")
            t = t.detach().cpu().float()
            scale = _pow2_scale(_amax(key, t))
            out[key] = (t / scale).to(torch.float16).contiguous()
            out[key + SCALE_SUFFIX] = torch.tensor(scale, dtype=torch.float32)
    else:
        raise LibraryError(f"weight kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return st_save(out, metadata={"format": FORMAT, "kind": kind})


def _pow2_scale(amax: float) -> float:
    """amax < 2**e, so t / 2**(e-15) stays below 2**15 and is exact up to fp16 rounding."""
    return 2.0 ** (math.frexp(amax)[1] - 15) if amax > 0 else 1.0


def _encode_factor(key: str, t: torch.Tensor, weights: dict, out: dict) -> None:
    """Both factors of one layer in fp16, each scaled by its own power of two (B = U·S is as small as
    the delta, A = Vᵀ is not), the product of the two stored as the layer's scale."""
    pname = key[: -len(A_SUFFIX)]
    a, b = weights.get(pname + A_SUFFIX), weights.get(pname + B_SUFFIX)
    if a is None or b is None:
        raise LibraryError(f"low-rank weights for '{pname}' lack '{'A' if a is None else 'B'}'")
    if pname in weights:
        raise LibraryError(f"'{pname}' is stored both dense and as low-rank factors")
    _check_factor_shapes(pname, a, b)
    if key.endswith(B_SUFFIX):
        return  # stored with its A
    scales = []
    for suffix, f in ((A_SUFFIX, a), (B_SUFFIX, b)):
        f = f.detach().cpu().float()
        scales.append(_pow2_scale(_amax(pname + suffix, f)))
        out[pname + suffix] = (f / scales[-1]).to(torch.float16).contiguous()
    out[pname + SCALE_SUFFIX] = torch.tensor(scales[0] * scales[1], dtype=torch.float32)


def _check_factor_shapes(pname: str, a: torch.Tensor, b: torch.Tensor) -> None:
    if a.dim() < 2 or b.dim() != 2 or a.shape[0] < 1 or b.shape[1] != a.shape[0]:
        raise LibraryError(f"low-rank factors for '{pname}' do not fit each other (A {tuple(a.shape)}, "
                           f"B {tuple(b.shape)}; expected A (r, ...) and B (out, r))")


def decode(data: bytes, kind: str) -> dict[str, torch.Tensor]:
    """Inverse of `encode`: LoRA factors as stored; full and low-rank deltas as float32 Δθ by
    parameter name.

    Whatever the bytes, fails only as LibraryError, with the reason: the file parses, holds at least
    one tensor, every name is complete and every value is finite. Whether the names and shapes fit a
    base model needs the model: `check_fit`."""
    try:
        tensors = st_load(bytes(data))
    except Exception as exc:  # safetensors raises its own error types
        raise LibraryError(f"the weights are not a safetensors file ({first_line(exc)})") from None
    check_finite(tensors)
    if kind == "lora":
        return _check_lora(tensors)
    if kind not in KINDS:
        raise LibraryError(f"weight kind must be one of {', '.join(KINDS)}, got {kind!r}")
    out = {}
    for key, t in tensors.items():
        if key.endswith(SCALE_SUFFIX):
            stem = key[: -len(SCALE_SUFFIX)]
            if (stem not in tensors and stem + A_SUFFIX not in tensors) or t.numel() != 1:
                raise LibraryError(f"'{key}' is not the scale of a stored delta")
            continue
        if kind == "low_rank" and key.endswith((A_SUFFIX, B_SUFFIX)):
            _decode_factors(key, tensors, out)
            continue
        if kind == "low_rank" and "::" in key:
            raise LibraryError(f"'{key}' is not a low-rank factor (expected ::A or ::B)")
        scale = tensors.get(key + SCALE_SUFFIX)
        factor = float(scale) if scale is not None else 1.0
        out[key] = t.float() * factor
        if not bool(torch.isfinite(out[key]).all()):
            raise LibraryError(f"weights '{key}' overflow when scaled (scale {factor:g})")
    return out


def _decode_factors(key: str, tensors: dict[str, torch.Tensor], out: dict) -> None:
    """The dense ΔW of one factored layer, once its A, B and scale are all there and fit."""
    pname = key[: -len(A_SUFFIX)]
    parts = {s: tensors.get(pname + s) for s in (A_SUFFIX, B_SUFFIX, SCALE_SUFFIX)}
    for suffix, t in parts.items():
        if t is None:
            raise LibraryError(f"low-rank weights for '{pname}' lack '{suffix[2:]}'")
    if pname in tensors:
        raise LibraryError(f"'{pname}' is stored both dense and as low-rank factors")
    a, b, scale = parts[A_SUFFIX], parts[B_SUFFIX], parts[SCALE_SUFFIX]
    _check_factor_shapes(pname, a, b)
    if scale.numel() != 1:
        raise LibraryError(f"'{pname}{SCALE_SUFFIX}' is not the scale of a stored delta")
    if key.endswith(B_SUFFIX):
        return  # expanded with its A
    out[pname] = expand(a, b, float(scale))
    if not bool(torch.isfinite(out[pname]).all()):
        raise LibraryError(f"low-rank weights for '{pname}' overflow when expanded")


def compact_delta(delta: dict[str, torch.Tensor], render, criterion: str) -> tuple[dict, str, dict]:
    """(weights, kind, storage record) to save a full fine-tune's dense `delta` as: its smallest
    low-rank form whose `render`ed image stays within low_rank.PIXEL_TOLERANCE of the dense one's,
    measured on exactly what the file decodes to, else the dense delta ("full_delta")."""
    from ..core import low_rank

    def roundtrip(stored: dict[str, torch.Tensor]) -> tuple[int, dict[str, torch.Tensor]]:
        blob = encode(stored, "low_rank")
        return len(blob), decode(blob, "low_rank")

    choice = low_rank.choose(delta, roundtrip, render, len(encode(delta, "full_delta")))
    record = choice.record(criterion)
    if choice.weights is None:
        return delta, "full_delta", record
    return choice.weights, "low_rank", record


# The storage record of a full fine-tune kept dense on request.
DENSE_REQUESTED = {"kind": "full_delta", "criterion": "dense requested (--dense)"}


def check_finite(tensors: dict[str, torch.Tensor]) -> None:
    """At least one tensor, all floating point and finite (LibraryError otherwise): NaN factors make
    every edited image black, and no tensors at all would edit nothing, both without an error."""
    if not tensors:
        raise LibraryError("the weights hold no tensors: the attribute would change nothing")
    for key, t in tensors.items():
        if not t.is_floating_point():
            raise LibraryError(f"weights '{key}' are stored as {str(t.dtype).replace('torch.', '')}, "
                               "not floating point")
        if not bool(torch.isfinite(t).all()):
            raise LibraryError(f"weights '{key}' contain NaN or infinite values")


def _check_lora(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for key, t in tensors.items():
        pname, dot, part = key.rpartition(".")
        if not pname or dot + part not in LORA_PARTS:
            raise LibraryError(f"'{key}' is not a LoRA factor (expected .lora_A, .lora_B or .lora_scale)")
        for other in LORA_PARTS:
            if pname + other not in tensors:
                raise LibraryError(f"LoRA weights for '{pname}' lack '{other[1:]}'")
        if part == "lora_A":
            a, b, scale = t, tensors[pname + ".lora_B"], tensors[pname + ".lora_scale"]
            rank = a.shape[0] if a.dim() >= 2 else 0
            if not rank or b.dim() < 2 or b.numel() != b.shape[0] * rank or scale.numel() != 1:
                raise LibraryError(f"LoRA factors for '{pname}' do not fit each other (A {tuple(a.shape)}, "
                                   f"B {tuple(b.shape)}, scale {tuple(scale.shape)})")
    return tensors


def _rms(t: torch.Tensor) -> float:
    return float(t.detach().float().pow(2).mean().sqrt()) if t.numel() else 0.0


def check_fit(kind: str, weights: dict[str, torch.Tensor], params: dict[str, torch.Tensor]) -> None:
    """Refuse (LibraryError, with the reason) weights from `decode` that do not fit a base model with
    these named parameters: a name the model lacks, a shape that differs, a change that is non-finite
    or implausibly large (MAX_DELTA_RATIO)."""
    from ..core.lora import lora_delta

    if not params:
        return
    total = sum(p.numel() for p in params.values())
    model_rms = math.sqrt(sum(float(p.detach().float().pow(2).sum()) for p in params.values()) / max(total, 1))
    if kind == "lora":
        names = [k[: -len(".lora_A")] for k in weights if k.endswith(".lora_A")]
    else:
        names = list(weights)
    if not names:
        raise LibraryError("the weights change no parameter")
    for name in names:
        p = params.get(name)
        if p is None:
            raise LibraryError(f"'{name}' is not a parameter of the base model")
        if kind == "lora":
            a, b = weights[name + ".lora_A"], weights[name + ".lora_B"]
            cols = a.numel() // a.shape[0]
            if b.shape[0] != p.shape[0] or b.shape[0] * cols != p.numel():
                raise LibraryError(f"LoRA factors for '{name}' make a ({b.shape[0]}, {cols}) change, the base's "
                                   f"parameter has shape {tuple(p.shape)}")
            delta = lora_delta(a, b, float(weights[name + ".lora_scale"]), p.shape)
        else:
            delta = weights[name]
            if delta.shape != p.shape:
                raise LibraryError(f"'{name}' has shape {tuple(delta.shape)}, the base's parameter "
                                   f"{tuple(p.shape)}")
        if not bool(torch.isfinite(delta).all()):
            raise LibraryError(f"the change to '{name}' is not finite")
        ratio = _rms(delta) / max(_rms(p), model_rms, 1e-12)
        if ratio > MAX_DELTA_RATIO:
            raise LibraryError(f"the change to '{name}' is {ratio:.3g}× the size of the parameter itself (a "
                               f"fine-tune stays well below 1×; at most {MAX_DELTA_RATIO:g}× is accepted)")


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
            raise BadInput(f"weight file is truncated ({size} bytes, no header)")
        (n,) = struct.unpack("<Q", head)
        if n > _MAX_HEADER or 8 + n > size:
            raise BadInput(f"weight file is truncated or not safetensors (header of {n} bytes, file {size} bytes)")
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadInput("weight file header is not valid JSON (not a safetensors file?)") from None
    if not isinstance(header, dict):
        raise BadInput("weight file header is not a JSON object")
    end = 0
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            start, stop = (int(v) for v in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise BadInput(f"weight file header entry '{key}' is malformed") from None
        if not 0 <= start <= stop:
            raise BadInput(f"weight file header entry '{key}' has bad offsets")
        end = max(end, stop)
    data_len = size - 8 - n
    if end > data_len:
        raise BadInput(f"weight file is truncated ({data_len} data bytes, header needs {end})")
    if end < data_len:
        raise BadInput(f"weight file has {data_len - end} unexpected trailing bytes")

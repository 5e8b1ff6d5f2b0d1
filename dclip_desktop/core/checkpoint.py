"""Reading a checkpoint file a user brings: safely, and down to a flat state dict.

Every weights file that is not ours passes here: the official DiffusionCLIP fine-tunes (DDPM or ADM
layout), guided-diffusion / ILVR ADM checkpoints, training checkpoints. Pickles are opened with
``torch.load(weights_only=True)`` only, which refuses a pickle that would build arbitrary objects or
run code instead of executing it; safetensors files (recognised by their header, whatever their
suffix) are read with safetensors. Then the state dict is unwrapped: training scripts nest it under
a key ("ema" preferred, since EMA weights are what one samples with, then "state_dict", "model", ...),
and DataParallel / ``torch.compile`` prefix every key with "module." / "_orig_mod.".

Key layouts are not decided here: `convert.is_original_layout` and `adm_checkpoint` do that.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from typing import Union

import torch

from ..errors import BadInput

__all__ = [
    "PREFIXES",
    "WRAPPER_KEYS",
    "CheckpointError",
    "CheckpointNotFound",
    "read_checkpoint",
    "read_state_dict",
    "strip_prefixes",
    "unwrap",
]

# Keys a state dict is found under, in order of preference.
WRAPPER_KEYS = ("ema", "state_dict", "model", "model_state_dict", "net", "module")
PREFIXES = ("module.", "_orig_mod.")
_MAX_DEPTH = 4  # wrappers inside wrappers: {"state_dict": {"model": {...}}} and deeper
_SHOW = 8  # keys named in an error message
# How torch.save files begin: a zip archive (torch ≥ 1.6) or a pickle (protocol 2+ starts with PROTO).
_TORCH_MAGICS = (b"PK\x03\x04", b"\x80")
# What the weights-only unpickler says when a pickle names a callable or class it will not call or
# build; any other unpickling failure is a file that is no sound pickle at all.
_CODE_MARKERS = ("Unsupported global", "unsupported GLOBAL", "reduce for unrecognized function",
                 "Can only create new object", "Can only build")

PathLike = Union[str, os.PathLike]


class CheckpointError(BadInput):
    """A checkpoint that cannot, or must not, be loaded or converted; the one-line message says why."""


class CheckpointNotFound(CheckpointError, FileNotFoundError):
    """No file at the given path; also a FileNotFoundError, for callers that test for that."""


def _detail(exc: BaseException) -> str:
    """The useful first sentence of a torch or safetensors error: torch's own advice before
    "WeightsUnpickler error:" (re-run with weights_only=False) is exactly what must not be done."""
    text = str(exc).split("WeightsUnpickler error:")[-1].strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line.split(". ")[0].rstrip(".")


def _is_safetensors(head: bytes, size: int) -> bool:
    """A safetensors file: an 8-byte little-endian header length, then a JSON object that fits."""
    return len(head) > 8 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") <= size - 8


def _read_safetensors(path: str, name: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to parse the user's file is the file's fault
        raise CheckpointError(
            f"{name} looks like a safetensors file but cannot be read (truncated or corrupt? {_detail(exc)})"
        ) from None


def _read_torch(path: str, name: str) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except pickle.UnpicklingError as exc:
        if any(marker in str(exc) for marker in _CODE_MARKERS):
            raise CheckpointError(
                f"refusing to load {name}: it is not a plain weights checkpoint; loading it would build "
                "arbitrary Python objects or run code, which dclip refuses. Only load files from sources you "
                f"trust, saved as state dicts (detail: {_detail(exc)})"
            ) from None
        raise CheckpointError(
            f"{name} is not a PyTorch checkpoint dclip can read (truncated or corrupt? {_detail(exc)})"
        ) from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged archive
        raise CheckpointError(
            f"{name} is not a PyTorch checkpoint dclip can read (truncated or corrupt? {_detail(exc)})"
        ) from None


def read_checkpoint(path: PathLike) -> object:
    """What the file holds, read without running any code from it: a torch.save pickle or zip with
    weights_only=True, or a safetensors file. Raises CheckpointNotFound for no file, CheckpointError
    for an empty, foreign, damaged or unsafe one; an OSError from opening it (permissions) passes."""
    path = os.fspath(path)
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise CheckpointNotFound(f"checkpoint not found: {path}")
    with open(path, "rb") as fh:
        head = fh.read(9)
    if not head:
        raise CheckpointError(f"{name} is empty (0 bytes), not a PyTorch checkpoint")
    if _is_safetensors(head, os.path.getsize(path)):
        return _read_safetensors(path, name)
    if not head.startswith(_TORCH_MAGICS):
        raise CheckpointError(
            f"{name} is not a PyTorch checkpoint (neither a torch.save zip, a pickle nor a safetensors file)"
        )
    return _read_torch(path, name)


def strip_prefixes(state: Mapping[str, torch.Tensor], prefixes: tuple[str, ...] = PREFIXES) -> dict:
    """Drop DataParallel's "module." and torch.compile's "_orig_mod." (repeatedly, in any order) from
    every key."""
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for p in prefixes:
                if key.startswith(p):
                    key, changed = key[len(p) :], True
        out[key] = value
    return out


def _is_state_dict(obj: Mapping) -> bool:
    return all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items())


def unwrap(obj: object, name: str = "checkpoint") -> dict[str, torch.Tensor]:
    """A loaded checkpoint's flat state dict, prefixes stripped.

    A mapping of names to tensors is the state dict. A mapping that holds other things as well is a
    wrapper when one of WRAPPER_KEYS holds a mapping (the first such key in that order wins, so EMA
    weights beat raw ones); otherwise its tensors are the state dict and the rest (step counters,
    hyper-parameters) is dropped. `name` is what messages call the file.
    """
    for _ in range(_MAX_DEPTH + 1):
        if not isinstance(obj, Mapping):
            raise CheckpointError(f"{name} does not hold a model state dict (it holds a {type(obj).__name__})")
        if not obj:
            raise CheckpointError(f"{name} holds no weights (an empty state dict)")
        if _is_state_dict(obj):
            break
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            tensors = {k: v for k, v in obj.items() if isinstance(k, str) and torch.is_tensor(v)}
            if not tensors:
                keys = ", ".join(map(str, list(obj)[:_SHOW]))
                raise CheckpointError(
                    f"{name} holds no tensors, nor a state dict under a known key ({'/'.join(WRAPPER_KEYS)}); "
                    f"its keys: {keys}"
                )
            obj = tensors
            break
        obj = inner
    else:
        raise CheckpointError(f"{name} is nested too deeply to find its state dict")
    return strip_prefixes(obj)


def read_state_dict(path: PathLike) -> dict[str, torch.Tensor]:
    """The flat state dict in a checkpoint file: `read_checkpoint`, then `unwrap`. Keys are left in
    their stored layout, bar the prefixes."""
    return unwrap(read_checkpoint(path), os.path.basename(os.fspath(path)))

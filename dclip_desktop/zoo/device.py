"""Device and precision choice: what "auto" means, and a one-line description for the status bar."""

from __future__ import annotations

from typing import Optional, Union

import torch

from ..core.config import DEVICE_PATTERN
from ..errors import BadInput


class DeviceUnavailableError(BadInput):
    """The requested device does not exist on this machine."""


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        out.append("mps")
    return out


def pick_device(pref: Union[str, torch.device, None] = "auto") -> torch.device:
    """Resolve a device preference: auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N or mps (checked)."""
    if isinstance(pref, torch.device):
        pref = str(pref)
    pref = (pref or "auto").strip().lower()
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    m = DEVICE_PATTERN.fullmatch(pref)
    if m is None:
        raise DeviceUnavailableError(f"unknown device '{pref}'; use auto, cpu, cuda, cuda:N or mps")
    if pref == "cpu":
        return torch.device("cpu")
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"device '{pref}' requested but CUDA is not available here (torch {torch.__version__}, "
                f"CUDA build: {torch.version.cuda or 'no'}); available: {', '.join(available_devices())}"
            )
        index = int(m.group(1)) if m.group(1) else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"device '{pref}' requested but only {torch.cuda.device_count()} CUDA device(s) exist; "
                f"available: {', '.join(available_devices())}"
            )
        return torch.device("cuda", index)
    if not _mps_available():  # mps, the one name left
        raise DeviceUnavailableError(
            f"device 'mps' requested but Apple MPS is not available; available: {', '.join(available_devices())}"
        )
    return torch.device("mps")


_PRECISIONS = {
    "fp32": None,
    "float32": None,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}


def pick_precision(
    pref: Optional[str] = "auto", device: Union[str, torch.device, None] = None
) -> Optional[torch.dtype]:
    """The autocast dtype, or None for plain fp32.

    "auto": bf16 on a CUDA device that supports it, else fp32. fp16 is accepted on CUDA/MPS only and bf16
    on CUDA only when supported, or on CPU (CPU autocast supports bf16).
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    pref = (pref or "auto").strip().lower()
    if pref == "auto":
        if device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return None
    if pref not in _PRECISIONS:
        raise BadInput(f"unknown precision '{pref}'; use auto, fp32, bf16 or fp16")
    dtype = _PRECISIONS[pref]
    if dtype is torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise BadInput(f"bf16 requested but {describe(device)} does not support it; use fp16 or fp32")
    if dtype is torch.float16 and device.type == "cpu":
        raise BadInput("fp16 autocast is not supported on the CPU; use bf16 or fp32")
    return dtype


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def describe(device: Union[str, torch.device]) -> str:
    """A short line for the status bar, e.g. "cuda:0 · NVIDIA H100 · 79.1 GiB" or "CPU · 16 threads"."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        text = f"cuda:{index} · {props.name} · {_gib(props.total_memory)}"
        try:
            free, _total = torch.cuda.mem_get_info(index)
            text += f" ({_gib(free)} free)"
        except RuntimeError:
            pass
        return text
    if device.type == "mps":
        return "mps · Apple GPU"
    return f"CPU · {torch.get_num_threads()} threads"

"""Loading ADM checkpoints: ILVR's AFHQ-dog, guided-diffusion's ImageNet-512, DiffusionCLIP's fine-tunes.

All of these are plain ``torch.save``\\ d state dicts in the original guided-diffusion key layout, which
``ADMUNet`` reproduces, so "conversion" is only unwrapping: the state dict may sit under
"state_dict"/"ema"/"model" (training checkpoints) and carry "module." prefixes (DataParallel, as in
DiffusionCLIP's fine-tuned ``.pth`` files). Files are opened with ``weights_only=True``: a pickle that
tries to run code is refused, never executed.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from typing import Optional, Union

import torch

from .adm import AFHQ_DOG_256, IMAGENET_512, ADMConfig, ADMUNet
from .convert import strip_prefixes

__all__ = [
    "ADMCheckpointError",
    "KNOWN_CONFIGS",
    "extract_state_dict",
    "load_adm_checkpoint",
    "match_config",
]

KNOWN_CONFIGS: dict[str, ADMConfig] = {"afhq_dog_256": AFHQ_DOG_256, "imagenet_512": IMAGENET_512}

# Preferred first: EMA weights are what one samples with.
_WRAPPER_KEYS = ("ema", "state_dict", "model", "model_state_dict", "net")
_PREFIXES = ("module.", "_orig_mod.")
_SHOW = 8


class ADMCheckpointError(ValueError):
    """The file is not a loadable ADM checkpoint for the given config; the message says why."""


def _is_state_dict(obj: object) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items())
    )


def extract_state_dict(obj: object) -> dict[str, torch.Tensor]:
    """Unwrap a loaded checkpoint to a flat state dict and strip "module."/"_orig_mod." prefixes."""
    for _ in range(4):
        if _is_state_dict(obj):
            break
        if not isinstance(obj, Mapping):
            raise ADMCheckpointError(f"checkpoint holds a {type(obj).__name__}, not a state dict")
        inner = next((obj[k] for k in _WRAPPER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
        if inner is None:
            keys = ", ".join(map(str, list(obj)[:_SHOW]))
            raise ADMCheckpointError(
                f"checkpoint is a dict without tensors or a known wrapper key ({'/'.join(_WRAPPER_KEYS)}); "
                f"its keys: {keys}"
            )
        obj = inner
    else:
        raise ADMCheckpointError("checkpoint is nested too deeply to find its state dict")

    return strip_prefixes(obj, _PREFIXES)


def _expected_shapes(config: ADMConfig) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = ADMUNet(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _mismatches(sd: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]]):
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [
        f"{k}: file {tuple(sd[k].shape)} vs model {expected[k]}"
        for k in expected
        if k in sd and tuple(sd[k].shape) != expected[k]
    ]
    return missing, unexpected, wrong


def match_config(state_dict: Mapping[str, torch.Tensor]) -> Optional[str]:
    """The name of the known config whose keys and shapes the state dict fits exactly, if any."""
    for name, cfg in KNOWN_CONFIGS.items():
        if not any(_mismatches(state_dict, _expected_shapes(cfg))):
            return name
    return None


def _head(items: list[str]) -> str:
    more = f" … (+{len(items) - _SHOW} more)" if len(items) > _SHOW else ""
    return ", ".join(items[:_SHOW]) + more


def load_adm_checkpoint(
    path: Union[str, os.PathLike],
    config: ADMConfig,
    *,
    device: Union[str, torch.device] = "cpu",
    dtype: Optional[torch.dtype] = torch.float32,
) -> ADMUNet:
    """Build ``ADMUNet(config)``, load the checkpoint at ``path`` into it strictly, return it in eval mode.

    ``dtype`` casts floating parameters after loading (None keeps the file's dtypes). Raises
    ``FileNotFoundError`` for a missing file and ``ADMCheckpointError`` for an unsafe, unreadable or
    mismatching one; a mismatch lists the first missing/unexpected/mis-shaped keys.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"ADM checkpoint not found: {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ADMCheckpointError(
            f"refusing to load {path}: it is not a plain tensor checkpoint (weights_only=True rejected it; "
            f"it may contain code). Detail: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise ADMCheckpointError(
            f"cannot read {path} as a torch checkpoint (truncated or corrupt?): {e}"
        ) from e

    sd = extract_state_dict(raw)
    expected = _expected_shapes(config)
    missing, unexpected, wrong = _mismatches(sd, expected)
    if missing or unexpected or wrong:
        lines = [f"{path} does not match ADM config '{config.name}':"]
        if missing:
            lines.append(f"  {len(missing)} missing keys: {_head(missing)}")
        if unexpected:
            lines.append(f"  {len(unexpected)} unexpected keys: {_head(unexpected)}")
        if wrong:
            lines.append(f"  {len(wrong)} shape mismatches: {_head(wrong)}")
        fits = match_config(sd)
        if fits is not None and KNOWN_CONFIGS[fits] != config:
            lines.append(f"  the file fits the known config '{fits}' instead")
        raise ADMCheckpointError("\n".join(lines))

    with torch.device("meta"):
        model = ADMUNet(config)
    model.load_state_dict(sd, strict=True, assign=True)
    if dtype is not None:
        for p in model.parameters():
            if p.is_floating_point() and p.dtype != dtype:
                p.data = p.data.to(dtype)
    return model.to(device).eval()

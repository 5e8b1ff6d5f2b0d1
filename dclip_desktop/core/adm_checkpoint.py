"""ADM checkpoints checked against the known configs: ILVR's AFHQ-dog, guided-diffusion's ImageNet-512,
DiffusionCLIP's fine-tunes of them.

All of these are plain ``torch.save``\\ d state dicts in the original guided-diffusion key layout, which
``ADMUNet`` reproduces, so loading renames nothing: `checkpoint.read_state_dict` reads the file safely
and unwraps it ("ema"/"state_dict"/"model" wrappers, "module." prefixes), and what is left must fit the
config exactly, key for key and shape for shape.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Optional, Union

import torch

from .adm import AFHQ_DOG_256, IMAGENET_512, ADMConfig, ADMUNet
from .checkpoint import CheckpointError, read_state_dict

__all__ = ["KNOWN_CONFIGS", "expected_shapes", "load_adm_checkpoint", "match_config", "mismatches"]

KNOWN_CONFIGS: dict[str, ADMConfig] = {"afhq_dog_256": AFHQ_DOG_256, "imagenet_512": IMAGENET_512}

_SHOW = 8


def expected_shapes(config: ADMConfig) -> dict[str, tuple[int, ...]]:
    """Every state-dict key of ``ADMUNet(config)`` with its shape (built on the meta device: no memory)."""
    with torch.device("meta"):
        model = ADMUNet(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def mismatches(sd: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]]):
    """(missing keys, unexpected keys, "key: file shape vs model shape" lines): a strict load's verdict,
    for any model's expected shapes."""
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
        if not any(mismatches(state_dict, expected_shapes(cfg))):
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
    ``CheckpointNotFound`` (a ``FileNotFoundError``) for a missing file and ``CheckpointError`` for an
    unsafe, unreadable or mismatching one; a mismatch lists the first missing/unexpected/mis-shaped keys.
    """
    path = os.fspath(path)
    sd = read_state_dict(path)
    expected = expected_shapes(config)
    missing, unexpected, wrong = mismatches(sd, expected)
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
        raise CheckpointError("\n".join(lines))

    with torch.device("meta"):
        model = ADMUNet(config)
    model.load_state_dict(sd, strict=True, assign=True)
    if dtype is not None:
        for p in model.parameters():
            if p.is_floating_point() and p.dtype != dtype:
                p.data = p.data.to(dtype)
    return model.to(device).eval()

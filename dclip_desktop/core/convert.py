"""Original DDPM checkpoint layout ↔ diffusers `UNet2DModel` keys.

The original code (and the official DiffusionCLIP fine-tuned .pth files) names modules
`temb.dense.{0,1}`, `conv_in`, `down.{i}.block.{j}`, `down.{i}.attn.{j}`, `down.{i}.downsample.conv`,
`mid.block_1 / attn_1 / block_2`, `up.{i}.block.{j}`, `up.{i}.attn.{j}`, `up.{i}.upsample.conv`,
`norm_out`, `conv_out`, with i the resolution level counted from the full resolution down. Two
differences need care:

- attention q/k/v/proj_out are 1×1 convolutions there and Linear layers in diffusers (`w[:, :, 0, 0]`);
- diffusers orders its up blocks from the lowest resolution up, so original `up.{i}` is
  `up_blocks.{L-1-i}`; original up levels hold num_res_blocks+1 resnets, like diffusers' up blocks.

The map is derived from the structure (levels, resnets per level, which levels attend), taken from a
`UNet2DModel` config or inferred from the checkpoint's keys, so it serves any config of the family.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

import torch

from .checkpoint import CheckpointError, strip_prefixes

_RESNET = {
    "norm1": "norm1",
    "conv1": "conv1",
    "temb_proj": "time_emb_proj",
    "norm2": "norm2",
    "conv2": "conv2",
    "nin_shortcut": "conv_shortcut",
}
_ATTN = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
_LINEAR_FROM_CONV = (".to_q", ".to_k", ".to_v", ".to_out.0")
_ORIGINAL_KEY = re.compile(r"(?:module\.|_orig_mod\.)*(?:temb\.dense\.|down\.\d+\.block\.)")


@dataclass(frozen=True)
class Structure:
    levels: int  # number of resolution levels (len(block_out_channels))
    layers_per_block: int
    down_attn: tuple[bool, ...]  # per original level i (full resolution first)
    up_attn: tuple[bool, ...]  # per original level i


def structure_from_config(config: Mapping) -> Structure:
    down = list(config["down_block_types"])
    up = list(config["up_block_types"])
    levels = len(down)
    if len(up) != levels or len(config["block_out_channels"]) != levels:
        raise CheckpointError("config: down/up block types and block_out_channels differ in length")
    return Structure(
        levels,
        int(config["layers_per_block"]),
        tuple("Attn" in t for t in down),
        tuple("Attn" in up[levels - 1 - i] for i in range(levels)),
    )


def structure_from_original(state: Mapping[str, torch.Tensor]) -> Structure:
    """Levels, resnets per level and attention levels, read off an original-layout state dict's keys."""
    down_blocks: dict[int, set] = {}
    down_attn: set[int] = set()
    up_attn: set[int] = set()
    for key in state:
        m = re.match(r"down\.(\d+)\.(block|attn)\.(\d+)\.", key)
        if m:
            i = int(m.group(1))
            if m.group(2) == "block":
                down_blocks.setdefault(i, set()).add(int(m.group(3)))
            else:
                down_attn.add(i)
        m = re.match(r"up\.(\d+)\.attn\.", key)
        if m:
            up_attn.add(int(m.group(1)))
    if not down_blocks:
        raise CheckpointError("not an original-layout DDPM checkpoint: no 'down.{i}.block.{j}' keys")
    levels = max(down_blocks) + 1
    layers = len(down_blocks[0])
    return Structure(
        levels,
        layers,
        tuple(i in down_attn for i in range(levels)),
        tuple(i in up_attn for i in range(levels)),
    )


def module_map(structure: Structure) -> list[tuple[str, str]]:
    """(original module prefix, diffusers module prefix) pairs, for every module of the family."""
    s = structure
    pairs = [
        ("temb.dense.0", "time_embedding.linear_1"),
        ("temb.dense.1", "time_embedding.linear_2"),
        ("conv_in", "conv_in"),
        ("norm_out", "conv_norm_out"),
        ("conv_out", "conv_out"),
    ]

    def resnet(orig: str, diff: str) -> None:
        pairs.extend((f"{orig}.{a}", f"{diff}.{b}") for a, b in _RESNET.items())

    def attn(orig: str, diff: str) -> None:
        pairs.extend((f"{orig}.{a}", f"{diff}.{b}") for a, b in _ATTN.items())

    for i in range(s.levels):
        for j in range(s.layers_per_block):
            resnet(f"down.{i}.block.{j}", f"down_blocks.{i}.resnets.{j}")
            if s.down_attn[i]:
                attn(f"down.{i}.attn.{j}", f"down_blocks.{i}.attentions.{j}")
        if i != s.levels - 1:
            pairs.append((f"down.{i}.downsample.conv", f"down_blocks.{i}.downsamplers.0.conv"))
    resnet("mid.block_1", "mid_block.resnets.0")
    attn("mid.attn_1", "mid_block.attentions.0")
    resnet("mid.block_2", "mid_block.resnets.1")
    for i in range(s.levels):
        k = s.levels - 1 - i  # diffusers counts up blocks from the lowest resolution
        for j in range(s.layers_per_block + 1):
            resnet(f"up.{i}.block.{j}", f"up_blocks.{k}.resnets.{j}")
            if s.up_attn[i]:
                attn(f"up.{i}.attn.{j}", f"up_blocks.{k}.attentions.{j}")
        if i != 0:
            pairs.append((f"up.{i}.upsample.conv", f"up_blocks.{k}.upsamplers.0.conv"))
    return pairs


def is_original_layout(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether the keys are the original DDPM code's ('temb.dense.0.weight', 'down.0.block.0...'),
    with or without the prefixes `checkpoint.strip_prefixes` drops."""
    return any(_ORIGINAL_KEY.match(k) for k in state)


def _rename(
    state: Mapping[str, torch.Tensor], pairs: dict[str, str], to_linear: bool, direction: str
) -> dict[str, torch.Tensor]:
    out, unknown = {}, []
    for key, value in state.items():
        module, _, param = key.rpartition(".")
        target = pairs.get(module)
        if target is None:
            unknown.append(key)
            continue
        diffusers_name = target if to_linear else module
        if diffusers_name.endswith(_LINEAR_FROM_CONV):
            if param == "weight":
                if to_linear:
                    if value.dim() != 4 or value.shape[2:] != (1, 1):
                        raise CheckpointError(
                            f"{key}: expected a 1×1 conv weight, got shape {tuple(value.shape)}"
                        )
                    value = value[:, :, 0, 0]
                else:
                    value = value[:, :, None, None]
        out[f"{target}.{param}"] = value
    if unknown:
        more = f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else ""
        raise CheckpointError(
            f"{direction}: keys not in the DDPM family layout: {', '.join(unknown[:5])}{more}"
        )
    return out


def convert_original_state_dict(
    state: Mapping[str, torch.Tensor], config: Optional[Mapping] = None
) -> dict[str, torch.Tensor]:
    """Original-layout DDPM state dict → `UNet2DModel` state dict (load it with strict=True).

    The structure comes from `config` (UNet2DModel kwargs) when given, else from the checkpoint's keys.
    "module." / "_orig_mod." prefixes (DataParallel, torch.compile) are stripped first. Read the file
    with `checkpoint.read_state_dict`.
    """
    state = strip_prefixes(state)
    structure = structure_from_config(config) if config is not None else structure_from_original(state)
    return _rename(state, dict(module_map(structure)), True, "original → diffusers")


def to_original_state_dict(state: Mapping[str, torch.Tensor], config: Mapping) -> dict[str, torch.Tensor]:
    """`UNet2DModel` state dict → original DDPM layout (the inverse of convert_original_state_dict)."""
    pairs = {d: o for o, d in module_map(structure_from_config(config))}
    return _rename(state, pairs, False, "diffusers → original")


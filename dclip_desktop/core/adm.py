"""ADM: the guided-diffusion UNet (Dhariwal & Nichol 2021), re-implemented for this project.

The paper edits dogs with ILVR's AFHQ-dog model and general images with guided-diffusion's
ImageNet-512 model; both are this architecture. Module and parameter names follow the released
checkpoints exactly (``input_blocks.{i}.{j}.…``, ``middle_block``, ``output_blocks``, ``out``,
``time_embed.0/2``, ``label_emb``; ResBlocks hold ``in_layers``/``emb_layers``/``out_layers``/
``skip_connection``; attention holds ``norm``/``qkv``/``proj_out``), so their state dicts load
strictly with no renaming (see ``adm_checkpoint.load_adm_checkpoint``).

Learned-sigma models output 2·C channels; ε is the first C (``ModelDenoiser`` slices it).
There is no fp16 mode: run under ``torch.autocast`` instead. GroupNorm and the attention softmax
always compute in at least float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import BadInput

__all__ = [
    "ADMConfig",
    "ADMUNet",
    "AFHQ_DOG_256",
    "IMAGENET_512",
    "ClassConditioned",
    "default_channel_mult",
    "timestep_embedding",
]


def default_channel_mult(image_size: int) -> tuple[float, ...]:
    """guided-diffusion's channel multipliers per image size (used when a config gives none)."""
    table = {
        512: (0.5, 1, 1, 2, 2, 4, 4),
        256: (1, 1, 2, 2, 4, 4),
        128: (1, 1, 2, 3, 4),
        64: (1, 2, 3, 4),
        32: (1, 2, 2, 2),
    }
    if image_size not in table:
        raise ValueError(f"no default channel_mult for image_size {image_size}; give channel_mult explicitly")
    return table[image_size]


@dataclass(frozen=True)
class ADMConfig:
    """Hyper-parameters of an ADM UNet, spelled like guided-diffusion's command-line flags.

    ``attention_resolutions`` are feature-map sizes ("32,16,8" at image_size 512 means attention
    where the map is 32², 16² and 8²); the UNet uses them as downsample rates image_size // r.
    """

    image_size: int = 256
    num_channels: int = 128
    num_res_blocks: int = 2
    channel_mult: Optional[tuple[float, ...]] = None  # None: guided-diffusion's default for image_size
    attention_resolutions: str = "16"
    num_heads: int = 4
    num_head_channels: int = -1  # > 0 overrides num_heads: heads = channels // num_head_channels
    num_heads_upsample: int = -1  # -1: same as num_heads
    learn_sigma: bool = True
    class_cond: bool = False
    num_classes: int = 1000  # used only when class_cond
    use_scale_shift_norm: bool = True
    resblock_updown: bool = False
    use_new_attention_order: bool = False
    dropout: float = 0.0
    in_channels: int = 3
    conv_resample: bool = True
    name: str = field(default="custom", compare=False)

    @property
    def resolved_channel_mult(self) -> tuple[float, ...]:
        return (
            tuple(self.channel_mult)
            if self.channel_mult is not None
            else default_channel_mult(self.image_size)
        )

    @property
    def attention_downsample_rates(self) -> tuple[int, ...]:
        rates = []
        for part in str(self.attention_resolutions).split(","):
            part = part.strip()
            if part:
                rates.append(self.image_size // int(part))
        return tuple(rates)

    @property
    def out_channels(self) -> int:
        return self.in_channels * (2 if self.learn_sigma else 1)


# ILVR's AFHQ-dog model (afhq_dog_4m.pt), as also used by DiffusionCLIP for dogs. From memory of the
# ILVR README's sampling flags: attention_resolutions 16, num_channels 128, num_head_channels 64,
# num_res_blocks 1, resblock_updown, scale-shift norm, learned sigma, unconditional, fp16 off.
# Uncertain: num_heads (4) is irrelevant because num_head_channels=64 overrides it; the channel_mult is
# guided-diffusion's default for 256 (1,1,2,2,4,4). A strict load of the real file is the test of it.
AFHQ_DOG_256 = ADMConfig(
    image_size=256,
    num_channels=128,
    num_res_blocks=1,
    channel_mult=(1, 1, 2, 2, 4, 4),
    attention_resolutions="16",
    num_heads=4,
    num_head_channels=64,
    learn_sigma=True,
    class_cond=False,
    use_scale_shift_norm=True,
    resblock_updown=True,
    use_new_attention_order=False,
    name="afhq_dog_256",
)

# guided-diffusion's class-conditional 512x512 model (512x512_diffusion.pt); DiffusionCLIP calls it with no label.
IMAGENET_512 = ADMConfig(
    image_size=512,
    num_channels=256,
    num_res_blocks=2,
    channel_mult=(0.5, 1, 1, 2, 2, 4, 4),
    attention_resolutions="32,16,8",
    num_heads=4,
    num_head_channels=64,
    learn_sigma=True,
    class_cond=True,
    num_classes=1000,
    use_scale_shift_norm=True,
    resblock_updown=True,
    use_new_attention_order=False,
    name="imagenet_512",
)


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [cos(t·f_i), sin(t·f_i)], f_i = max_period^(−i/half), in float32."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    )
    args = timesteps.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class GroupNorm32(nn.GroupNorm):
    """GroupNorm(32, C) computed in at least float32 (half inputs are upcast), output in the input dtype."""

    def __init__(self, channels: int) -> None:
        super().__init__(32, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dt = torch.promote_types(x.dtype, torch.float32)
        with torch.autocast(device_type=x.device.type, enabled=False):
            y = F.group_norm(x.to(dt), self.num_groups, self.weight.to(dt), self.bias.to(dt), self.eps)
        return y.to(x.dtype)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class Upsample(nn.Module):
    """Nearest ×2, then an optional 3×3 conv (key ``conv``)."""

    def __init__(self, channels: int, use_conv: bool, out_channels: Optional[int] = None) -> None:
        super().__init__()
        self.use_conv = use_conv
        if use_conv:
            self.conv = nn.Conv2d(channels, out_channels or channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class Downsample(nn.Module):
    """Strided 3×3 conv (key ``op``) or 2×2 average pooling."""

    def __init__(self, channels: int, use_conv: bool, out_channels: Optional[int] = None) -> None:
        super().__init__()
        if use_conv:
            self.op = nn.Conv2d(channels, out_channels or channels, 3, stride=2, padding=1)
        else:
            self.op = nn.AvgPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class ResBlock(nn.Module):
    """Residual block conditioned on the embedding; optionally resamples (``up``/``down``) inside."""

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        out_channels: Optional[int] = None,
        use_scale_shift_norm: bool = True,
        up: bool = False,
        down: bool = False,
    ) -> None:
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(
            GroupNorm32(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False), Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels)
        )
        self.out_layers = nn.Sequential(
            GroupNorm32(out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            _zero(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        self.skip_connection = (
            nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.updown:
            h = self.in_layers[1](self.in_layers[0](x))
            h = self.in_layers[2](self.h_upd(h))
            x = self.x_upd(x)
        else:
            h = self.in_layers(x)
        e = self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        if self.use_scale_shift_norm:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            for layer in self.out_layers[1:]:
                h = layer(h)
        else:
            h = self.out_layers(h + e)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over all positions, with one 1×1 Conv1d ``qkv`` projection.

    Legacy order (the released checkpoints): qkv (B, 3C, T) is viewed as (B·heads, 3·ch, T) and split
    into q, k, v, i.e. channels are grouped per head as [q_h k_h v_h]. New order: q, k, v are the three
    C-channel thirds, each then split into heads.
    """

    def __init__(
        self,
        channels: int,
        num_heads: int = 1,
        num_head_channels: int = -1,
        use_new_attention_order: bool = False,
    ) -> None:
        super().__init__()
        if num_head_channels > 0:
            if channels % num_head_channels:
                raise ValueError(
                    f"channels {channels} not divisible by num_head_channels {num_head_channels}"
                )
            num_heads = channels // num_head_channels
        if channels % num_heads:
            raise ValueError(f"channels {channels} not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.use_new_attention_order = use_new_attention_order
        self.norm = GroupNorm32(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = _zero(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor, emb: Optional[torch.Tensor] = None) -> torch.Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(x))
        t = qkv.shape[-1]
        heads, ch = self.num_heads, c // self.num_heads
        if self.use_new_attention_order:
            q, k, v = (z.reshape(b * heads, ch, t) for z in qkv.chunk(3, dim=1))
        else:
            q, k, v = qkv.reshape(b * heads, 3 * ch, t).split(ch, dim=1)
        s = ch**-0.25  # split the 1/√ch between q and k, as the original does, for half-precision range
        w = torch.einsum("bct,bcs->bts", q * s, k * s)
        w = torch.softmax(w.float(), dim=-1).to(w.dtype)
        a = torch.einsum("bts,bcs->bct", w, v).reshape(b, c, t)
        return (x + self.proj_out(a)).reshape(b, c, *spatial)


class TimestepEmbedSequential(nn.Sequential):
    """A Sequential that hands the embedding to the ResBlocks among its children."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class ADMUNet(nn.Module):
    """The guided-diffusion UNet. ``forward(x, timesteps, y=None)`` returns (B, out_channels, H, W);
    a class-conditional one runs unconditioned when y is None."""

    def __init__(self, config: ADMConfig) -> None:
        super().__init__()
        self.config = config
        mc = config.num_channels
        mult = config.resolved_channel_mult
        attn_ds = set(config.attention_downsample_rates)
        emb_dim = 4 * mc
        self.model_channels = mc
        self.num_classes = config.num_classes if config.class_cond else None
        self.gradient_checkpointing = False

        def res(cin: int, cout: int, **kw) -> ResBlock:
            return ResBlock(cin, emb_dim, config.dropout, cout, config.use_scale_shift_norm, **kw)

        def attn(ch: int, heads: int) -> AttentionBlock:
            return AttentionBlock(ch, heads, config.num_head_channels, config.use_new_attention_order)

        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if self.num_classes is not None:
            # Embedding's own init (normal_) on the meta device pulls in torch._refs (~5 s): skip it there.
            w = torch.empty(self.num_classes, emb_dim)
            if w.device.type != "meta":
                nn.init.normal_(w)
            self.label_emb = nn.Embedding(self.num_classes, emb_dim, _weight=w)

        ch = input_ch = int(mult[0] * mc)
        self.input_blocks = nn.ModuleList(
            [TimestepEmbedSequential(nn.Conv2d(config.in_channels, ch, 3, padding=1))]
        )
        skip_chans = [ch]
        ds = 1
        for level, m in enumerate(mult):
            for _ in range(config.num_res_blocks):
                layers: list[nn.Module] = [res(ch, int(m * mc))]
                ch = int(m * mc)
                if ds in attn_ds:
                    layers.append(attn(ch, config.num_heads))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_chans.append(ch)
            if level != len(mult) - 1:
                down = (
                    res(ch, ch, down=True) if config.resblock_updown else Downsample(ch, config.conv_resample)
                )
                self.input_blocks.append(TimestepEmbedSequential(down))
                skip_chans.append(ch)
                ds *= 2

        self.middle_block = TimestepEmbedSequential(res(ch, ch), attn(ch, config.num_heads), res(ch, ch))

        heads_up = config.num_heads_upsample if config.num_heads_upsample > 0 else config.num_heads
        self.output_blocks = nn.ModuleList([])
        for level, m in reversed(list(enumerate(mult))):
            for i in range(config.num_res_blocks + 1):
                layers = [res(ch + skip_chans.pop(), int(m * mc))]
                ch = int(m * mc)
                if ds in attn_ds:
                    layers.append(attn(ch, heads_up))
                if level and i == config.num_res_blocks:
                    layers.append(
                        res(ch, ch, up=True) if config.resblock_updown else Upsample(ch, config.conv_resample)
                    )
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(
            GroupNorm32(ch), nn.SiLU(), _zero(nn.Conv2d(input_ch, config.out_channels, 3, padding=1))
        )

    def enable_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each block's activations in backward (while training with grad enabled)."""
        self.gradient_checkpointing = enabled

    def _run(self, block: nn.Module, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(block, h, emb, use_reentrant=False)
        return block(h, emb)

    def forward(
        self, x: torch.Tensor, timesteps: Union[torch.Tensor, int, float], y: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        if not torch.is_tensor(timesteps):
            timesteps = torch.tensor([timesteps], device=x.device)
        timesteps = timesteps.to(x.device).reshape(-1)
        if timesteps.numel() == 1 and x.shape[0] != 1:
            timesteps = timesteps.expand(x.shape[0])
        w = self.time_embed[0].weight
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels).to(w.dtype))
        # No label on a class-conditional model: label_emb is skipped, as DiffusionCLIP runs ImageNet-512
        # (its copy of guided-diffusion's forward has the label lines commented out), so its results reproduce.
        if y is not None:
            if self.num_classes is None:
                raise ValueError("this ADM model is unconditional: y must be None")
            y = torch.as_tensor(y, device=x.device).reshape(-1).long()
            if y.numel() == 1 and x.shape[0] != 1:
                y = y.expand(x.shape[0])
            emb = emb + self.label_emb(y).to(emb.dtype)

        h = x.to(self.input_blocks[0][0].weight.dtype)
        skips = []
        for block in self.input_blocks:
            h = self._run(block, h, emb)
            skips.append(h)
        h = self._run(self.middle_block, h, emb)
        for block in self.output_blocks:
            h = self._run(block, torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h).to(x.dtype)


class ClassConditioned(nn.Module):
    """A class-conditional ADM with a fixed label: ``forward(x, t)`` calls ``model(x, t, y)``.

    For an explicit label (a base whose config sets "class_label"): DiffusionCLIP itself runs ImageNet-512
    with none. Its state_dict keys carry a ``model.`` prefix; save/load the inner model's instead.
    """

    def __init__(self, model: ADMUNet, y: Union[int, torch.Tensor]) -> None:
        super().__init__()
        if getattr(model, "num_classes", None) is None:
            raise ValueError("ClassConditioned needs a class-conditional model")
        label = torch.as_tensor(y).reshape(-1).long()
        if ((label < 0) | (label >= model.num_classes)).any():
            raise BadInput(f"class label {y} out of range [0, {model.num_classes})")
        self.model = model
        self.register_buffer("y", label, persistent=False)

    def forward(self, x: torch.Tensor, timesteps: Union[torch.Tensor, int, float]) -> torch.Tensor:
        return self.model(x, timesteps, self.y.to(x.device))

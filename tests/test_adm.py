"""ADM UNet: original key layout of the real configs and a reference forward (files: test_adm_checkpoint).

The reference forward below is a plain functional re-statement of the guided-diffusion math (explicit
loops over blocks and heads, explicit GroupNorm and softmax(q·k/√ch)) that reads the module's weights
by name; it shares no code with ``dclip_desktop.core.adm``.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dclip_desktop.core.adm import AFHQ_DOG_256, IMAGENET_512, ADMConfig, ADMUNet, ClassConditioned
from dclip_desktop.core.mixing import ModelDenoiser


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: intra-op threads only add barrier waits (seconds per forward on a busy box)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# --------------------------------------------------------------------------------------------------
# Full-size configs, built on the meta device: key names and shapes of the released checkpoints.

RES = r"(in_layers\.(0|2)|emb_layers\.1|out_layers\.(0|3)|skip_connection)\.(weight|bias)"
ATT = r"(norm|qkv|proj_out)\.(weight|bias)"
KEY_PATTERNS = [
    r"time_embed\.(0|2)\.(weight|bias)",
    r"label_emb\.weight",
    r"input_blocks\.0\.0\.(weight|bias)",
    rf"input_blocks\.\d+\.0\.{RES}",
    rf"input_blocks\.\d+\.1\.{ATT}",
    r"input_blocks\.\d+\.0\.op\.(weight|bias)",
    rf"middle_block\.(0|2)\.{RES}",
    rf"middle_block\.1\.{ATT}",
    rf"output_blocks\.\d+\.0\.{RES}",
    rf"output_blocks\.\d+\.1\.({ATT}|{RES})",
    rf"output_blocks\.\d+\.2\.{RES}",
    r"out\.(0|2)\.(weight|bias)",
]


def _meta_state(cfg: ADMConfig) -> tuple[dict[str, tuple[int, ...]], int]:
    with torch.device("meta"):
        model = ADMUNet(cfg)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return shapes, sum(p.numel() for p in model.parameters())


def _blocks_with(shapes, word: str) -> set[str]:
    return {k.split(f".{word}.")[0] for k in shapes if f".{word}." in k}


def _check_patterns(shapes) -> None:
    for k in shapes:
        assert any(re.fullmatch(p, k) for p in KEY_PATTERNS), f"unexpected key name {k}"


def test_afhq_dog_layout():
    shapes, n = _meta_state(AFHQ_DOG_256)
    _check_patterns(shapes)
    assert n == 93_563_910 and len(shapes) == 362
    assert "label_emb.weight" not in shapes
    # 1 res block per level, 6 levels: 1 + 6 + 5 downsamplers input blocks; 6 × 2 output blocks.
    assert max(int(k.split(".")[1]) for k in shapes if k.startswith("input_blocks")) == 11
    assert max(int(k.split(".")[1]) for k in shapes if k.startswith("output_blocks")) == 11
    assert _blocks_with(shapes, "qkv") == {
        "input_blocks.9.1",
        "middle_block.1",
        "output_blocks.2.1",
        "output_blocks.3.1",
    }
    assert not any(".op." in k for k in shapes)  # resblock_updown: no conv resamplers
    exact = {
        "time_embed.0.weight": (512, 128),
        "time_embed.2.weight": (512, 512),
        "input_blocks.0.0.weight": (128, 3, 3, 3),
        "input_blocks.2.0.in_layers.2.weight": (128, 128, 3, 3),  # the down ResBlock
        "input_blocks.5.0.skip_connection.weight": (256, 128, 1, 1),
        "input_blocks.9.0.emb_layers.1.weight": (1024, 512),
        "input_blocks.9.1.qkv.weight": (1536, 512, 1),
        "input_blocks.9.1.proj_out.weight": (512, 512, 1),
        "middle_block.1.norm.weight": (512,),
        "output_blocks.0.0.in_layers.0.weight": (1024,),
        "output_blocks.0.0.skip_connection.weight": (512, 1024, 1, 1),
        "output_blocks.3.2.out_layers.3.weight": (512, 512, 3, 3),  # the up ResBlock after attention
        "output_blocks.11.0.skip_connection.weight": (128, 256, 1, 1),
        "out.0.weight": (128,),
        "out.2.weight": (6, 128, 3, 3),
    }
    for k, s in exact.items():
        assert shapes[k] == s, k


def test_imagenet_512_layout():
    shapes, n = _meta_state(IMAGENET_512)
    _check_patterns(shapes)
    assert n == 558_997_638  # guided-diffusion's 512 model: ~559 M
    assert max(int(k.split(".")[1]) for k in shapes if k.startswith("input_blocks")) == 20
    assert max(int(k.split(".")[1]) for k in shapes if k.startswith("output_blocks")) == 20
    assert _blocks_with(shapes, "qkv") == (
        {f"input_blocks.{i}.1" for i in (13, 14, 16, 17, 19, 20)}
        | {"middle_block.1"}
        | {f"output_blocks.{i}.1" for i in range(9)}
    )
    exact = {
        "label_emb.weight": (1000, 1024),
        "time_embed.0.weight": (1024, 256),
        "input_blocks.0.0.weight": (128, 3, 3, 3),  # channel_mult 0.5 × 256
        "input_blocks.4.0.skip_connection.weight": (256, 128, 1, 1),
        "input_blocks.13.1.qkv.weight": (1536, 512, 1),
        "input_blocks.19.1.qkv.weight": (3072, 1024, 1),
        "middle_block.1.qkv.weight": (3072, 1024, 1),
        "output_blocks.0.0.in_layers.0.weight": (2048,),
        "output_blocks.2.2.emb_layers.1.weight": (2048, 1024),  # up ResBlock after attention
        "output_blocks.20.0.in_layers.0.weight": (256,),
        "output_blocks.20.0.skip_connection.weight": (128, 256, 1, 1),
        "out.2.weight": (6, 128, 3, 3),
    }
    for k, s in exact.items():
        assert shapes[k] == s, k


# --------------------------------------------------------------------------------------------------
# Small configs of the same family.

SMALL = {
    "updown_legacy_uncond": ADMConfig(
        image_size=16,
        num_channels=32,
        num_res_blocks=1,
        channel_mult=(1, 2),
        attention_resolutions="8",
        num_heads=2,
        resblock_updown=True,
        class_cond=False,
    ),
    "conv_newattn_cond": ADMConfig(
        image_size=16,
        num_channels=32,
        num_res_blocks=2,
        channel_mult=(1, 2),
        attention_resolutions="8",
        num_head_channels=16,
        resblock_updown=False,
        use_new_attention_order=True,
        class_cond=True,
        num_classes=10,
    ),
    "updown_legacy_cond_noscaleshift": ADMConfig(
        image_size=16,
        num_channels=32,
        num_res_blocks=1,
        channel_mult=(1, 2, 2),
        attention_resolutions="8,4",
        num_heads=2,
        num_heads_upsample=4,
        resblock_updown=True,
        use_scale_shift_norm=False,
        class_cond=True,
        num_classes=5,
    ),
    "half_mult_conv_legacy": ADMConfig(
        image_size=16,
        num_channels=64,
        num_res_blocks=1,
        channel_mult=(0.5, 1, 2),
        attention_resolutions="4",
        num_head_channels=32,
        resblock_updown=False,
        class_cond=False,
    ),
}


def _randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-zero everywhere (the zero-initialised output convs would hide bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))  # 1/√fan_in
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
        for m in model.modules():
            if isinstance(m, nn.GroupNorm):
                m.weight.add_(1.0)
            if isinstance(m, nn.Embedding):
                m.weight.normal_(generator=g)
    return model


def _gn(x, w, b, groups=32, eps=1e-5):
    shape = x.shape
    g = x.reshape(shape[0], groups, -1)
    mean = g.mean(-1, keepdim=True)
    var = ((g - mean) ** 2).mean(-1, keepdim=True)
    y = ((g - mean) / torch.sqrt(var + eps)).reshape(shape)
    bshape = (1, -1) + (1,) * (len(shape) - 2)
    return y * w.reshape(bshape) + b.reshape(bshape)


def _silu(x):
    return x * torch.sigmoid(x)


def _conv(P, name, x, stride=1):
    w = P[f"{name}.weight"]
    return F.conv2d(x, w, P[f"{name}.bias"], stride=stride, padding=w.shape[-1] // 2)


def _down(x):  # 2×2 mean
    b, c, h, w = x.shape
    return x.reshape(b, c, h // 2, 2, w // 2, 2).mean(dim=(3, 5))


def _up(x):  # nearest ×2
    return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


def _ref_res(P, pre, x, emb, cfg, resample=None):
    h = _silu(_gn(x, P[f"{pre}.in_layers.0.weight"], P[f"{pre}.in_layers.0.bias"]))
    if resample == "down":
        h, x = _down(h), _down(x)
    elif resample == "up":
        h, x = _up(h), _up(x)
    h = _conv(P, f"{pre}.in_layers.2", h)
    e = _silu(emb) @ P[f"{pre}.emb_layers.1.weight"].T + P[f"{pre}.emb_layers.1.bias"]
    e = e[:, :, None, None]
    gw, gb = P[f"{pre}.out_layers.0.weight"], P[f"{pre}.out_layers.0.bias"]
    if cfg.use_scale_shift_norm:
        n = h.shape[1]
        h = _gn(h, gw, gb) * (1 + e[:, :n]) + e[:, n:]
    else:
        h = _gn(h + e, gw, gb)
    h = _conv(P, f"{pre}.out_layers.3", _silu(h))
    skip = _conv(P, f"{pre}.skip_connection", x) if f"{pre}.skip_connection.weight" in P else x
    return skip + h


def _ref_attn(P, pre, x, cfg, upsample_path=False):
    b, c, hh, ww = x.shape
    t = hh * ww
    if cfg.num_head_channels > 0:
        heads = c // cfg.num_head_channels
    else:
        heads = cfg.num_heads_upsample if (upsample_path and cfg.num_heads_upsample > 0) else cfg.num_heads
    ch = c // heads
    xs = x.reshape(b, c, t)
    n = _gn(xs, P[f"{pre}.norm.weight"], P[f"{pre}.norm.bias"])
    qkv = (
        torch.einsum("oc,bct->bot", P[f"{pre}.qkv.weight"][:, :, 0], n) + P[f"{pre}.qkv.bias"][None, :, None]
    )
    outs = []
    for hd in range(heads):
        if cfg.use_new_attention_order:  # [q_all | k_all | v_all], each split into heads
            q = qkv[:, hd * ch : (hd + 1) * ch]
            k = qkv[:, c + hd * ch : c + (hd + 1) * ch]
            v = qkv[:, 2 * c + hd * ch : 2 * c + (hd + 1) * ch]
        else:  # legacy: per head [q_h | k_h | v_h]
            base = hd * 3 * ch
            q, k, v = (
                qkv[:, base : base + ch],
                qkv[:, base + ch : base + 2 * ch],
                qkv[:, base + 2 * ch : base + 3 * ch],
            )
        att = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(ch), dim=-1)  # (b, t, s)
        outs.append(v @ att.transpose(1, 2))  # (b, ch, t)
    a = torch.cat(outs, dim=1)
    proj = (
        torch.einsum("oc,bct->bot", P[f"{pre}.proj_out.weight"][:, :, 0], a)
        + P[f"{pre}.proj_out.bias"][None, :, None]
    )
    return (xs + proj).reshape(b, c, hh, ww)


def reference_forward(model: ADMUNet, cfg: ADMConfig, x, t, y=None):
    P = dict(model.named_parameters())
    mc, mult, nrb = cfg.num_channels, list(cfg.channel_mult), cfg.num_res_blocks
    attn_rates = {cfg.image_size // int(r) for r in cfg.attention_resolutions.split(",")}

    half = mc // 2
    freqs = torch.tensor([10000.0 ** (-i / half) for i in range(half)], dtype=x.dtype)
    args = t.to(x.dtype)[:, None] * freqs[None]
    temb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    emb = _silu(temb @ P["time_embed.0.weight"].T + P["time_embed.0.bias"])
    emb = emb @ P["time_embed.2.weight"].T + P["time_embed.2.bias"]
    if cfg.class_cond:
        emb = emb + P["label_emb.weight"][y]

    h = _conv(P, "input_blocks.0.0", x)
    skips, i, ds = [h], 1, 1
    for level in range(len(mult)):
        for _ in range(nrb):
            h = _ref_res(P, f"input_blocks.{i}.0", h, emb, cfg)
            if ds in attn_rates:
                h = _ref_attn(P, f"input_blocks.{i}.1", h, cfg)
            skips.append(h)
            i += 1
        if level < len(mult) - 1:
            if cfg.resblock_updown:
                h = _ref_res(P, f"input_blocks.{i}.0", h, emb, cfg, resample="down")
            else:
                h = _conv(P, f"input_blocks.{i}.0.op", h, stride=2)
            skips.append(h)
            i += 1
            ds *= 2

    h = _ref_res(P, "middle_block.0", h, emb, cfg)
    h = _ref_attn(P, "middle_block.1", h, cfg)
    h = _ref_res(P, "middle_block.2", h, emb, cfg)

    i = 0
    for level in reversed(range(len(mult))):
        for r in range(nrb + 1):
            h = _ref_res(P, f"output_blocks.{i}.0", torch.cat([h, skips.pop()], dim=1), emb, cfg)
            j = 1
            if ds in attn_rates:
                h = _ref_attn(P, f"output_blocks.{i}.1", h, cfg, upsample_path=True)
                j = 2
            if level > 0 and r == nrb:
                if cfg.resblock_updown:
                    h = _ref_res(P, f"output_blocks.{i}.{j}", h, emb, cfg, resample="up")
                else:
                    h = _conv(P, f"output_blocks.{i}.{j}.conv", _up(h))
                ds //= 2
            i += 1
    assert not skips
    h = _silu(_gn(h, P["out.0.weight"], P["out.0.bias"]))
    return _conv(P, "out.2", h)


def _inputs(cfg, dtype, batch=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, cfg.image_size, cfg.image_size, generator=g, dtype=dtype)
    t = torch.tensor([3, 517][:batch])
    y = torch.tensor([1, cfg.num_classes - 1][:batch]) if cfg.class_cond else None
    return x, t, y


@pytest.mark.parametrize("name", list(SMALL))
def test_matches_reference_forward(name):
    cfg = SMALL[name]
    model = _randomize(ADMUNet(cfg)).double().eval()
    x, t, y = _inputs(cfg, torch.float64)
    with torch.no_grad():
        out = model(x, t, y)
        ref = reference_forward(model, cfg, x, t, y)
    assert out.shape == (2, 6, cfg.image_size, cfg.image_size)
    assert ref.abs().max() > 0.1  # not trivially zero
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_matches_reference_forward_float32():
    cfg = SMALL["conv_newattn_cond"]
    model = _randomize(ADMUNet(cfg)).eval()
    x, t, y = _inputs(cfg, torch.float32)
    with torch.no_grad():
        out = model(x, t, y)
        ref = reference_forward(model.double(), cfg, x.double(), t, y).float()
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def test_attention_orders_differ():
    """Legacy and new qkv layouts read the same weights differently (so the flag is not a no-op)."""
    a = SMALL["updown_legacy_uncond"]
    b = ADMConfig(**{**a.__dict__, "use_new_attention_order": True})
    ma = _randomize(ADMUNet(a)).eval()
    mb = ADMUNet(b).eval()
    mb.load_state_dict(ma.state_dict())
    x, t, _ = _inputs(a, torch.float32)
    with torch.no_grad():
        assert not torch.allclose(ma(x, t), mb(x, t), atol=1e-4)


# --------------------------------------------------------------------------------------------------
# Learned sigma, class conditioning, ModelDenoiser.


def test_learned_sigma_and_denoiser():
    cfg = SMALL["updown_legacy_uncond"]
    model = _randomize(ADMUNet(cfg)).eval()
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        full = model(x, torch.tensor([10]))
        eps = ModelDenoiser(model)(x, 10)
    assert full.shape[1] == 6 and eps.shape == (1, 3, 16, 16)
    torch.testing.assert_close(eps, full[:, :3])

    plain = ADMUNet(ADMConfig(**{**cfg.__dict__, "learn_sigma": False}))
    assert plain(x, torch.tensor([10])).shape[1] == 3


def test_class_conditioning():
    cfg = SMALL["conv_newattn_cond"]
    model = _randomize(ADMUNet(cfg)).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():  # no label: label_emb is skipped, as DiffusionCLIP runs ImageNet-512
        bare = ADMUNet(ADMConfig(**{**cfg.__dict__, "class_cond": False})).eval()
        bare.load_state_dict({k: v for k, v in model.state_dict().items() if k != "label_emb.weight"})
        assert torch.equal(model(x, torch.tensor([5, 5])), bare(x, torch.tensor([5, 5])))
        eps = ModelDenoiser(ClassConditioned(model, 7))(x, 5)
        direct = model(x, torch.tensor([5, 5]), torch.tensor([7, 7]))
        other = model(x, torch.tensor([5, 5]), torch.tensor([3, 3]))
    torch.testing.assert_close(eps, direct[:, :3])
    assert not torch.allclose(direct, other)
    with pytest.raises(ValueError, match="range"):
        ClassConditioned(model, 10)
    uncond = ADMUNet(SMALL["updown_legacy_uncond"])
    with pytest.raises(ValueError):
        ClassConditioned(uncond, 0)
    with pytest.raises(ValueError, match="unconditional"):
        uncond(x, torch.tensor([5, 5]), torch.tensor([1, 1]))


def test_autocast_and_checkpointing():
    cfg = SMALL["updown_legacy_uncond"]
    model = _randomize(ADMUNet(cfg))
    x, t, _ = _inputs(cfg, torch.float32)
    with torch.no_grad():
        ref = model(x, t)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x, t)
    assert low.dtype == torch.float32 and torch.isfinite(low).all()
    assert (low - ref).abs().max() < 0.1 * ref.abs().max()

    model.train()
    x1 = x.clone().requires_grad_(True)
    model(x1, t).square().mean().backward()
    g1 = x1.grad.clone()
    model.enable_gradient_checkpointing()
    x2 = x.clone().requires_grad_(True)
    model(x2, t).square().mean().backward()
    torch.testing.assert_close(x2.grad, g1)

"""Original DDPM layout ↔ diffusers UNet2DModel: exact round trips, the DDPM-256 key set, safe loading."""

from __future__ import annotations

import builtins

import pytest
import torch
import torch.nn.functional as F

from dclip_desktop.core import checkpoint, convert
from dclip_desktop.zoo import registry

# Same family as the DDPM-256 bases (original-DDPM time embedding and padding), tiny: 3 levels with
# distinct widths (a wrong up-block order cannot load), attention at the middle level.
TINY = dict(
    sample_size=16,
    in_channels=3,
    out_channels=3,
    block_out_channels=(16, 24, 32),
    layers_per_block=2,
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    downsample_padding=0,
    freq_shift=1,
    flip_sin_to_cos=False,
    norm_eps=1e-6,
    norm_num_groups=8,
    attention_head_dim=None,
)


def unet(config, seed=0):
    from diffusers.models.unets.unet_2d import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(**config).eval()


def test_tiny_round_trip_through_a_file_gives_identical_outputs(tmp_path):
    a = unet(TINY, seed=1)
    original = convert.to_original_state_dict(a.state_dict(), TINY)
    # the original layout, as the DDPM code names it
    assert original["temb.dense.0.weight"].shape == a.time_embedding.linear_1.weight.shape
    assert original["down.1.attn.1.q.weight"].shape == (24, 24, 1, 1)
    assert original["mid.attn_1.proj_out.weight"].shape == (32, 32, 1, 1)
    assert "down.1.block.0.nin_shortcut.weight" in original  # 16 → 24 channels
    assert "down.2.downsample.conv.weight" not in original and "down.1.downsample.conv.weight" in original
    assert "up.0.upsample.conv.weight" not in original and "up.2.upsample.conv.weight" in original
    assert (
        "up.1.attn.2.v.weight" in original and "up.0.block.2.conv2.weight" in original
    )  # num_res_blocks + 1
    assert "up.0.attn.0.q.weight" not in original
    assert original["up.0.block.0.conv2.weight"].shape[0] == 16  # level 0 = full resolution, narrowest

    # saved the way the official fine-tuned .pth files are: DataParallel prefix, wrapped
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in original.items()}}, path)
    loaded = checkpoint.read_state_dict(path)
    assert convert.is_original_layout(loaded) and not any(k.startswith("module.") for k in loaded)

    b = unet(TINY, seed=2)
    b.load_state_dict(
        convert.convert_original_state_dict(loaded), strict=True
    )  # structure inferred from keys
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([10, 700])
    with torch.no_grad():
        assert torch.equal(a(x, t).sample, b(x, t).sample)
    # explicit config gives the same
    again = convert.convert_original_state_dict(loaded, TINY)
    assert all(torch.equal(again[k], v) for k, v in a.state_dict().items())


def test_attention_1x1_conv_equals_linear():
    w, bias = torch.randn(8, 8, 1, 1), torch.randn(8)
    state = convert.convert_original_state_dict(
        {"mid.attn_1.q.weight": w, "mid.attn_1.q.bias": bias, "down.0.block.0.conv1.weight": torch.zeros(1)},
        TINY,
    )
    x = torch.randn(1, 8, 3, 3)
    conv = F.conv2d(x, w, bias)
    lin = F.linear(
        x.permute(0, 2, 3, 1),
        state["mid_block.attentions.0.to_q.weight"],
        state["mid_block.attentions.0.to_q.bias"],
    ).permute(0, 3, 1, 2)
    assert torch.allclose(conv, lin, atol=1e-6)


def test_full_ddpm256_keys_and_shapes_load_strictly():
    from diffusers.models.unets.unet_2d import UNet2DModel

    with torch.device("meta"):
        model = UNet2DModel(**registry.DDPM256_CONFIG)
    original = convert.to_original_state_dict(model.state_dict(), registry.DDPM256_CONFIG)
    assert len(original) == len(model.state_dict()) == 450
    assert original["up.4.attn.2.proj_out.weight"].shape == (512, 512, 1, 1)  # 16² level, 3 resnets up
    assert original["down.4.attn.1.k.weight"].shape == (512, 512, 1, 1)
    assert not any(k.startswith(("down.3.attn", "up.5.attn")) for k in original)
    assert "down.5.downsample.conv.weight" not in original and "up.5.upsample.conv.weight" in original
    assert original["conv_in.weight"].shape == (128, 3, 3, 3) and original["norm_out.weight"].shape == (128,)
    with torch.device("meta"):
        fresh = UNet2DModel(**registry.DDPM256_CONFIG)
    fresh.load_state_dict(
        convert.convert_original_state_dict(original), strict=True
    )  # checks names and shapes


def test_unknown_keys_are_reported():
    with pytest.raises(convert.CheckpointError, match="not in the DDPM family"):
        convert.convert_original_state_dict(
            {"down.0.block.0.conv1.weight": torch.zeros(1), "foo.bar": torch.zeros(1)}
        )
    with pytest.raises(convert.CheckpointError, match="not an original-layout"):
        convert.convert_original_state_dict({"conv_in.weight": torch.zeros(1)})


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (builtins.open, (str(self.marker), "w"))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"conv_in.weight": torch.zeros(2)}, "payload": Evil(marker)}, path)
    with pytest.raises(convert.CheckpointError, match="refusing to load evil.pth"):
        checkpoint.read_state_dict(path)
    assert not marker.exists()
    # the payload is live: an unsafe load would have run it
    live_marker, live_path = tmp_path / "live", tmp_path / "live.pth"
    torch.save({"payload": Evil(live_marker)}, live_path)
    torch.load(live_path, weights_only=False)
    assert live_marker.exists()


def test_corrupt_or_missing_checkpoint(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(convert.CheckpointError):
        checkpoint.read_state_dict(bad)
    with pytest.raises(FileNotFoundError):
        checkpoint.read_state_dict(tmp_path / "missing.pth")


def test_original_layout_is_told_by_its_keys_with_or_without_prefixes():
    t = torch.zeros(1)
    for key in ("temb.dense.0.weight", "down.0.block.0.conv1.weight", "down.3.block.1.norm1.bias",
                "module.temb.dense.1.bias", "module.module.down.1.block.0.conv2.weight",
                "_orig_mod.module.down.0.block.0.conv1.weight"):
        assert convert.is_original_layout({"conv_in.weight": t, key: t}), key
    diffusers = unet(TINY).state_dict()
    assert not convert.is_original_layout(diffusers)
    assert not convert.is_original_layout({f"module.{k}": v for k, v in diffusers.items()})
    adm = {"input_blocks.0.0.weight": t, "time_embed.0.weight": t, "middle_block.1.qkv.weight": t}
    assert not convert.is_original_layout(adm)
    assert not convert.is_original_layout({"x.down.0.block.0.conv1.weight": t})  # only as a prefix

"""Fast checks of the demo world (scene generator, measuring helpers) and the committed demo weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dclip_desktop.demo import world
from dclip_desktop.demo.tiny_clip import demo_dir


def test_sample_spec_is_deterministic_and_varied():
    assert world.sample_spec(7) == world.sample_spec(7)
    specs = [world.sample_spec(s) for s in range(300)]
    assert {s.shape for s in specs} == set(world.SHAPES)
    assert {s.color for s in specs} == set(world.COLORS)
    assert {s.background for s in specs} == set(world.BACKGROUNDS)
    assert all(s.rotation == 0.0 for s in specs if s.shape != "triangle")


def test_render_is_deterministic_and_shaped():
    spec = world.sample_spec(3)
    a, ma = world.render(spec)
    b, mb = world.render(spec)
    assert a.dtype == np.uint8 and a.shape == (32, 32, 3) and ma.shape == (32, 32) and ma.dtype == bool
    assert np.array_equal(a, b) and np.array_equal(ma, mb)
    assert world.render(spec, size=64)[0].shape == (64, 64, 3)


def test_caption():
    spec = world.SceneSpec("circle", "red", "white", 0.5, 0.5, 0.25)
    assert world.caption(spec) == "a red circle on a white background"
    assert "red" in world.caption_variants(spec)
    assert all("{}" in t for t in world.PROMPT_TEMPLATES)


def test_bad_spec_rejected():
    with pytest.raises(ValueError):
        world.SceneSpec("hexagon", "red", "white", 0.5, 0.5, 0.2)
    with pytest.raises(ValueError):
        world.sample_spec(0, color="purple")


def test_make_scenes_with_overrides():
    x, m, specs = world.make_scenes(range(10), color="red", shape="circle")
    assert x.shape == (10, 3, 32, 32) and x.dtype == torch.float32
    assert m.shape == (10, 32, 32) and m.dtype == torch.bool
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    assert all(s.color == "red" and s.shape == "circle" for s in specs)
    assert np.array_equal(world.to_uint8(x[0]), world.render(specs[0])[0])


def test_palette_is_well_separated():
    cols = list(world.ALL_COLORS.values())
    d = [np.linalg.norm(np.subtract(a, b)) for i, a in enumerate(cols) for b in cols[i + 1:]]
    assert min(d) > 100
    for name, rgb in world.ALL_COLORS.items():
        assert world.classify_color(rgb) == name


@pytest.mark.parametrize("shape", world.SHAPES)
def test_measuring_helpers_on_rendered_scenes(shape):
    ok_mask = ok_measured = ok_color = ok_bg = 0
    n = 200
    for seed in range(n):
        spec = world.sample_spec(seed, shape=shape)
        img, mask = world.render(spec)
        ok_mask += world.shape_of_mask(mask) == shape
        bg = world.background_of(img)
        ok_bg += bg == spec.background
        fg = world.foreground_mask(img, bg)
        ok_measured += world.shape_of_mask(fg) == shape
        ok_color += world.dominant_color(img, mask) == spec.color
    assert ok_mask >= 0.95 * n and ok_measured >= 0.95 * n
    assert ok_color == n and ok_bg == n


def test_foreground_mask_matches_render_mask():
    img, mask = world.render(world.sample_spec(11))
    fg = world.foreground_mask(img, world.background_of(img))
    assert (fg != mask).mean() < 0.03


def test_describe_tensor_input():
    x, _, specs = world.make_scenes([5])
    d = world.describe(x[0])
    assert d == {"background": specs[0].background, "color": specs[0].color, "shape": specs[0].shape}


def test_stroke_blob():
    a = world.stroke_blob(1, "blue", "white")
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, world.stroke_blob(1, "blue", "white"))
    assert not np.array_equal(a, world.stroke_blob(2, "blue", "white"))
    fg = world.foreground_mask(a, "white")
    assert 0.05 < fg.mean() < 0.6
    assert world.dominant_color(a, fg) == "blue" and world.background_of(a) == "white"


def test_demo_dir_env_override(tmp_path, monkeypatch):
    (tmp_path / "dclip-demo-tiny.json").write_text("{}")
    monkeypatch.setenv("DCLIP_DEMO_DIR", str(tmp_path))
    assert demo_dir() == tmp_path


def test_demo_dir_missing_is_clear(tmp_path, monkeypatch):
    import dclip_desktop.demo.tiny_clip as tc

    monkeypatch.setenv("DCLIP_DEMO_DIR", str(tmp_path))
    monkeypatch.setattr(tc, "__file__", str(tmp_path / "a" / "b" / "c.py"))
    with pytest.raises(FileNotFoundError, match="DCLIP_DEMO_DIR"):
        tc.demo_dir()


def test_load_demo_unet():
    from dclip_desktop.demo import load_demo_unet

    unet = load_demo_unet()
    assert not any(p.requires_grad for p in unet.parameters())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        eps = unet(x, torch.tensor([10, 500])).sample
    assert eps.shape == x.shape and torch.isfinite(eps).all()


def test_load_demo_clip():
    from dclip_desktop.demo import load_demo_clip

    model, tokenizer = load_demo_clip()
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    assert tuple(model.visual.image_size) == (32, 32)
    x, _, _ = world.make_scenes(range(4))
    with torch.no_grad():
        fi = model.encode_image(x)
        ft = model.encode_text(tokenizer(["a red circle on a white background", "a photo of a blue."]))
    assert fi.shape == (4, ft.shape[1]) and ft.shape[0] == 2
    assert torch.isfinite(fi).all() and torch.isfinite(ft).all()

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dclip_desktop.core.clip_loss import IMAGENET_TEMPLATES, DirectionalCLIPLoss, clip_preprocess

from .conftest import tiny_clip


def smooth_image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A smooth image in [-0.8, 0.8]: low-frequency sinusoids, so bicubic resampling never overshoots."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    chans = []
    for _ in range(3):
        a, b, p = (torch.rand(3, generator=g) * torch.tensor([2.0, 2.0, 6.28])).tolist()
        chans.append(0.8 * torch.sin(6.28 * a * xx + 6.28 * b * yy + p))
    return torch.stack(chans)[None]


def test_templates():
    assert len(IMAGENET_TEMPLATES) == 80
    assert len(set(IMAGENET_TEMPLATES)) == 80
    assert all(t.count("{}") == 1 for t in IMAGENET_TEMPLATES)
    assert "a photo of a {}." in IMAGENET_TEMPLATES


@pytest.mark.parametrize("hw", [(64, 48), (40, 72), (96, 128), (16, 16)])
def test_preprocess_matches_open_clip_pil_pipeline(hw):
    from open_clip.transform import image_transform

    x = smooth_image(*hw)
    ours = clip_preprocess(x, 16)
    assert ours.shape == (1, 3, 16, 16)
    pil = Image.fromarray(((x[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy())
    ref = image_transform(16, is_train=False)(pil)[None]  # PIL bicubic resize + crop + normalise
    diff = (ours - ref).abs()
    # One uint8 step is 1/255/0.26 ≈ 0.015 in normalised units; measured max ≤ 0.0142. Bilinear or
    # non-antialiased bicubic resizing misses by 0.03–0.09 on the downscaled cases.
    assert diff.max() < 0.02, diff.max()
    assert diff.mean() < 0.006, diff.mean()


def test_preprocess_tuple_size_and_gradient():
    x = smooth_image(48, 64).requires_grad_(True)
    out = clip_preprocess(x, (16, 16))
    assert out.shape == (1, 3, 16, 16)
    out.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # a pure crop plus normalisation when the image already has the right size
    x2 = smooth_image(16, 20)
    out2 = clip_preprocess(x2, 16)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    torch.testing.assert_close(out2, ((x2[..., 2:18] + 1) / 2 - mean) / std)


def _images(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 24, 24, generator=g) * 2 - 1


def test_gradients_reach_pixels_not_clip():
    model, tok = tiny_clip()
    loss_fn = DirectionalCLIPLoss(model, tok, "red circle", "blue circle")
    x0 = _images(3, 1)
    loss_fn.set_sources(x0)
    x_hat = (x0[[2, 0]] + 0.1 * torch.randn(2, 3, 24, 24)).requires_grad_(True)
    loss = loss_fn(x_hat, torch.tensor([2, 0]))
    assert loss.dtype == torch.float32 and loss.ndim == 0
    assert 0 <= float(loss.detach()) <= 2
    loss.backward()
    assert x_hat.grad is not None and x_hat.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in model.parameters())
    assert not model.training
    loss_fn.train()
    assert not model.training


def test_text_direction_encoded_once_per_pair():
    model, tok = tiny_clip(seed=3)
    before = DirectionalCLIPLoss.text_encodes
    a = DirectionalCLIPLoss(model, tok, "a square", "a triangle", loss_form="neglog")
    assert DirectionalCLIPLoss.text_encodes == before + 1
    a.set_sources(_images(2, 2))
    for _ in range(3):
        a(_images(2, 4), torch.tensor([0, 1]))
    b = DirectionalCLIPLoss(model, tok, "a square", "a triangle")
    assert DirectionalCLIPLoss.text_encodes == before + 1
    torch.testing.assert_close(a.direction(), b.direction())
    assert abs(float(a.direction().norm()) - 1) < 1e-5
    c = DirectionalCLIPLoss(model, tok, "a triangle", "a square")
    assert DirectionalCLIPLoss.text_encodes == before + 2
    torch.testing.assert_close(c.direction(), -a.direction())  # swapping the pair flips ΔT exactly
    other, _ = tiny_clip(seed=4)
    DirectionalCLIPLoss(other, tok, "a square", "a triangle")
    assert DirectionalCLIPLoss.text_encodes == before + 3  # another model encodes its own


def test_direction_matches_definition():
    model, tok = tiny_clip(seed=5)
    templates = ["a photo of a {}.", "a sketch of the {}."]
    loss_fn = DirectionalCLIPLoss(model, tok, "cat", "dog", templates=templates)
    with torch.no_grad():
        tgt = F.normalize(model.encode_text(tok([t.format("dog") for t in templates])), dim=-1)
        src = F.normalize(model.encode_text(tok([t.format("cat") for t in templates])), dim=-1)
    torch.testing.assert_close(loss_fn.direction(), F.normalize((tgt - src).mean(0), dim=-1))


def test_loss_forms_and_decrease_under_pixel_optimisation():
    model, tok = tiny_clip(seed=6)
    x0 = _images(2, 7)
    dir_loss = DirectionalCLIPLoss(model, tok, "day", "night")
    neglog = DirectionalCLIPLoss(model, tok, "day", "night", loss_form="neglog")
    dir_loss.set_sources(x0)
    neglog.set_sources(x0)
    idx = torch.tensor([0, 1])
    x_hat = (x0 + 0.05 * torch.randn_like(x0)).requires_grad_(True)
    with torch.no_grad():
        cos = dir_loss.cos(x_hat, idx)
        torch.testing.assert_close(dir_loss(x_hat, idx), (1 - cos).mean())
        torch.testing.assert_close(neglog(x_hat, idx), (-torch.log((1 + cos) / 2)).mean())
    opt = torch.optim.Adam([x_hat], lr=0.02)
    first = float(dir_loss(x_hat, idx).detach())
    for _ in range(15):
        opt.zero_grad()
        dir_loss(x_hat, idx).backward()
        opt.step()
    last = float(dir_loss(x_hat, idx).detach())
    assert last < first - 0.1, (first, last)


def test_runs_in_model_dtype_returns_float32():
    model, tok = tiny_clip(seed=8)
    model = model.to(torch.bfloat16)
    loss_fn = DirectionalCLIPLoss(model, tok, "summer", "winter")
    loss_fn.set_sources(_images(2, 9))
    x_hat = _images(2, 10).requires_grad_(True)
    loss = loss_fn(x_hat, torch.tensor([1, 0]))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert x_hat.grad.dtype == torch.float32 and x_hat.grad.abs().sum() > 0


def test_forward_needs_sources():
    model, tok = tiny_clip()
    loss_fn = DirectionalCLIPLoss(model, tok, "x", "y")
    with pytest.raises(RuntimeError):
        loss_fn(_images(1, 0), torch.tensor([0]))
    with pytest.raises(ValueError):
        DirectionalCLIPLoss(model, tok, "x", "y", loss_form="l2")
    assert np.isfinite(float(loss_fn.image_embed(_images(1, 0)).norm()))

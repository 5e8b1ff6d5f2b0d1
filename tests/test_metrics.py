import math

import numpy as np
import pytest
import torch

from dclip_desktop.core.clip_loss import DirectionalCLIPLoss
from dclip_desktop.core.metrics import id_similarity, mae, s_dir, ssim

from .conftest import tiny_clip


def test_mae_known_values():
    a = torch.zeros(2, 3, 8, 8)
    assert mae(a, a) == 0
    assert mae(a, a + 0.5) == pytest.approx(0.25)
    assert mae(-torch.ones(1, 3, 4, 4), torch.ones(1, 3, 4, 4)) == pytest.approx(1.0)
    b = a.clone()
    b[:, :, :4] = 1.0  # half the pixels differ by 1 → 0.5 in [0,1] units, halved again by the mean
    assert mae(a, b) == pytest.approx(0.25)


def _ssim_reference(a: np.ndarray, b: np.ndarray, sigma: float = 1.5) -> float:
    """SSIM of one 11×11 single-channel patch in [0,1], by explicit weighted sums (Wang et al. 2004)."""
    r = np.arange(11) - 5
    g = np.exp(-(r**2) / (2 * sigma**2))
    w = np.outer(g, g)
    w /= w.sum()
    mu_a, mu_b = (w * a).sum(), (w * b).sum()
    var_a, var_b = (w * (a - mu_a) ** 2).sum(), (w * (b - mu_b) ** 2).sum()
    cov = (w * (a - mu_a) * (b - mu_b)).sum()
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))


def test_ssim_identity_and_reference():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-9)
    noisy = (a + 0.2 * torch.randn(a.shape, generator=g)).clamp(-1, 1)
    noisier = (a + 0.6 * torch.randn(a.shape, generator=g)).clamp(-1, 1)
    s1, s2 = ssim(a, noisy), ssim(a, noisier)
    assert 1 > s1 > s2 > -1
    assert ssim(noisy, a) == pytest.approx(s1)
    # an 11×11 image has exactly one window: compare with the explicit formula per channel
    p, q = a[:1, :, :11, :11], noisy[:1, :, :11, :11]
    ref = np.mean(
        [
            _ssim_reference(((p[0, c] + 1) / 2).double().numpy(), ((q[0, c] + 1) / 2).double().numpy())
            for c in range(3)
        ]
    )
    assert ssim(p, q) == pytest.approx(ref, abs=1e-7)  # inputs are float32


def test_ssim_small_images():
    a = torch.rand(1, 3, 8, 8) * 2 - 1
    assert ssim(a, a) == pytest.approx(1.0)
    assert math.isfinite(ssim(a, -a)) and ssim(a, -a) < 0.5


def test_s_dir_sign_and_shared_direction():
    model, tok = tiny_clip(seed=11)
    g = torch.Generator().manual_seed(1)
    x_src = torch.rand(2, 3, 24, 24, generator=g) * 2 - 1
    loss_fn = DirectionalCLIPLoss(model, tok, "a red circle", "a blue circle")
    loss_fn.set_sources(x_src)
    idx = torch.arange(2)
    x_edit = (x_src + 0.05 * torch.randn(x_src.shape, generator=g)).requires_grad_(True)
    opt = torch.optim.Adam([x_edit], lr=0.02)
    for _ in range(15):  # push the images along ΔT
        opt.zero_grad()
        loss_fn(x_edit, idx).backward()
        opt.step()
    x_edit = x_edit.detach()
    before = DirectionalCLIPLoss.text_encodes
    score = s_dir(model, x_src, x_edit, "a red circle", "a blue circle", tokenizer=tok)
    assert DirectionalCLIPLoss.text_encodes == before  # reuses the cached ΔT
    assert score > 0.3
    with torch.no_grad():
        assert score == pytest.approx(float(loss_fn.cos(x_edit, idx).mean()), abs=1e-5)
    assert s_dir(model, x_edit, x_src, "a red circle", "a blue circle", tokenizer=tok) == pytest.approx(
        -score, abs=1e-5
    )
    assert s_dir(model, x_src, x_edit, "a blue circle", "a red circle", tokenizer=tok) == pytest.approx(
        -score, abs=1e-5
    )
    # default tokenizer: open_clip's BPE at the model's context length, same tokens as the fixture's
    assert s_dir(model, x_src, x_edit, "a red circle", "a blue circle", templates=["{}"]) == pytest.approx(
        s_dir(model, x_src, x_edit, "a red circle", "a blue circle", templates=["{}"], tokenizer=tok),
        abs=1e-6,
    )


def test_id_similarity():
    from facenet_pytorch import InceptionResnetV1

    from dclip_desktop.core.face_loss import FaceIDLoss

    torch.manual_seed(0)
    emb = InceptionResnetV1(pretrained=None, classify=False).eval()
    a = torch.rand(1, 3, 48, 48) * 2 - 1
    assert id_similarity(emb, a, a) == pytest.approx(1.0, abs=1e-5)
    face = FaceIDLoss(emb)
    b = (a + 0.5 * torch.randn_like(a)).clamp(-1, 1)
    sim = id_similarity(face, a, b)
    assert -1 <= sim <= 1 + 1e-6

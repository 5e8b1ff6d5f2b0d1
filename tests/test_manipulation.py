"""Image manipulation (core/manipulation.py): invert with the original model, generate with the edited one,
against exact ε-predictors of Gaussian domains (tests/test_translate.GaussianDomain)."""

import torch

from dclip_desktop.core.manipulation import generate, manipulate
from tests.test_translate import GaussianDomain


def _image(seed: int = 0) -> torch.Tensor:
    return (0.3 * torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(seed))).clamp(-1, 1)


def test_the_original_model_gives_the_image_back():
    domain = GaussianDomain(0.0, 0.3)
    x0 = _image()
    out = manipulate(domain, domain, x0, t0=400, s_for=200, s_gen=200, batch_size=3)
    assert out.shape == x0.shape
    assert (out - x0).abs().max().item() < 0.02


def test_the_edited_model_moves_the_image_toward_its_domain_and_keeps_its_layout():
    x0 = _image(1)
    out = manipulate(GaussianDomain(0.0, 0.3), GaussianDomain(0.5, 0.3), x0, t0=500, s_for=50, s_gen=50)
    shift = (out - x0).mean().item()
    assert 0.2 < shift < 0.5  # toward the target mean, not all the way: t0 < T keeps part of x0
    assert torch.corrcoef(torch.stack([out.flatten(), x0.flatten()]))[0, 1].item() > 0.9


def test_generation_in_chunks_is_one_bar_and_the_same_numbers():
    domain, lat = GaussianDomain(0.2, 0.3), torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    seen = []
    chunked = generate(domain, lat, 300, 10, batch_size=2, progress=lambda s, t, p: seen.append(s / t))
    whole = generate(domain, lat, 300, 10, batch_size=5)
    torch.testing.assert_close(chunked, whole)
    assert seen == sorted(seen) and seen[-1] == 1.0

"""Unseen-domain translation (core/translate.py) against denoisers whose right answer is known: the exact
ε-predictor of a Gaussian "domain" N(μ, σ²I). With it, projecting must land in the domain, and the
edit must carry the projected image to the target model's domain."""

import math

import pytest
import torch

from dclip_desktop.core.cancel import Cancelled, CancelToken
from dclip_desktop.core.schedule import DEFAULT_SCHEDULE
from dclip_desktop.core.translate import project_to_domain, translate
from dclip_desktop.errors import BadInput

SHAPE = (1, 3, 8, 8)


class GaussianDomain:
    """The optimal ε(x_t, t) for data x0 ~ N(mean, σ²I): E[ε | x_t] in closed form."""

    def __init__(self, mean: float, sigma: float) -> None:
        self.mean, self.sigma = mean, sigma

    def __call__(self, x: torch.Tensor, t: int) -> torch.Tensor:
        abar = DEFAULT_SCHEDULE.abar(int(t))
        var = abar * self.sigma**2 + (1 - abar)
        return (x - math.sqrt(abar) * self.mean) * math.sqrt(1 - abar) / var


def _stroke() -> torch.Tensor:
    """A 'painting' far outside the domain: a hard two-level image."""
    x = -torch.ones(SHAPE)
    x[..., 2:6, 2:6] = 1.0
    return x


def test_projection_lands_in_the_domain_and_forgets_the_strokes():
    domain = GaussianDomain(mean=0.2, sigma=0.05)
    out = project_to_domain(domain, _stroke(), seeds=[0, 1, 2], t0=700, rounds=6, steps=20)
    assert out.shape == (3, *SHAPE[1:])
    assert abs(out.mean().item() - 0.2) < 0.03
    assert out.std().item() < 0.15  # the ±1 stroke pattern is gone
    assert (out[..., 2:6, 2:6].mean() - out.mean()).abs().item() < 0.05


def test_a_few_rounds_at_a_low_t0_keep_the_layout():
    """Few, shallow rounds keep where the strokes were (the knob between faithful and realistic)."""
    domain = GaussianDomain(mean=0.0, sigma=1.0)  # a broad domain: the strokes are plausible in it
    out = project_to_domain(domain, _stroke(), seeds=[0], t0=200, rounds=1, steps=10)
    assert (out[..., 2:6, 2:6].mean() - out[..., :1, :].mean()).item() > 1.0


def test_each_seed_is_its_own_candidate_whatever_else_was_asked():
    domain, target = GaussianDomain(0.0, 0.5), GaussianDomain(0.5, 0.5)
    kw = dict(edit_t0=400, s_for=10, s_gen=10, project_t0=500, rounds=2, project_steps=5)
    p_one, e_one = translate(domain, target, _stroke(), [7], **kw)
    p_two, e_two = translate(domain, target, _stroke(), [3, 7], **kw)
    torch.testing.assert_close(p_two[1:], p_one)
    torch.testing.assert_close(e_two[1:], e_one)
    assert (p_two[0] - p_two[1]).abs().max().item() > 1e-3  # other seed, other candidate


def test_the_edit_moves_the_projected_image_toward_the_target_domain():
    domain, target = GaussianDomain(-0.4, 0.1), GaussianDomain(0.4, 0.1)
    projected, edited = translate(domain, target, _stroke(), [0, 1], edit_t0=900, s_for=30, s_gen=30,
                                  project_t0=600, rounds=4, project_steps=20)
    assert abs(projected.mean().item() + 0.4) < 0.05
    assert abs(edited.mean().item() - 0.4) < 0.1
    assert edited.min().item() >= -1 and edited.max().item() <= 1


def test_same_model_edit_reconstructs_the_projection():
    """Target = original: inversion then generation must give the projected image back (DDIM is exact
    up to discretisation with the true ε)."""
    domain = GaussianDomain(0.1, 0.3)
    projected, edited = translate(domain, domain, _stroke(), [5], edit_t0=300, s_for=150, s_gen=150,
                                  project_t0=400, rounds=2, project_steps=10)
    assert (edited - projected).abs().max().item() < 0.02


def test_progress_is_one_rising_bar_and_ends_full():
    seen = []
    translate(GaussianDomain(0, 0.5), GaussianDomain(0.3, 0.5), _stroke(), [0], edit_t0=300, s_for=6, s_gen=4,
              project_t0=300, rounds=3, project_steps=5,
              progress=lambda step, total, preview: seen.append(step / total))
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)


def test_cancel_stops_between_steps():
    token = CancelToken()
    calls = []

    def domain(x, t):
        calls.append(t)
        if len(calls) == 3:
            token.cancel()
        return torch.zeros_like(x)

    with pytest.raises(Cancelled):
        translate(domain, domain, _stroke(), [0], edit_t0=300, project_t0=300, rounds=4, project_steps=10,
                  cancel=token)
    assert len(calls) == 3


@pytest.mark.parametrize("kw, words", [
    ({"rounds": 0}, "rounds must be ≥ 1"),
    ({"project_t0": 1000}, "t0"),
    ({"project_steps": 0}, "steps"),
])
def test_bad_settings_are_refused_before_any_step(kw, words):
    calls = []

    def domain(x, t):
        calls.append(t)
        return torch.zeros_like(x)

    args = dict(edit_t0=300, project_t0=300, rounds=2, project_steps=5) | kw
    with pytest.raises(BadInput, match=words):
        translate(domain, domain, _stroke(), [0], **args)
    assert calls == []

import math

import pytest
import torch
from diffusers import DDIMScheduler

from dclip_desktop.core.cancel import Cancelled, CancelToken
from dclip_desktop.core.ddim import (
    ddim_generate,
    ddim_invert,
    ddim_step,
    ddpm_noise,
    generation_pairs,
    inversion_pairs,
)
from dclip_desktop.core.metrics import mae
from dclip_desktop.core.mixing import ModelDenoiser
from dclip_desktop.core.schedule import DEFAULT_SCHEDULE, timestep_grid


def test_grid_matches_method():
    assert timestep_grid(301, 6) == [int(k * 301 / 5) for k in range(6)]
    assert timestep_grid(400, 2) == [0, 400]
    assert DEFAULT_SCHEDULE.abar(0) == pytest.approx(1 - 1e-4)
    assert DEFAULT_SCHEDULE.abar(-1) == 1.0
    assert len(inversion_pairs(301, 40)) == 39
    pairs = generation_pairs(301, 40)
    assert len(pairs) == 40 and pairs[0][0] == 301 and pairs[-1] == (0, -1)


@pytest.mark.parametrize("bad", [0, 1000, -5, 3.5])
def test_bad_t0_is_rejected(bad):
    with pytest.raises(ValueError, match="t0"):
        timestep_grid(bad, 10)


def test_bad_steps_rejected():
    with pytest.raises(ValueError, match="steps"):
        timestep_grid(300, 1)


def test_step_equals_diffusers_ddim_scheduler():
    """On diffusers' uniform grid our update is DDIMScheduler.step (η=0 and η>0)."""
    sched = DDIMScheduler(
        num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
        clip_sample=False, set_alpha_to_one=True, steps_offset=0,
    )
    sched.set_timesteps(50)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 8, generator=g)
    eps = torch.randn(2, 3, 8, 8, generator=g)
    noise = torch.randn(2, 3, 8, 8, generator=g)
    for t in sched.timesteps[:-1].tolist() + [sched.timesteps[-1].item()]:
        prev = t - 1000 // 50
        ours, _ = ddim_step(x, eps, DEFAULT_SCHEDULE.abar(t), DEFAULT_SCHEDULE.abar(prev) if prev >= 0 else 1.0)
        theirs = sched.step(eps, t, x, eta=0.0).prev_sample
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
        if prev >= 0:
            ours_eta, _ = ddim_step(x, eps, DEFAULT_SCHEDULE.abar(t), DEFAULT_SCHEDULE.abar(prev), 0.7, noise)
            theirs_eta = sched.step(eps, t, x, eta=0.7, variance_noise=noise).prev_sample
            torch.testing.assert_close(ours_eta, theirs_eta, rtol=1e-4, atol=1e-5)


def test_inversion_rejects_eta(unet):
    with pytest.raises(ValueError, match="deterministic"):
        ddim_invert(ModelDenoiser(unet), torch.zeros(1, 3, 16, 16), 100, 5, eta=0.5)


def test_reconstruction_error_falls_with_steps(unet):
    g = torch.Generator().manual_seed(1)
    # A smooth image: reconstruction is a property of the sampler, not of image content.
    x0 = torch.nn.functional.interpolate(torch.rand(4, 3, 4, 4, generator=g) * 2 - 1, size=16, mode="bilinear")
    den = ModelDenoiser(unet)
    errors = {}
    for n in (3, 6, 12, 40):
        xt = ddim_invert(den, x0, 300, n)
        errors[n] = mae(ddim_generate(den, xt, 300, n), x0)
    print("reconstruction MAE vs steps:", errors)
    assert errors[3] > errors[6] > errors[12] > errors[40]


def test_progress_and_batch_independence(unet):
    seen = []
    x0 = torch.rand(3, 3, 16, 16) * 2 - 1
    den = ModelDenoiser(unet)
    xt = ddim_invert(den, x0, 200, 5, progress=lambda s, n, p: seen.append((s, n, None if p is None else p.shape)))
    assert seen == [(i, 4, (3, 3, 16, 16)) for i in range(1, 5)]
    single = ddim_invert(den, x0[1:2], 200, 5)
    torch.testing.assert_close(xt[1:2], single, rtol=1e-4, atol=1e-5)


def test_cancel_stops_within_one_step(unet):
    token = CancelToken()
    den = ModelDenoiser(unet)

    def progress(step, total, preview):
        if step == 3:
            token.cancel()

    with pytest.raises(Cancelled):
        ddim_generate(den, torch.randn(1, 3, 16, 16), 500, 20, progress=progress, cancel=token)
    assert den.calls == 3  # the step in flight finished; no further UNet call started


def test_ddpm_noise_uses_abar_t0():
    x0 = torch.ones(1, 3, 4, 4)
    g1 = torch.Generator().manual_seed(3)
    xt = ddpm_noise(x0, 500, g1)
    z = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    a = DEFAULT_SCHEDULE.abar(500)
    torch.testing.assert_close(xt, math.sqrt(a) * x0 + math.sqrt(1 - a) * z)


def test_eta_generation_is_seeded(unet):
    den = ModelDenoiser(unet)
    xt = torch.randn(1, 3, 16, 16)
    a = ddim_generate(den, xt, 300, 5, eta=1.0, generator=torch.Generator().manual_seed(5))
    b = ddim_generate(den, xt, 300, 5, eta=1.0, generator=torch.Generator().manual_seed(5))
    c = ddim_generate(den, xt, 300, 5, eta=1.0, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)

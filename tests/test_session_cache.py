"""Latent recycling through the job layer (issue 4): a second fine-tune on the same images spends zero
inversion UNet calls, and a different base sha misses the cache."""

import torch

from dclip_desktop.core.finetune import FinetuneConfig
from dclip_desktop.demo import world
from dclip_desktop.jobs.finetune_job import FinetuneRequest, run_finetune
from dclip_desktop.jobs.session import Session
from dclip_desktop.jobs.settings import Settings


def _request(name, target, x):
    cfg = FinetuneConfig(t0=301, s_for=6, s_gen=3, lora_rank=2, batch_size=4)
    return FinetuneRequest("demo-shapes", "red", target, name, config=cfg, tensors=x)


def test_second_finetune_hits_the_latent_cache_and_base_change_misses():
    x, _, _ = world.make_scenes(range(5), color="red")
    s = Session(Settings(device="cpu", precision="fp32"))
    run_finetune(s, _request("blue", "blue", x))
    first = s.inversion_calls
    assert first == 5  # S_for−1 UNet calls for one batch of 5 images (4 train + 1 held out)
    run_finetune(s, _request("green", "green", x))
    assert s.inversion_calls == first  # zero new inversion calls: latents recycled across attributes
    assert s.cache.stats.hits >= 5

    # The same images under a base with a different sha must not reuse those latents.
    s2 = Session(Settings(device="cpu", precision="fp32"))
    s2._shas["demo-shapes"] = "0" * 64
    lat = s2.invert("demo-shapes", x, 301, 6)
    assert s2.inversion_calls == 5 and lat.shape == x.shape
    # and a hit returns exactly what was computed
    again = Session(Settings(device="cpu", precision="fp32")).invert("demo-shapes", x, 301, 6)
    fresh = Session(Settings(device="cpu", precision="fp32")).invert("demo-shapes", x, 301, 6, use_cache=False)
    assert torch.equal(again, fresh)

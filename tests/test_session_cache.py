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


def test_memory_layout_setting_decides_the_base_models_layout():
    """auto: NHWC on a CPU (where the bench measured it faster); the explicit choices win."""
    x = torch.zeros(1, 3, 32, 32)

    def conv_is_nhwc(layout):
        conv = Session(Settings(device="cpu", memory_layout=layout)).base("demo-shapes").conv_in.weight
        return conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()

    assert conv_is_nhwc("auto") and conv_is_nhwc("channels_last") and not conv_is_nhwc("contiguous")
    assert not Settings().channels_last("cuda") and Settings().channels_last("cpu")
    assert Settings(memory_layout="channels_last").channels_last("cuda")
    # the layout changes speed, not results (only the summation order: float32 rounding, ~1e-5)
    outs = [Session(Settings(device="cpu", precision="fp32", memory_layout=m)).base("demo-shapes")(x, 10).sample
            for m in ("channels_last", "contiguous")]
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-3, atol=1e-4)

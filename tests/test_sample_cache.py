"""The sample cache (issue 19, found-item 4): the training images a fine-tune samples from the base are
DDIM runs of 40 steps each, most of such a fine-tune's time, so they are stored like latents and a later
fine-tune with the same base, seed and step count spends no UNet call on them."""

from __future__ import annotations

import json

import pytest
import torch

from dclip_desktop.cli.main import main
from dclip_desktop.core.cancel import Cancelled, CancelToken
from dclip_desktop.core.finetune import sample_from_base, sample_noise
from dclip_desktop.jobs.session import Session
from dclip_desktop.jobs.settings import Settings

SHAPE = (3, 32, 32)


def _session() -> Session:
    return Session(Settings(device="cpu", precision="fp32"))


def test_sample_i_of_a_seed_does_not_depend_on_the_count():
    assert torch.equal(sample_noise(5, SHAPE, 7)[:3], sample_noise(3, SHAPE, 7))
    # and equals one draw of n images, so the cached path samples what sample_from_base always did
    g = torch.Generator().manual_seed(7)
    assert torch.equal(sample_noise(5, SHAPE, 7), torch.randn((5, *SHAPE), generator=g))
    assert not torch.equal(sample_noise(1, SHAPE, 7), sample_noise(1, SHAPE, 8))


def test_second_request_comes_from_the_cache_and_more_samples_only_the_new_ones():
    s = _session()
    first, cached = s.sample("demo-shapes", 3, SHAPE, seed=1, steps=5)
    assert cached == 0 and s.sampling_calls == 5  # one batch of 3: one UNet call per step
    reference = sample_from_base(s.base("demo-shapes"), 3, SHAPE, seed=1, steps=5)
    torch.testing.assert_close(first, reference, rtol=0, atol=1e-5)

    again, cached = _session().sample("demo-shapes", 3, SHAPE, seed=1, steps=5)
    assert cached == 3 and torch.equal(again, first)

    s2 = _session()
    more, cached = s2.sample("demo-shapes", 5, SHAPE, seed=1, steps=5)
    assert cached == 3 and s2.sampling_calls == 5  # one batch of the 2 new ones
    assert torch.equal(more[:3], first)


def test_another_step_count_seed_or_base_is_a_miss():
    _session().sample("demo-shapes", 2, SHAPE, seed=1, steps=5)
    for kwargs in ({"seed": 1, "steps": 6}, {"seed": 2, "steps": 5}):
        s = _session()
        _, cached = s.sample("demo-shapes", 2, SHAPE, **kwargs)
        assert cached == 0 and s.sampling_calls > 0
    s = _session()
    s._shas["demo-shapes"] = "0" * 64
    _, cached = s.sample("demo-shapes", 2, SHAPE, seed=1, steps=5)
    assert cached == 0


def test_a_cancel_keeps_every_finished_batch():
    cancel = CancelToken()
    calls = []

    def progress(step, total, preview=None):
        calls.append(step)
        if step > total // 2:  # in the second of two batches
            cancel.cancel()

    with pytest.raises(Cancelled):
        _session().sample("demo-shapes", 4, SHAPE, seed=3, steps=4, batch_size=2, progress=progress, cancel=cancel)
    s = _session()
    _, cached = s.sample("demo-shapes", 4, SHAPE, seed=3, steps=4, batch_size=2)
    assert cached == 2 and s.sampling_calls == 4  # only the unfinished batch is sampled again


def test_the_documented_finetune_twice_reuses_its_samples(capsys, tmp_path):
    argv = ["finetune", "--src", "red", "--tgt", "blue", "--sample", "2", "--oversample", "2", "--epochs", "1",
            "--s-for", "4", "--s-gen", "2", "--sample-steps", "6"]
    assert main([*argv, "--name", "a"]) == 0
    first = capsys.readouterr()
    assert "from the sample cache" not in first.out + first.err
    assert main([*argv, "--name", "b"]) == 0
    second = capsys.readouterr()
    assert "training images: 6 of 6 from the sample cache" in second.out + second.err
    assert main(["library", "show", "b", "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)["manifest"]
    assert manifest["sample_steps"] == 6
    # each epoch's held-out metrics are kept with the entry, and printed as it trains
    (epoch,) = manifest["epoch_metrics"]
    assert epoch["epoch"] == 1 and set(epoch) >= {"s_dir", "mae", "ssim"} and manifest["metrics"] == epoch
    assert f"epoch 1: held-out S_dir {epoch['s_dir']:.3f}" in second.out


@pytest.mark.parametrize("steps", ["0", "-3", "5000"])
def test_bad_sample_steps_is_one_line_and_exit_2(capsys, steps):
    assert main(["finetune", "--src", "red", "--tgt", "blue", "--name", "x", "--sample-steps", steps]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sample steps" in err and "default is 40" in err

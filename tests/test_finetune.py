import copy

import pytest
import torch

from dclip_desktop.core.cancel import Cancelled, CancelToken
from dclip_desktop.core.clip_loss import DirectionalCLIPLoss
from dclip_desktop.core.finetune import EditLoss, FinetuneConfig, finetune, lr_factor, precompute_latents
from dclip_desktop.core.lora import LoRA

from .conftest import tiny_clip, tiny_unet

TEMPLATES = ["a photo of a {}.", "a drawing of a {}."]


def _setup(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.nn.functional.interpolate(torch.rand(n, 3, 4, 4, generator=g) * 2 - 1, size=16, mode="bilinear")
    base = tiny_unet()
    clip, tok = tiny_clip()
    return base, x0, clip, tok


def _loss(clip, tok, cfg):
    return EditLoss(DirectionalCLIPLoss(clip, tok, "red", "blue", templates=TEMPLATES), cfg)


@pytest.mark.parametrize("mode", ["efficient", "full_chain"])
@pytest.mark.parametrize("rank", [4, None])
def test_both_modes_lower_the_loss(mode, rank):
    base, x0, clip, tok = _setup()
    cfg = FinetuneConfig(t0=200, s_for=5, s_gen=3, epochs=6, mode=mode, lora_rank=rank, batch_size=4,
                         lr=3e-3 if rank else 3e-4, lambda_l1=0.0)
    latents = precompute_latents(base, x0, cfg.t0, cfg.s_for)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    res = finetune(base, x0, latents, _loss(clip, tok, cfg), cfg)
    per_epoch = {}
    for row in res.history:
        per_epoch.setdefault(row["epoch"], []).append(row["total"])
    first, last = sum(per_epoch[0]) / len(per_epoch[0]), sum(per_epoch[5]) / len(per_epoch[5])
    assert last < first, (first, last)
    # the base model is never modified
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    assert res.kind == ("lora" if rank else "full_delta")


def test_checkpointed_full_chain_gradients_equal_plain():
    from torch.utils import checkpoint as ckpt_module

    base, x0, clip, tok = _setup(n=2)
    cfg = FinetuneConfig(t0=200, s_for=4, s_gen=3, mode="full_chain", lora_rank=None, batch_size=2)
    latents = precompute_latents(base, x0, cfg.t0, cfg.s_for)
    loss = _loss(clip, tok, cfg)
    loss.set_sources(x0)
    from dclip_desktop.core.ddim import ddim_step, generation_pairs
    from dclip_desktop.core.mixing import ModelDenoiser
    from dclip_desktop.core.schedule import DEFAULT_SCHEDULE as S

    def grads(use_ckpt):
        model = copy.deepcopy(base).requires_grad_(True)
        x = latents.clone()
        for t, tn in generation_pairs(cfg.t0, cfg.s_gen):
            den = ModelDenoiser(model)
            eps = ckpt_module.checkpoint(den, x, t, use_reentrant=False) if use_ckpt else den(x, t)
            x, _ = ddim_step(x, eps, S.abar(t), S.abar(tn))
        loss(x, x0, torch.arange(2))[0].backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    a, b = grads(True), grads(False)
    assert a.keys() == b.keys() and len(a) > 10
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("rank", [4, None])
def test_block_checkpointing_trains_the_same_model(rank):
    """Efficient mode's per-block checkpointing (on by default on CUDA) only trades compute for
    memory: the fine-tuned weights match the plain run's."""
    base, x0, clip, tok = _setup(n=4)
    results = []
    for block in (False, True):
        cfg = FinetuneConfig(t0=200, s_for=4, s_gen=3, epochs=2, lora_rank=rank, batch_size=2, lr=1e-3,
                             block_checkpointing=block)
        latents = precompute_latents(base, x0, cfg.t0, cfg.s_for)
        results.append(finetune(base, x0, latents, _loss(clip, tok, cfg), cfg))
    plain, ckpt = results
    flags = [any(getattr(m, "gradient_checkpointing", False) for m in r.model.modules()) for r in results]
    assert flags == [False, True]  # it really ran checkpointed
    assert [r["total"] for r in plain.history] == pytest.approx([r["total"] for r in ckpt.history], rel=1e-4)
    assert plain.weights.keys() == ckpt.weights.keys() and plain.weights
    for k in plain.weights:
        torch.testing.assert_close(plain.weights[k], ckpt.weights[k], rtol=1e-3, atol=1e-5)


def test_lora_training_changes_only_adapters():
    base, x0, clip, tok = _setup(n=2)
    cfg = FinetuneConfig(t0=200, s_for=4, s_gen=3, lora_rank=2, batch_size=2, lr=1e-2)
    latents = precompute_latents(base, x0, cfg.t0, cfg.s_for)
    seen = {}

    def on_step(step, total, row):
        seen[step] = row

    # Watch the wrapped model mid-training: only lora_A/lora_B may hold gradients.
    import dclip_desktop.core.finetune as ft

    res = ft.finetune(base, x0, latents, _loss(clip, tok, cfg), cfg, on_step=on_step)
    assert res.kind == "lora" and seen
    assert all(k.endswith((".lora_A", ".lora_B", ".lora_scale")) for k in res.weights)
    assert any(res.weights[k].abs().sum() > 0 for k in res.weights if k.endswith(".lora_B"))
    # the merged model differs from the base only through the adapters' ΔW
    tuned = dict(res.model.named_parameters())
    for name, p in base.named_parameters():
        if name.endswith("bias") or "norm" in name:
            assert torch.equal(p, tuned[name]), name
    assert not any(isinstance(m, LoRA) for m in res.model.modules())


def test_cancel_stops_fine_tuning_within_one_step():
    base, x0, clip, tok = _setup(n=2)
    cfg = FinetuneConfig(t0=200, s_for=4, s_gen=4, epochs=3, lora_rank=2, batch_size=1)
    latents = precompute_latents(base, x0, cfg.t0, cfg.s_for)
    token = CancelToken()
    steps = []

    def on_step(step, total, row):
        steps.append(step)
        if step == 2:
            token.cancel()

    with pytest.raises(Cancelled):
        finetune(base, x0, latents, _loss(clip, tok, cfg), cfg, on_step=on_step, cancel=token)
    assert steps == [1, 2]


def test_epoch_preview_and_lr_schedules():
    base, x0, clip, tok = _setup(n=2)
    cfg = FinetuneConfig(t0=200, s_for=4, s_gen=3, epochs=2, lora_rank=2, batch_size=2, lr_schedule="ref_x1.3")
    latents = precompute_latents(base, x0, cfg.t0, cfg.s_for)
    previews = []
    res = finetune(base, x0, latents, _loss(clip, tok, cfg), cfg, preview_latent=latents[:1],
                   on_epoch=lambda e, p: previews.append((e, p.shape)))
    assert previews == [(0, (1, 3, 16, 16)), (1, (1, 3, 16, 16))]
    lrs = sorted({round(r["lr"], 9) for r in res.history})
    assert lrs == [pytest.approx(1e-3), pytest.approx(1.3e-3)]
    assert lr_factor("paper_ramp", 0, 120) == pytest.approx(1.4)


@pytest.mark.parametrize(
    "field, value, message",
    [("t0", 0, "t0"), ("t0", 1000, "t0"), ("s_gen", 1, "S_gen"), ("mode", "fast", "mode"), ("lr", -1.0, "learning")],
)
def test_bad_config_is_rejected(field, value, message):
    cfg = FinetuneConfig(**{field: value})
    with pytest.raises(ValueError, match=message):
        cfg.validate()

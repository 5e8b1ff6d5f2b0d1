"""What `dclip bench` runs, and how much of it: image counts, batches and step counts per row, per
config, for a quick or a full run, on a GPU or a CPU.

The workload itself is fixed: edits from photo to sketch at t0 400, fine-tuning with LoRA rank 8.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

T0 = 400
LORA_RANK = 8
SOURCE, TARGET = "photo", "sketch"
# (nominal S_for, nominal S_gen, measured S_for, measured S_gen): the paper's two edit settings, unreduced
FULL_EDITS = ((200, 40, 200, 40), (40, 40, 40, 40))


@dataclass(kw_only=True)
class Plan:
    """How much work each row does. `*_steps` are what is measured; the nominal steps are in `edits`."""

    size: int
    n_invert: int
    batch_invert: int
    inv_steps: int  # S_for measured (nominal 40)
    edits: list  # [(nominal S_for, nominal S_gen, measured S_for, measured S_gen)]
    n_edit: int
    batch_edit: int
    n_train: int
    batch_train: int
    train_steps: int  # S_gen measured (nominal 6)
    n_ref: int  # images the batch-1 reference runs per row
    guard_images: int
    guard_steps: int
    guard_size: int  # resolution of the accuracy guard (= size except ddpm256 --quick on CPU)
    ablation_calls: int
    templates: int
    warmup: bool = True
    ckpt_ablation: bool = True
    notes: list = field(default_factory=list)


def make_plan(config: str, quick: bool, device: torch.device) -> Plan:
    if config == "demo":
        return _demo_plan(quick, gpu=device.type == "cuda")
    if device.type == "cuda":
        return _ddpm256_gpu_plan(quick)
    return _ddpm256_cpu_plan(quick)


def _demo_plan(quick: bool, gpu: bool) -> Plan:
    if quick:
        return Plan(size=32, n_invert=2, batch_invert=2, inv_steps=3, edits=[(200, 40, 3, 2), (40, 40, 3, 2)],
                    n_edit=2, batch_edit=2, n_train=2, batch_train=2, train_steps=2, n_ref=1,
                    guard_images=1, guard_steps=3, guard_size=32, ablation_calls=1, templates=1,
                    warmup=False, ckpt_ablation=False,
                    notes=["--quick: a smoke run; steps reduced (inversion S_for 3, edits (3,2), fine-tune 2 images"
                           " × S_gen 2); 'scaled' columns extrapolate to the nominal steps by UNet-call count"])
    # CPU: bf16/fp16 autocast run ~15× slower than fp32 here, so the guard uses fewer steps.
    return Plan(size=32, n_invert=32, batch_invert=32, inv_steps=40, edits=list(FULL_EDITS),
                n_edit=8, batch_edit=8, n_train=16, batch_train=8, train_steps=6, n_ref=2,
                guard_images=4 if gpu else 2, guard_steps=20 if gpu else 8, guard_size=32,
                ablation_calls=5, templates=8)


def _ddpm256_gpu_plan(quick: bool) -> Plan:
    if quick:
        return Plan(size=256, n_invert=8, batch_invert=8, inv_steps=40, edits=list(FULL_EDITS),
                    n_edit=4, batch_edit=4, n_train=8, batch_train=8, train_steps=6, n_ref=1,
                    guard_images=4, guard_steps=20, guard_size=256, ablation_calls=3, templates=8,
                    ckpt_ablation=False, notes=["--quick: 8 images instead of 50"])
    # fine-tune batch 8: with efficient mode's block checkpointing (on by default on CUDA) it
    # fits in ~7 GiB and runs faster per image than batch 4 without it (H100 probe)
    return Plan(size=256, n_invert=50, batch_invert=25, inv_steps=40, edits=list(FULL_EDITS),
                n_edit=16, batch_edit=16, n_train=50, batch_train=8, train_steps=6, n_ref=2,
                guard_images=8, guard_steps=40, guard_size=256, ablation_calls=5, templates=8)


def _ddpm256_cpu_plan(quick: bool) -> Plan:
    if quick:
        # Warm-up stays on: at 256² a cold first call (allocations, oneDNN set-up) costs about one
        # forward, which in rows this short favoured whoever ran warm (fine-tune 2.1× cold, 1.3× warm).
        return Plan(size=256, n_invert=2, batch_invert=2, inv_steps=4, edits=[(200, 40, 3, 3), (40, 40, 3, 3)],
                    n_edit=1, batch_edit=1, n_train=1, batch_train=1, train_steps=2, n_ref=1,
                    guard_images=1, guard_steps=6, guard_size=64, ablation_calls=1, templates=2,
                    ckpt_ablation=False,
                    notes=["ddpm256 --quick on CPU: steps reduced (inversion S_for 4, edits (3,3), fine-tune 1 image"
                           " × S_gen 2, accuracy guard at 64² on the same architecture); the reference does the same"
                           " reduced work, so ratios are like-for-like; 'scaled' columns extrapolate by UNet calls"])
    return Plan(size=256, n_invert=8, batch_invert=8, inv_steps=40, edits=list(FULL_EDITS),
                n_edit=2, batch_edit=2, n_train=4, batch_train=2, train_steps=6, n_ref=1,
                guard_images=1, guard_steps=10, guard_size=64, ablation_calls=2, templates=4,
                notes=["ddpm256 on CPU: image counts reduced (takes a long time)"])

"""A random rank-2 LoRA of the demo base saved to a session's library: a visible edit in a few steps,
for tests of what happens around an edit (batches, the GUI), not of what fine-tuning learns."""

from __future__ import annotations

import copy

import torch


def save_random_lora(session, name: str = "rnd", *, seed: int, std: float, steps: int, **meta) -> str:
    """Save it as `name` with t0 300, `steps` as S_for and S_gen, and any other manifest fields; returns `name`."""
    from dclip_desktop.core.lora import inject_lora, lora_factors, lora_modules

    model = copy.deepcopy(session.base("demo-shapes"))
    torch.manual_seed(seed)
    inject_lora(model, 2)
    for _, m in lora_modules(model):
        torch.nn.init.normal_(m.lora_B.weight, std=std)
    session.library.save_attribute(name, lora_factors(model), "lora",
                                   {"base_id": "demo-shapes", "base_sha256": session.base_sha("demo-shapes"),
                                    "t0": 300, "s_for": steps, "s_gen": steps, **meta})
    return name

import copy

import torch

from dclip_desktop.core.lora import (
    apply_delta,
    factors_to_delta,
    inject_lora,
    lora_factors,
    lora_parameters,
    remove_lora,
)

from .conftest import tiny_unet


def test_lora_starts_as_identity_and_merges_exactly():
    base = tiny_unet()
    model = copy.deepcopy(base)
    names = inject_lora(model, rank=4)
    assert names
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x, 10).sample, base(x, 10).sample)
        for p in lora_parameters(model)[1::2]:
            p.normal_(0, 0.05)  # non-zero B
        tuned_out = model(x, 10).sample
    factors = lora_factors(model)
    merged = remove_lora(copy.deepcopy(model))
    applied = apply_delta(copy.deepcopy(base), factors_to_delta(factors, base.state_dict()))
    with torch.no_grad():
        torch.testing.assert_close(merged(x, 10).sample, tuned_out, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(applied(x, 10).sample, tuned_out, rtol=1e-4, atol=1e-5)
    assert not any(isinstance(m, type(model.conv_in)) and hasattr(m, "lora_A") for m in merged.modules())

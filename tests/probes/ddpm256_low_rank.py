"""Probe (not a test; run by hand, about 8 min on a 2-core CPU): `python tests/probes/ddpm256_low_rank.py`.
Synthetic DDPM-256 full delta through the save rule (library.weights.compact_delta), pixels measured:
the real architecture at full size (random weights), a delta of rank 4 per layer plus small noise, and
the import's preview (a 4-step DDIM sample from fixed noise)."""
import time

import torch
from diffusers import UNet2DModel

from dclip_desktop.core import low_rank as lr
from dclip_desktop.core.finetune import sample_from_noise, sample_noise
from dclip_desktop.library import weights as wf
from dclip_desktop.zoo.catalogue import DDPM256_CONFIG

torch.manual_seed(0)
base = UNet2DModel(**DDPM256_CONFIG).eval()
g = torch.Generator().manual_seed(0)
delta = {}
for name, p in base.named_parameters():
    shape = p.shape
    if len(shape) >= 2:
        cols = shape.numel() // shape[0]
        # scaled to the layer: a few strong directions worth ~2 % of the weight's RMS, plus 0.1 % noise
        rms = float(p.detach().pow(2).mean().sqrt())
        low = torch.randn(shape[0], 4, generator=g) @ torch.randn(4, cols, generator=g) / 2
        delta[name] = (rms * (0.02 * low / float(low.pow(2).mean().sqrt()) + 1e-3 * torch.randn(shape[0], cols, generator=g))).reshape(shape)
    else:
        delta[name] = 1e-4 * torch.randn(shape, generator=g)
noise = sample_noise(1, (3, 256, 256), 0)
calls = []


def preview(model):
    t = time.perf_counter()
    out = sample_from_noise(model, noise, steps=4)
    calls.append(time.perf_counter() - t)
    return out


render = lr.renderer(base, preview)
t0 = time.perf_counter()
plain = render({k: torch.zeros_like(v) for k, v in delta.items()})
dense_img = render(delta)
edit = lr.pixel_error(dense_img, plain)
print(f"the dense delta's own edit: {edit} levels")
weights, kind, record = wf.compact_delta(delta, render, "synthetic DDPM-256, 4-step sample preview")
print(f"kind {kind}, {record['bytes'] / 1e6:.2f} MB of {record['dense_bytes'] / 1e6:.1f} MB dense, "
      f"eps {record.get('eps')}, error vs dense {record.get('error_vs_dense_levels')}")
for row in record["tried"]:
    print(row)
print(f"{len(calls)} previews, {sum(calls) / len(calls):.1f} s each; total {time.perf_counter() - t0:.0f} s")

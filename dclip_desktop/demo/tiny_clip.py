"""The demo world's tiny CLIP and tiny DDPM: where their files live and how to load them.

The CLIP is an ordinary open_clip `CLIP` built from the config `models/demo/dclip-demo-tiny.json`
(ViT with 4×4 patches at 32², a small text transformer) and used with open_clip's real BPE
tokenizer. Images go in at 32² with the OpenAI mean/std, like any open_clip model.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional, Union

import torch

from ..errors import MissingWeights

DEMO_CLIP_NAME = "dclip-demo-tiny"
CLIP_CONFIG_FILE = f"{DEMO_CLIP_NAME}.json"
CLIP_WEIGHTS_FILE = "clip.safetensors"
UNET_SUBDIR = "unet"

Device = Union[str, torch.device]



class DemoModelsMissing(MissingWeights, FileNotFoundError):
    """The bundled demo weights are not where a checkout or the app bundle keeps them."""

    def __str__(self) -> str:  # FileNotFoundError's own __str__ would format errno/filename
        return str(self.args[0])

def _bundle_roots() -> list[Path]:
    """Where bundled data lies: the frozen bundle (PyInstaller's folder), then the checkout."""
    roots = []
    meipass = getattr(sys, "_MEIPASS", None)
    if getattr(sys, "frozen", False) and meipass:
        roots.append(Path(meipass))
    roots.append(Path(__file__).resolve().parents[2])
    return roots


def demo_dir() -> Path:
    """Folder holding the demo weights: $DCLIP_DEMO_DIR, the frozen bundle, or <repo>/models/demo."""
    env = os.environ.get("DCLIP_DEMO_DIR")
    candidates = [Path(env)] if env else []
    candidates += [root / "models" / "demo" for root in _bundle_roots()]
    for c in candidates:
        if (c / CLIP_CONFIG_FILE).is_file():
            return c
    tried = ", ".join(str(c) for c in candidates)
    raise DemoModelsMissing(
        f"demo model folder not found (looked in: {tried}). Set DCLIP_DEMO_DIR to the folder that holds "
        f"{CLIP_CONFIG_FILE}, {CLIP_WEIGHTS_FILE} and {UNET_SUBDIR}/, or run from a full checkout."
    )


def samples_dir() -> Optional[Path]:
    """The bundled sample scenes (resources/samples), found like demo_dir; None in a bare install."""
    for root in _bundle_roots():
        if (root / "resources" / "samples").is_dir():
            return root / "resources" / "samples"
    return None


def register_demo_clip() -> str:
    """Make open_clip know the config name "dclip-demo-tiny"; returns the name."""
    import open_clip

    if DEMO_CLIP_NAME not in open_clip.list_models():
        open_clip.add_model_config(demo_dir() / CLIP_CONFIG_FILE)
    return DEMO_CLIP_NAME


def build_demo_clip(device: Device = "cpu"):
    """A randomly initialised tiny CLIP and its tokenizer (training starts from this)."""
    import logging

    import open_clip

    name = register_demo_clip()
    # open_clip logs "No pretrained weights loaded" for every config-built model; the weights are ours.
    log = logging.getLogger()
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        model = open_clip.create_model(name, pretrained=None, device=device)
    finally:
        log.setLevel(level)
    return model, open_clip.get_tokenizer(name)


def load_demo_clip(device: Device = "cpu"):
    """The trained tiny CLIP (eval, frozen, float32) and its BPE tokenizer."""
    from safetensors.torch import load_file

    path = demo_dir() / CLIP_WEIGHTS_FILE
    if not path.is_file():
        raise DemoModelsMissing(f"demo CLIP weights missing: {path} (train them with models/demo/train.py)")
    model, tokenizer = build_demo_clip("cpu")
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    model.load_state_dict(state, strict=True)
    model = model.to(device).eval().requires_grad_(False)
    return model, tokenizer


def load_demo_unet(device: Device = "cpu"):
    """The trained tiny DDPM (diffusers UNet2DModel, ε-prediction, linear β 1e-4..0.02, T = 1000)."""
    from diffusers.models.unets.unet_2d import UNet2DModel

    path = demo_dir() / UNET_SUBDIR
    if not (path / "diffusion_pytorch_model.safetensors").is_file():
        raise DemoModelsMissing(f"demo UNet weights missing in {path} (train them with models/demo/train.py)")
    # low_cpu_mem_usage=False: what diffusers falls back to without `accelerate` (not a dependency),
    # asked for outright so that it does not warn on every load.
    model = UNet2DModel.from_pretrained(str(path), torch_dtype=torch.float32, low_cpu_mem_usage=False)
    return model.to(device).eval().requires_grad_(False)

"""Models the bench runs: the chosen architecture from its config (random weights are fine: speed
does not depend on values), plus the matching CLIP. The demo config uses the trained demo weights
when they are present, so its reconstruction numbers mean something."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import BadInput

CONFIGS = ("demo", "ddpm256")


def build_unet(config: str, device: torch.device) -> tuple[nn.Module, str]:
    """The UNet of `config` in eval mode, frozen, float32; and where its weights came from."""
    from diffusers.models.unets.unet_2d import UNet2DModel

    if config == "demo":
        from ..demo.tiny_clip import load_demo_unet

        return load_demo_unet(device), "demo weights (trained)"
    if config != "ddpm256":
        raise BadInput(f"unknown bench config {config!r}; choose from {', '.join(CONFIGS)}")
    from ..zoo.registry import DDPM256_CONFIG  # the one copy of the DDPM-256 architecture

    torch.manual_seed(0)
    model, origin = UNet2DModel(**DDPM256_CONFIG), "DDPM-256 config, random weights"
    return model.to(device).eval().requires_grad_(False), origin


def build_clip(config: str, device: torch.device) -> tuple[nn.Module, object, str]:
    """(CLIP, tokenizer, origin). ddpm256 pairs with ViT-B/16 (QuickGELU), as in the paper."""
    import open_clip

    if config == "demo":
        from ..demo import tiny_clip

        try:
            model, tok = tiny_clip.load_demo_clip(device)
            return model, tok, "demo CLIP (trained)"
        except (FileNotFoundError, OSError):
            torch.manual_seed(0)
            model, tok = tiny_clip.build_demo_clip(device)
            return model.eval().requires_grad_(False), tok, "demo CLIP config, random weights"
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-16-quickgelu", pretrained=None, device=device)
    return model.eval().requires_grad_(False), open_clip.get_tokenizer("ViT-B-16-quickgelu"), "ViT-B-16-quickgelu, random"


def test_images(n: int, size: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    """Smooth random images in [−1, 1] (low-res noise, bilinearly upsampled)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(low, size=size, mode="bilinear", align_corners=False).to(device)

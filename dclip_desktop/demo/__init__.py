"""The bundled demo world: procedural scenes, a tiny DDPM and a tiny CLIP trained on them."""

from .tiny_clip import DEMO_CLIP_NAME, demo_dir, load_demo_clip, load_demo_unet, samples_dir

__all__ = ["DEMO_CLIP_NAME", "demo_dir", "load_demo_clip", "load_demo_unet", "samples_dir"]

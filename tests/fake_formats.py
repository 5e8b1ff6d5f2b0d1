"""Random weights in the real models' file formats, for the loopback fake hub (tests/test_download.py's
FakeHub) to serve where the real files would come from:

- a CelebA-HQ DDPM-256 repo as `google/ddpm-ema-celebahq-256` holds it: an old diffusers `config.json`
  and `diffusion_pytorch_model.bin` (a pickled state dict) with the old attention key names
  (query/key/value/proj_attn), which `from_pretrained` renames. Same architecture, reduced width and
  resolution;
- open_clip's ViT-B-16 (`timm/vit_base_patch16_clip_224.openai`'s `open_clip_model.safetensors`):
  the loader builds the architecture from open_clip's named config `ViT-B-16-quickgelu`, so the width
  is reduced by giving open_clip a reduced config under that name (`reduced_clip_config`); the keys are
  ViT-B-16's, the patch size and image size too;
- facenet-pytorch's `20180402-114759-vggface2.pt`: InceptionResnetV1's full state dict with its
  8631-class VGGFace2 head, at full size (the loader builds InceptionResnetV1 as it is).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from dclip_desktop.zoo.catalogue import DDPM256_CONFIG

# DDPM-256's architecture (6 levels, attention at the fifth, 2 layers per block, its norms and
# embeddings) at a width and resolution a 2-core CPU runs in milliseconds.
DDPM_WIDTH = (32, 32, 64, 64, 64, 64)
DDPM_SIZE = 32
VGGFACE2_CLASSES = 8631
CLIP_NAME = "ViT-B-16-quickgelu"
# ViT-B-16-quickgelu's config (open_clip's model_configs) at reduced width and depth.
REDUCED_CLIP = {
    "embed_dim": 64,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ddpm_config() -> dict:
    """DDPM256_CONFIG at the reduced width, as the hub's old config.json spells it."""
    cfg = {**DDPM256_CONFIG, "sample_size": DDPM_SIZE, "block_out_channels": list(DDPM_WIDTH)}
    cfg = {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}
    return {"_class_name": "UNet2DModel", "_diffusers_version": "0.0.4", **cfg}


def ddpm_repo(seed: int = 0) -> dict[str, bytes]:
    """{file name: bytes} of a DDPM-256-style hub repo: config.json and the .bin with the old names."""
    from diffusers.models.unets.unet_2d import UNet2DModel

    cfg = ddpm_config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = UNet2DModel(**{k: v for k, v in cfg.items() if not k.startswith("_")})
    old = {k.replace(".to_q.", ".query.").replace(".to_k.", ".key.").replace(".to_v.", ".value.")
           .replace(".to_out.0.", ".proj_attn."): v for k, v in model.state_dict().items()}
    assert any(".proj_attn." in k for k in old) and not any(".to_q." in k for k in old)
    buf = io.BytesIO()
    torch.save(old, buf)
    return {"config.json": json.dumps(cfg, indent=2).encode(), "diffusion_pytorch_model.bin": buf.getvalue()}


@contextmanager
def reduced_clip_config(folder: Path) -> Iterator[None]:
    """open_clip builds `ViT-B-16-quickgelu` at REDUCED_CLIP's width while this lasts (its own
    add_model_config: a later config of the same name wins)."""
    import open_clip
    from open_clip import factory

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{CLIP_NAME}.json"
    path.write_text(json.dumps(REDUCED_CLIP))
    saved = dict(factory._MODEL_CONFIGS)
    open_clip.add_model_config(path)
    try:
        yield
    finally:
        factory._MODEL_CONFIG_PATHS.remove(path)
        factory._MODEL_CONFIGS = saved


def open_clip_safetensors(seed: int = 0) -> bytes:
    """open_clip_model.safetensors of the (reduced) ViT-B-16-quickgelu; call inside reduced_clip_config."""
    import logging

    import open_clip
    from safetensors.torch import save

    root = logging.getLogger()  # open_clip warns on the root logger that no pretrained weights were loaded
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = open_clip.create_model(CLIP_NAME, pretrained=None)
    finally:
        root.setLevel(level)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    assert "visual.conv1.weight" in state and state["visual.conv1.weight"].shape[-1] == 16
    return save(state)


def vggface2_pt(seed: int = 0) -> bytes:
    """facenet-pytorch's VGGFace2 file: every InceptionResnetV1 tensor and the 8631-class logits head."""
    from facenet_pytorch import InceptionResnetV1

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = InceptionResnetV1(pretrained=None, classify=True, num_classes=VGGFACE2_CLASSES)
    state = net.state_dict()
    assert state["logits.weight"].shape == (VGGFACE2_CLASSES, 512)
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def serve_repo(hub, repo_id: str, files: dict[str, bytes], lfs: tuple[str, ...] = (".bin", ".safetensors")) -> None:
    """Put a repo on the fake hub at the hub's resolve paths. Like the hub, the weights (LFS files) carry
    their sha256 as X-Linked-Etag; config.json (a plain git file) carries none."""
    for name, data in files.items():
        path = f"/{repo_id}/resolve/main/{name}"
        hub.files[path] = data
        if name.endswith(lfs):
            hub.headers[path] = {"X-Linked-Etag": f'"{sha(data)}"'}

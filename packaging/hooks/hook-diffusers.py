# diffusers checks the installed versions of its dependencies at import (dist metadata), and loads
# most of its modules lazily, which PyInstaller's analysis cannot see.
from PyInstaller.utils.hooks import copy_metadata

datas = []
for dist in ("diffusers", "torch", "numpy", "requests", "filelock", "huggingface_hub", "safetensors", "regex",
             "Pillow", "tqdm", "packaging", "importlib_metadata", "pyyaml", "open_clip_torch", "timm"):
    try:
        datas += copy_metadata(dist)
    except Exception:  # optional distributions
        pass
hiddenimports = ["diffusers.models.unets.unet_2d", "diffusers.models.unets.unet_2d_blocks",
                 "diffusers.models.attention_processor"]

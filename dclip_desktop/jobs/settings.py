"""User settings shared by the GUI and the CLI (a JSON file in the platform config dir)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional

import platformdirs

from ..library.atomic import atomic_write_bytes  # torch-free: the GUI reads settings at start-up

APP = "dclip-desktop"


def config_dir() -> Path:
    return Path(os.environ.get("DCLIP_CONFIG_DIR") or platformdirs.user_config_dir(APP))


@dataclass
class Settings:
    device: str = "auto"  # auto, cpu, cuda, cuda:N, mps
    precision: str = "auto"  # auto, fp32, bf16, fp16
    offline: bool = False
    # auto, channels_last, contiguous. `dclip bench` measured NHWC 1.2× faster per UNet forward on the
    # demo UNet on 2 CPU cores (about even, 0.98–1.02×, at 256²) but 1.3× slower under bf16 on an H100,
    # so auto means channels_last on CPU only.
    memory_layout: str = "auto"
    # torch.compile the UNets of batch edits (CUDA, or a CPU with a C++ compiler): 2.5× per forward on
    # an H100, 1.15–1.75× on 2 CPU cores, after 1–2 min of compiling per model and run, so it pays from
    # a few hundred images (core/compiled.py)
    compile_batches: bool = False
    library_dir: Optional[str] = None  # None: platform data dir (or $DCLIP_LIBRARY_DIR)
    cache_dir: Optional[str] = None  # latent cache; None: platform cache dir (or $DCLIP_LATENT_CACHE_DIR)
    preview_every: int = 2  # send a predicted-x0 preview every N sampling steps
    default_base: str = "demo-shapes"

    def channels_last(self, device_type: str) -> bool:
        if self.memory_layout == "auto":
            return device_type == "cpu"
        return self.memory_layout == "channels_last"

    @classmethod
    def load(cls) -> Settings:
        path = config_dir() / "settings.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls()
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self) -> Path:
        return atomic_write_bytes(config_dir() / "settings.json", json.dumps(asdict(self), indent=2).encode())

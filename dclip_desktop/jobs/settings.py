"""User settings shared by the GUI and the CLI (a JSON file in the platform config dir).

The file is the user's to edit, so a damaged one never stops the app, as in a desktop editor (Krita,
Lightroom): each bad field falls back to its default with one warning per process naming the file and
the field, and the file is left as it is until the user saves settings.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Optional

import platformdirs

from ..core.config import DEVICE_PATTERN
from ..library.atomic import atomic_write_bytes  # torch-free: the GUI reads settings at start-up
from ..untrusted import MAX_TEXT, UntrustedDataError, display, loads_object, open_regular, take

APP = "dclip-desktop"
# The values each field takes (the settings dialog offers the same); the device as core.config names it.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
LAYOUTS = ("auto", "channels_last", "contiguous")
PREVIEW_EVERY_MAX = 100
_PATH_MAX = 4096

log = logging.getLogger(__name__)
_warned: set[str] = set()  # problems already reported by this process (load() runs once per command)


def config_dir() -> Path:
    return Path(os.environ.get("DCLIP_CONFIG_DIR") or platformdirs.user_config_dir(APP))


def log_dir() -> Path:
    """Where the tracebacks of internal errors are kept."""
    return Path(os.environ.get("DCLIP_LOG_DIR") or platformdirs.user_log_dir(APP))


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
    def parse(cls, data: bytes | str, what: str = "settings.json") -> tuple[Settings, list[str]]:
        """Settings from the text of a settings file, and what was wrong with it (one line per problem,
        each naming `what` and the field). Never raises: a bad file or field means its defaults."""
        try:
            obj = loads_object(data, what)
        except UntrustedDataError as exc:
            return cls(), [f"{exc}; using the default settings"]
        values, problems = {}, []
        for f in fields(cls):
            try:
                value = _field(obj, f, what)
            except UntrustedDataError as exc:
                problems.append(f"{exc}; using the default ({f.default if f.default is not None else 'none'})")
                continue
            if value is not None:
                values[f.name] = value
        return cls(**values), problems  # unknown keys (a newer version's) are ignored

    @classmethod
    def load(cls) -> Settings:
        path = config_dir() / "settings.json"
        what = display(os.fspath(path))
        try:
            with open_regular(path, what) as fh:
                data = fh.read(MAX_TEXT + 1)  # a longer file is refused by parse without reading it all
        except FileNotFoundError:
            return cls()  # first run
        except UntrustedDataError as exc:  # a folder or FIFO named settings.json
            settings, problems = cls(), [f"{exc}; using the default settings"]
        except OSError as exc:
            settings, problems = cls(), [f"{what}: cannot be read ({exc.strerror or exc}); using the default settings"]
        else:
            settings, problems = cls.parse(data, what)
        for problem in problems:
            if problem not in _warned:
                _warned.add(problem)
                log.warning(problem)
        return settings

    def save(self) -> Path:
        return atomic_write_bytes(config_dir() / "settings.json", json.dumps(asdict(self), indent=2).encode())


_INT_RANGES = {"preview_every": (1, PREVIEW_EVERY_MAX)}
# Text fields with a fixed set of values: (check of the normalised value, what to tell the user).
_CHOICES = {
    "device": (DEVICE_PATTERN.fullmatch, "auto, cpu, cuda, cuda:N or mps"),
    "precision": (PRECISIONS.__contains__, ", ".join(PRECISIONS)),
    "memory_layout": (LAYOUTS.__contains__, ", ".join(LAYOUTS)),
}


def _field(obj: dict, f, what: str) -> Any:
    """obj[f.name] checked for the Settings field `f` by its annotation; None when missing (the
    default applies), UntrustedDataError when bad."""
    key = f.name
    if f.type == "bool":
        return take(obj, key, bool, what, default=None)
    if f.type == "int":
        lo, hi = _INT_RANGES[key]
        return take(obj, key, int, what, default=None, lo=lo, hi=hi)
    if f.type == "Optional[str]":  # a folder; None or "" (the dialog's empty box): the default folder
        value = take(obj, key, str, what, default=None, max_len=_PATH_MAX)
        if value is not None and "\0" in value:
            raise UntrustedDataError(f"{what}: '{key}' holds a NUL character, which no folder name can")
        return (value.strip() or None) if value is not None else None
    value = take(obj, key, str, what, default=None, max_len=200)
    if value is None:
        return None
    if not value.strip():
        raise UntrustedDataError(f"{what}: '{key}' is empty")
    if key in _CHOICES:
        check, allowed = _CHOICES[key]
        value = value.strip().lower()  # as pick_device / pick_precision read it
        if not check(value):
            raise UntrustedDataError(f"{what}: '{key}' is '{display(value)}', not one of {allowed}")
    return value

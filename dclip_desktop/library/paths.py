"""Where the attribute library and the latent cache live.

Precedence: an explicit override (a setting or a constructor argument), then the environment
(DCLIP_LIBRARY_DIR, DCLIP_LATENT_CACHE_DIR: tests and portable installs), then the platform dirs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import platformdirs

APP = "dclip-desktop"
LIBRARY_ENV = "DCLIP_LIBRARY_DIR"
LATENT_CACHE_ENV = "DCLIP_LATENT_CACHE_DIR"

PathLike = Union[str, "os.PathLike[str]"]


def _resolve(override: Optional[PathLike], env: str, default: Path) -> Path:
    if override:
        return Path(override).expanduser()
    value = os.environ.get(env)
    if value:
        return Path(value).expanduser()
    return default


def library_dir(override: Optional[PathLike] = None) -> Path:
    """The attribute library: <user data dir>/library unless overridden."""
    return _resolve(override, LIBRARY_ENV, Path(platformdirs.user_data_dir(APP)) / "library")


def latent_cache_dir(override: Optional[PathLike] = None) -> Path:
    """The inversion-latent cache: <user cache dir>/latents unless overridden."""
    return _resolve(override, LATENT_CACHE_ENV, Path(platformdirs.user_cache_dir(APP)) / "latents")

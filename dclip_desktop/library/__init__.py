"""Attribute library and latent cache on disk (safetensors + JSON manifests). No Qt here.

    from dclip_desktop.library.store import Library, AttributeEntry
    from dclip_desktop.library.cache import LatentCache, LatentKey
"""

from .errors import DamagedEntryError, LibraryError

__all__ = ["DamagedEntryError", "LibraryError"]

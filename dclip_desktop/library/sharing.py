"""Attributes coming in from other people: what a .dclip bundle is read into, and the checks any
import (.dclip or official .pth) passes before anything is written to the library."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from torch import nn

from . import manifest as mf
from . import weights as wf
from .errors import LibraryError
from .names import check_name, received_text


def read_for_import(path: Path, name: Optional[str] = None) -> tuple[dict, dict[str, bytes]]:
    """(manifest, files) of the .dclip bundle at `path`, under `name` when the user typed one (checked),
    else under the name the bundle carries (escaped, like its texts: see received_text)."""
    from .bundle import read_bundle

    manifest, files = read_bundle(path)
    name = check_name(name) if name else check_name(received_text(manifest["name"]))
    for key in ("source", "target"):
        if key in manifest:
            manifest[key] = received_text(manifest[key])
    manifest["name"] = name
    manifest.setdefault("imported", {"from": path.name, "at": mf.utc_now_iso()})
    return manifest, files


def check_import(path: Path, kind: str, weights, base_id: str, base_model: Optional[nn.Module] = None) -> None:
    """Refuse weights about to be imported from `path` (bytes as stored, or decoded tensors) with
    one line naming the file and the problem.

    Finite values and at least one tensor always; names, shapes and a plausible size of the change
    against the base model (`base_model`, else the installed base of that id). When the base is not
    installed those checks happen at first use instead (`Library.materialize`)."""
    name = Path(path).name
    try:
        if isinstance(weights, (bytes, bytearray)):
            weights = wf.decode(weights, kind)
        else:
            wf.check_finite(weights)
    except LibraryError as exc:
        raise LibraryError(f"{name}: {exc}; the file is not imported") from None
    model = base_model if base_model is not None else _installed_base(base_id)
    if model is None:
        return
    try:
        wf.check_fit(kind, weights, dict(model.named_parameters()))
    except LibraryError as exc:
        raise LibraryError(f"{name} does not fit base '{base_id}': {exc}; the file is not imported") from None


def base_installed(base_id: Optional[str]) -> bool:
    """Whether an import for `base_id` checks names and shapes now (the base is installed) or only
    at first use."""
    from ..zoo import download, registry

    try:
        return download.is_installed(registry.get_base(base_id))
    except registry.UnknownBaseError:
        return False


def _installed_base(base_id: Optional[str]) -> Optional[nn.Module]:
    """The base model to check an import against, or None when it is unknown or not installed
    (nothing is downloaded for an import)."""
    if not base_installed(base_id):
        return None
    from ..zoo.loading import load_base

    return load_base(base_id, "cpu", offline=True)

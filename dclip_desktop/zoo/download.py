"""Model weights in the app cache: where each model's files live, whether they are there, and
fetching, verifying and repairing them. These work on the registry's specs and are what the CLI
(`dclip models ...`) and the GUI's Models dialog call; the one-URL engine under them is `fetcher.py`.
Files land under the cache root:

    <cache root>/hf/<owner>--<repo>/<revision or main>/<file>      Hugging Face repos (bases, CLIP)
    <cache root>/facenet/<file>                                     the face net
    <cache root>/bases/<id>/<file>                                  bases without a hub repo (ADM)

Environment: DCLIP_CACHE_DIR (cache root), DCLIP_FACENET_URL (the face net's file, or a folder URL ending
in "/" that holds it: a mirror, since it is not on the hub); fetcher.py reads the network settings.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional
from urllib.parse import quote

from . import registry
from .fetcher import (
    CHUNK,
    DEFAULT_ENDPOINT,
    FIRST_USE,
    HUB_CHECKED,
    LOCK_SUFFIX,
    PART_SUFFIX,
    PINNED,
    SIDECAR_SUFFIX,
    ChecksumError,
    DownloadError,
    MissingWeightsError,
    ProgressFn,
    add_command,
    download_command,
    fetch,
    hf_endpoint,
    hf_file_url,
    is_offline,
    recorded_sha256,
    recorded_trust,
    repair,
    sha256_file,
    sidecar_path,
    verify,
    write_sidecar,
)

# Callers use `download.X` for the engine's names too: one module to import for "model weights".
__all__ = [
    "CHUNK", "DEFAULT_ENDPOINT", "FIRST_USE", "HUB_CHECKED", "LOCK_SUFFIX", "PART_SUFFIX", "PINNED", "SIDECAR_SUFFIX",
    "ChecksumError", "DownloadError", "MissingWeightsError", "ProgressFn", "add_command", "cache_root", "download",
    "download_base", "download_command", "ensure", "fetch", "hf_endpoint", "hf_file_url", "is_installed",
    "is_offline", "local_file", "model_dir", "recorded_sha256", "recorded_trust", "repair",
    "sha256_file", "sidecar_path", "verify", "verify_base", "verify_model", "write_sidecar",
]
FACENET_URL_ENV = "DCLIP_FACENET_URL"


# --- the cache ----------------------------------------------------------------------------------
def cache_root() -> Path:
    env = os.environ.get("DCLIP_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("dclip-desktop")) / "models"


# --- model-level helpers ------------------------------------------------------------------------
def _spec(model_or_spec):
    if isinstance(model_or_spec, (registry.BaseSpec, registry.ClipSpec, registry.FaceSpec)):
        return model_or_spec
    return registry.get_any(model_or_spec)


def _is_demo(spec) -> bool:
    return bool(getattr(spec, "is_demo", False))


def model_dir(model_or_spec) -> Path:
    """Where the model's files live in the cache."""
    spec = _spec(model_or_spec)
    if isinstance(spec, registry.FaceSpec):
        return cache_root() / "facenet"
    if getattr(spec, "repo_id", None):
        return cache_root() / "hf" / spec.repo_id.replace("/", "--") / (spec.revision or "main")
    return cache_root() / "bases" / spec.id


def _urls(spec, name: str) -> str:
    if getattr(spec, "repo_id", None):
        return hf_file_url(spec.repo_id, name, spec.revision)
    url = getattr(spec, "url", None)
    override = os.environ.get(FACENET_URL_ENV, "").strip() if isinstance(spec, registry.FaceSpec) else ""
    if override:  # a folder URL ("…/") holds the file under its own name; otherwise it is the file's URL
        return override + quote(name) if override.endswith("/") else override
    if not url:
        where = getattr(spec, "manual_source", "") or "the model's publisher"
        raise DownloadError(
            f"'{spec.id}' has no download source: get {name} from {where}, then install it with: "
            f"{add_command(spec.id)} (it goes into {model_dir(spec)})"
        )
    return url if url.rsplit("/", 1)[-1] == name else url.rsplit("/", 1)[0] + "/" + quote(name)


def _by_hand(spec, name: str) -> str:
    """How to install a file of `spec` without this app's download (the face net has no `models add`)."""
    if not isinstance(spec, registry.FaceSpec):
        return ""
    return (f" Or put {name} into {model_dir(spec)} by hand (from {spec.url}); "
            f"behind a mirror, set {FACENET_URL_ENV} to its URL.")


def local_file(model_or_spec, file: registry.FileSpec) -> Optional[Path]:
    """The cached copy of `file` (or of its alternative), if present."""
    folder = model_dir(model_or_spec)
    for name in (file.name, file.alternative):
        if name and (folder / name).is_file():
            return folder / name
    return None


def _demo_installed(spec) -> bool:
    try:
        if isinstance(spec, registry.BaseSpec):
            from ..demo.tiny_clip import UNET_SUBDIR, demo_dir

            return (demo_dir() / UNET_SUBDIR / "diffusion_pytorch_model.safetensors").is_file()
        from ..demo.tiny_clip import CLIP_WEIGHTS_FILE, demo_dir

        return (demo_dir() / CLIP_WEIGHTS_FILE).is_file()
    except (ImportError, FileNotFoundError):
        return False


def is_installed(model_or_spec) -> bool:
    spec = _spec(model_or_spec)
    if _is_demo(spec):
        return _demo_installed(spec)
    return all(local_file(spec, f) is not None for f in spec.files)


def ensure(
    model_or_spec,
    progress: Optional[ProgressFn] = None,
    cancel=None,
    offline: Optional[bool] = None,
    repair_bad: bool = False,
    **fetch_kwargs,
) -> Path:
    """Every file of the model in the cache (downloading what is missing); returns its folder.

    With `repair_bad`, files already there are verified too and re-downloaded when damaged."""
    spec = _spec(model_or_spec)
    if _is_demo(spec):
        from ..demo.tiny_clip import demo_dir

        return demo_dir()
    if repair_bad:
        verify_model(spec, repair_bad=True, progress=progress, cancel=cancel, offline=offline, **fetch_kwargs)
    folder = model_dir(spec)
    for f in spec.files:
        if local_file(spec, f) is not None:
            continue
        try:
            try:
                _fetch_one(spec, f, f.name, progress, cancel, offline, **fetch_kwargs)
            except DownloadError as exc:
                if exc.status != 404 or not f.alternative:
                    raise
                _fetch_one(spec, f, f.alternative, progress, cancel, offline, **fetch_kwargs)
        except MissingWeightsError as exc:
            hint = _by_hand(spec, exc.filename)
            if not hint:
                raise
            raise MissingWeightsError(exc.filename, spec.id, exc.path, exc.reason, exc.weights, hint) from None
        except DownloadError as exc:
            hint = _by_hand(spec, f.name)
            if not hint:
                raise
            raise type(exc)(f"{exc}.{hint}", status=exc.status) from exc
    return folder


def _fetch_one(spec, f: registry.FileSpec, name: str, progress, cancel, offline, **fetch_kwargs) -> Path:
    return fetch(_urls(spec, name), model_dir(spec) / name, f.pinned_sha256(name), progress, cancel,
                 offline=offline, model_id=spec.id, weights=f.weights, **fetch_kwargs)


def download(
    model_id,
    progress: Optional[ProgressFn] = None,
    cancel=None,
    offline: Optional[bool] = None,
    **fetch_kwargs,
) -> Path:
    """`dclip models download <id>`: fetch a base, CLIP or face model into the cache.

    Files already there are verified, and damaged ones downloaded again."""
    return ensure(model_id, progress, cancel, offline, repair_bad=True, **fetch_kwargs)


download_base = download


def verify_model(
    model_id,
    repair_bad: bool = False,
    progress: Optional[ProgressFn] = None,
    cancel=None,
    offline: Optional[bool] = None,
    **fetch_kwargs,
) -> list[tuple[str, bool, str]]:
    """(file, ok, reason) for each file of the model; with `repair_bad`, refetch the bad ones."""
    spec = _spec(model_id)
    if _is_demo(spec):
        ok = _demo_installed(spec)
        return [("demo weights", ok, "bundled demo weights " + ("present" if ok else "missing"))]
    out, fetch_missing = [], False
    for f in spec.files:
        path = local_file(spec, f)
        if path is None:
            if repair_bad:  # fetched by ensure() below (with the 404 fallback to the alternative)
                fetch_missing = True
                out.append((f.name, True, f"{f.name}: missing → downloaded"))
                continue
            ok, reason = False, f"{f.name}: missing"
        else:
            ok, reason = verify(path, f.pinned_sha256(path.name))
        if not ok and repair_bad:
            target = path or model_dir(spec) / f.name
            repair(
                _urls(spec, target.name),
                target,
                f.pinned_sha256(target.name),
                progress=progress,
                cancel=cancel,
                offline=offline,
                model_id=spec.id,
                **fetch_kwargs,
            )
            ok, reason = True, reason + " → repaired"
        out.append((path.name if path else f.name, ok, reason))
    if fetch_missing:
        ensure(spec, progress=progress, cancel=cancel, offline=offline, **fetch_kwargs)
    return out


def verify_base(
    model_id,
    progress: Optional[ProgressFn] = None,
    repair_bad: bool = True,
    cancel=None,
    offline: Optional[bool] = None,
) -> str:
    """A one-line verify (and repair) summary for the GUI's Models dialog: the problems, or every
    file's state. Offline, nothing is downloaded: a file that needs fetching raises MissingWeightsError."""
    rows = verify_model(model_id, repair_bad=repair_bad, progress=progress, cancel=cancel, offline=offline)
    bad = [r for _, ok, r in rows if not ok]
    if bad:
        return "problems: " + "; ".join(bad)
    return "; ".join(r for _, _, r in rows)

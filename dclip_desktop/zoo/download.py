"""Download manager for model weights: resumable, retried, checksummed, atomic, and offline-safe.

`fetch()` is the primitive (one URL → one file). The model-level helpers (`download`, `verify_model`,
`is_installed`, `ensure`) work on the registry's specs and are what the CLI (`dclip models ...`) and the
GUI's Models dialog call. Files land under the cache root:

    <cache root>/hf/<owner>--<repo>/<revision or main>/<file>      Hugging Face repos (bases, CLIP)
    <cache root>/facenet/<file>                                     the face net
    <cache root>/bases/<id>/<file>                                  bases with a direct URL (ADM)

Environment: DCLIP_CACHE_DIR (cache root), DCLIP_OFFLINE=1 (never touch the network),
HF_ENDPOINT (hub address, e.g. a mirror), HF_TOKEN (sent to the hub only).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Optional, Union
from urllib.parse import quote

from . import registry

CHUNK = 1 << 20
SIDECAR_SUFFIX = ".sha256"
PART_SUFFIX = ".part"
DEFAULT_ENDPOINT = "https://huggingface.co"
ProgressFn = Callable[[int, int], None]


class DownloadError(OSError):
    """A download failed (network, HTTP status, checksum); the .part file is kept for resuming."""

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.status = status


class ChecksumError(DownloadError):
    pass


class MissingWeightsError(FileNotFoundError):
    """A weights file is not in the cache and the network may not be used (offline mode)."""

    def __init__(
        self,
        filename: str,
        model_id: Optional[str] = None,
        path: Optional[Path] = None,
        reason: str = "offline mode is on (DCLIP_OFFLINE=1 or --offline), so nothing was downloaded",
    ) -> None:
        self.filename, self.model_id, self.path = filename, model_id, path
        self.command = download_command(model_id) if model_id else None
        where = f" (expected at {path})" if path else ""
        whose = f" of '{model_id}'" if model_id else ""
        how = (
            f" Fetch it with: {self.command}"
            if self.command
            else " Download it first, or switch offline mode off."
        )
        super().__init__(f"missing weights file '{filename}'{whose}{where}: {reason}.{how}")

    def __str__(self) -> str:  # FileNotFoundError's own __str__ would format errno/filename
        return self.args[0]


def download_command(model_id: str) -> str:
    return f"dclip models download {model_id}"


# --- settings -----------------------------------------------------------------------------------
def cache_root() -> Path:
    env = os.environ.get("DCLIP_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("dclip-desktop")) / "models"


def is_offline(offline: Optional[bool] = None) -> bool:
    """Offline when asked for, or when DCLIP_OFFLINE is set to a true value (the environment always wins)."""
    env = os.environ.get("DCLIP_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return bool(offline) or env


def hf_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hf_file_url(repo_id: str, filename: str, revision: Optional[str] = None) -> str:
    """The hub's standard resolve URL: {endpoint}/{repo_id}/resolve/{revision}/{filename}."""
    return f"{hf_endpoint()}/{repo_id}/resolve/{quote(revision or 'main', safe='')}/{quote(filename)}"


# --- checksums ----------------------------------------------------------------------------------
def sha256_file(path: Union[str, Path], cancel=None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK * 4):
            _check_cancel(cancel)
            h.update(block)
    return h.hexdigest()


def sidecar_path(path: Union[str, Path]) -> Path:
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def recorded_sha256(path: Union[str, Path]) -> Optional[str]:
    side = sidecar_path(path)
    try:
        text = side.read_text().strip()
    except OSError:
        return None
    token = text.split()[0].lower() if text else ""
    return token if re.fullmatch(r"[0-9a-f]{64}", token) else None


def _write_sidecar(path: Path, sha: str) -> None:
    side = sidecar_path(path)
    tmp = side.with_name(side.name + ".tmp")
    tmp.write_text(f"{sha}  {path.name}\n")
    os.replace(tmp, side)


def verify(path: Union[str, Path], sha256: Optional[str] = None) -> tuple[bool, str]:
    """Check a cached file against `sha256` or, failing that, its recorded sidecar checksum."""
    path = Path(path)
    if not path.is_file():
        return False, f"{path.name}: missing"
    expected = (sha256 or recorded_sha256(path) or "").lower() or None
    if expected is None:
        return True, f"{path.name}: present, no checksum recorded (not verified)"
    actual = sha256_file(path)
    if actual != expected:
        return False, f"{path.name}: checksum mismatch (expected {expected[:12]}…, got {actual[:12]}…)"
    return True, f"{path.name}: ok (sha256 {actual[:12]}…)"


# --- the fetch primitive ------------------------------------------------------------------------
def _check_cancel(cancel) -> None:
    if cancel is None:
        return
    if callable(getattr(cancel, "is_set", None)):
        hit = cancel.is_set()
    elif hasattr(cancel, "cancelled"):
        hit = bool(cancel.cancelled)
    else:
        hit = bool(cancel())
    if hit:
        from ..core.cancel import Cancelled

        raise Cancelled("download cancelled by user (the partial file is kept and resumes next time)")


def _auth_headers(url: str) -> dict:
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token and url.startswith(hf_endpoint() + "/"):
        return {"Authorization": f"Bearer {token}"}
    return {}


def _linked_sha(response) -> Optional[str]:
    """The hub sends an LFS file's sha256 as X-Linked-Etag (on the redirect or the final response)."""
    for r in [*response.history, response]:
        tag = (r.headers.get("X-Linked-Etag") or "").strip('"W/ ').lower()
        if re.fullmatch(r"[0-9a-f]{64}", tag):
            return tag
    return None


def _chunks(response):
    """The body as it arrives: read1() hands over every byte received before a connection drops, so a
    resumed download loses nothing (iter_content would drop a partly filled chunk)."""
    raw = response.raw
    if hasattr(raw, "read1"):  # urllib3 >= 2
        while chunk := raw.read1(CHUNK):
            yield chunk
    else:
        yield from response.iter_content(64 * 1024)


def _one_attempt(url: str, part: Path, timeout: float, progress, cancel) -> Optional[str]:
    """Download into `part` (resuming from its size). Returns the server-announced sha256, if any."""
    import requests
    import urllib3

    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "dclip-desktop", "Accept-Encoding": "identity", **_auth_headers(url)}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        r = requests.get(url, headers=headers, stream=True, timeout=timeout, allow_redirects=True)
    except requests.RequestException as exc:
        raise DownloadError(f"cannot reach {url}: {exc}") from exc
    with r:
        announced = _linked_sha(r)
        if r.status_code == 416 and offset:  # the part is already complete (or bigger than the file)
            m = re.search(r"/(\d+)", r.headers.get("Content-Range", ""))
            if m and int(m.group(1)) == offset:
                return announced
            part.unlink()
            raise DownloadError(f"{url}: partial file does not fit the server's file; restarting", status=416)
        if r.status_code >= 400:
            raise DownloadError(f"{url}: HTTP {r.status_code} {r.reason}", status=r.status_code)
        if r.status_code == 206:
            m = re.match(r"bytes (\d+)-", r.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != offset:
                part.unlink()
                raise DownloadError(f"{url}: server resumed at the wrong offset; restarting", status=206)
            mode = "ab"
        else:  # 200: the server ignored the Range header, start over
            offset, mode = 0, "wb"
        length = r.headers.get("Content-Length")
        total = offset + int(length) if length is not None and length.isdigit() else 0
        done = offset
        if progress:
            progress(done, total)
        with open(part, mode) as f:
            try:
                for chunk in _chunks(r):
                    _check_cancel(cancel)
                    if chunk:
                        f.write(chunk)
                        done += len(chunk)
                        if progress:
                            progress(done, total)
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                raise DownloadError(f"{url}: connection lost after {done} bytes ({exc})") from exc
            f.flush()
            os.fsync(f.fileno())
        if total and done != total:
            raise DownloadError(f"{url}: connection closed after {done} of {total} bytes")
        return announced


def fetch(
    url: str,
    dest: Union[str, Path],
    sha256: Optional[str] = None,
    progress: Optional[ProgressFn] = None,
    cancel=None,
    timeout: float = 30,
    retries: int = 3,
    offline: Optional[bool] = None,
    model_id: Optional[str] = None,
    backoff: float = 1.0,
) -> Path:
    """Download `url` to `dest` unless it is already there (and matches `sha256` when given).

    Resumes `dest.part` with an HTTP Range request, retries network errors `retries` times with
    exponential backoff, verifies `sha256` (else the hub's X-Linked-Etag when sent), renames
    atomically, and records the file's sha256 in `<dest>.sha256`. In offline mode it never touches
    the network and raises MissingWeightsError (naming `model_id`'s download command) instead.
    """
    dest = Path(dest)
    expected = sha256.lower() if sha256 else None
    if dest.is_file():
        if expected is None:
            return dest
        recorded = recorded_sha256(dest)
        if recorded == expected or (recorded is None and sha256_file(dest) == expected):
            if recorded is None:
                _write_sidecar(dest, expected)
            return dest
    if is_offline(offline):
        if dest.is_file():
            raise MissingWeightsError(
                dest.name,
                model_id,
                dest,
                "the cached copy does not match its sha256 and "
                "offline mode is on, so it was not downloaded again",
            )
        raise MissingWeightsError(dest.name, model_id, dest)

    from filelock import FileLock

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + PART_SUFFIX)
    with FileLock(str(dest) + ".lock"):
        attempt = 0
        while True:
            _check_cancel(cancel)
            try:
                announced = _one_attempt(url, part, timeout, progress, cancel)
                break
            except DownloadError as exc:
                retryable = exc.status is None or exc.status in (206, 408, 416, 425, 429) or exc.status >= 500
                if not retryable or attempt >= retries:
                    raise
                attempt += 1
                if backoff:
                    time.sleep(min(backoff * 2 ** (attempt - 1), 30.0))
        actual = sha256_file(part, cancel)
        want = expected or announced
        if want and actual != want:
            part.unlink(missing_ok=True)
            raise ChecksumError(
                f"{dest.name}: downloaded file has sha256 {actual}, expected {want}; "
                "the partial file was deleted, run the download again"
            )
        if dest.exists():
            dest.unlink()
        os.replace(part, dest)
        _write_sidecar(dest, actual)
    return dest


def repair(url: str, dest: Union[str, Path], sha256: Optional[str] = None, **kwargs) -> Path:
    """Delete a (corrupt) cached file, its sidecar and any partial file, then download it again."""
    dest = Path(dest)
    for p in (dest, sidecar_path(dest), dest.with_name(dest.name + PART_SUFFIX)):
        p.unlink(missing_ok=True)
    return fetch(url, dest, sha256=sha256, **kwargs)


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
    if not url:
        raise DownloadError(f"'{spec.id}' has no download source")
    return url if url.rsplit("/", 1)[-1] == name else url.rsplit("/", 1)[0] + "/" + quote(name)


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
            fetch(
                _urls(spec, f.name),
                folder / f.name,
                f.sha256,
                progress,
                cancel,
                offline=offline,
                model_id=spec.id,
                **fetch_kwargs,
            )
        except DownloadError as exc:
            if exc.status != 404 or not f.alternative:
                raise
            fetch(
                _urls(spec, f.alternative),
                folder / f.alternative,
                None,
                progress,
                cancel,
                offline=offline,
                model_id=spec.id,
                **fetch_kwargs,
            )
    return folder


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
            ok, reason = verify(path, f.sha256 if path.name == f.name else None)
        if not ok and repair_bad:
            target = path or model_dir(spec) / f.name
            repair(
                _urls(spec, target.name),
                target,
                f.sha256 if target.name == f.name else None,
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


def verify_base(model_id, progress: Optional[ProgressFn] = None, repair_bad: bool = True, cancel=None) -> str:
    """A one-line verify (and repair) summary for the GUI's Models dialog."""
    rows = verify_model(model_id, repair_bad=repair_bad, progress=progress, cancel=cancel)
    bad = [r for _, ok, r in rows if not ok]
    if bad:
        return "problems: " + "; ".join(bad)
    return "; ".join(r for _, _, r in rows)

"""The fetch engine: one URL to one file, resumed, retried, checksummed, atomic and offline-safe.

`fetch()` resumes a `.part` file with an HTTP Range request, retries network errors with backoff,
checks the sha256 (given, or the hub's X-Linked-Etag), renames into place and records the sha256 in a
`<file>.sha256` sidecar. It knows URLs and files, not models: the model-level API is `download.py`.

Environment: DCLIP_OFFLINE=1 (never touch the network), HF_ENDPOINT (hub address, e.g. a mirror),
HF_TOKEN (sent to the hub only).
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

from ..errors import MissingWeights

CHUNK = 1 << 20
SIDECAR_SUFFIX = ".sha256"
PART_SUFFIX = ".part"
DEFAULT_ENDPOINT = "https://huggingface.co"
ProgressFn = Callable[[int, int], None]


class DownloadError(OSError, MissingWeights):
    """A download failed (network, HTTP status, checksum); the .part file is kept for resuming."""

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.status = status


class ChecksumError(DownloadError):
    pass


class MissingWeightsError(FileNotFoundError, MissingWeights):
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


def add_command(model_id: str) -> str:
    """The command that installs a weights file the user has (`zoo/add_file.py`)."""
    return f"dclip models add {model_id} PATH"


# --- settings -----------------------------------------------------------------------------------
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


def write_sidecar(path: Path, sha: str) -> None:
    """Record `sha` as the file's checksum in `<file>.sha256` ("<sha>  <name>", as sha256sum writes it)."""
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
                write_sidecar(dest, expected)
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
        write_sidecar(dest, actual)
    return dest


def repair(url: str, dest: Union[str, Path], sha256: Optional[str] = None, **kwargs) -> Path:
    """Delete a (corrupt) cached file, its sidecar and any partial file, then download it again."""
    dest = Path(dest)
    for p in (dest, sidecar_path(dest), dest.with_name(dest.name + PART_SUFFIX)):
        p.unlink(missing_ok=True)
    return fetch(url, dest, sha256=sha256, **kwargs)

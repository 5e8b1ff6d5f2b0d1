"""The fetch engine: one URL to one file, resumed, retried, checksummed, atomic and offline-safe.

`fetch()` resumes a `.part` file with an HTTP Range request, retries network errors with backoff,
checks the sha256 (given, or the hub's X-Linked-Etag), renames into place and records the sha256 in a
`<file>.sha256` sidecar. It knows URLs and files, not models: the model-level API is `download.py`.

Trust: a file with a pinned sha256 (the registry's) is checked against it. A file without one is trusted
on first use: the download says so (a `dclip_desktop` warning) and its sidecar records what was seen, so
every later check compares against that first download (`verify` reports it as first-use).

Environment: DCLIP_OFFLINE=1 (never touch the network), HF_ENDPOINT (hub address, e.g. a mirror),
HF_TOKEN (sent to the hub only).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional, Union
from urllib.parse import quote

from ..errors import MissingWeights

CHUNK = 1 << 20
SIDECAR_SUFFIX = ".sha256"
PART_SUFFIX = ".part"
LOCK_SUFFIX = ".lock"
DEFAULT_ENDPOINT = "https://huggingface.co"
ProgressFn = Callable[[int, int], None]
# How a file's recorded sha256 was established (the sidecar's second line; old sidecars have none).
PINNED, HUB_CHECKED, FIRST_USE = "pinned", "hub", "first-use"
log = logging.getLogger(__name__)


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
        weights: bool = True,
        hint: str = "",
    ) -> None:
        self.filename, self.model_id, self.path = filename, model_id, path
        self.reason, self.weights = reason, weights
        self.command = download_command(model_id) if model_id else None
        where = f" (expected at {path})" if path else ""
        whose = f" of '{model_id}'" if model_id else ""
        how = (
            f" Fetch it with: {self.command}"
            if self.command
            else " Download it first, or switch offline mode off."
        )
        what = "weights file" if weights else "file"  # config.json is a file of the model, not weights
        super().__init__(f"missing {what} '{filename}'{whose}{where}: {reason}.{how}{hint}")

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


def recorded_trust(path: Union[str, Path]) -> Optional[str]:
    """How the sidecar's sha256 was established (PINNED, HUB_CHECKED, FIRST_USE); None for old sidecars
    and files installed by hand."""
    try:
        lines = sidecar_path(path).read_text().splitlines()
    except OSError:
        return None
    m = re.match(r"#\s*trust:\s*(\S+)", lines[1]) if len(lines) > 1 else None
    return m.group(1) if m else None


def write_sidecar(path: Path, sha: str, trust: Optional[str] = None, source: str = "") -> None:
    """Record `sha` as the file's checksum in `<file>.sha256` ("<sha>  <name>", as sha256sum writes it),
    and with `trust`, a second line saying how it was established, where from and when."""
    side = sidecar_path(path)
    tmp = side.with_name(side.name + ".tmp")
    text = f"{sha}  {path.name}\n"
    if trust:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        text += f"# trust: {trust} {when} {source}".rstrip() + "\n"
    tmp.write_text(text)
    os.replace(tmp, side)


def verify(path: Union[str, Path], sha256: Optional[str] = None) -> tuple[bool, str]:
    """Check a cached file against its pinned `sha256` or, with no pin, the sha256 recorded when it was
    first downloaded (or installed). The reason says which: "pinned", "first-use" or "MISMATCH"."""
    path = Path(path)
    if not path.is_file():
        return False, f"{path.name}: missing"
    pin = sha256.lower() if sha256 else None
    expected = pin or recorded_sha256(path)
    if expected is None:
        return True, f"{path.name}: present, no checksum recorded (not verified)"
    actual = sha256_file(path)
    if actual != expected:
        against = "pinned" if pin else "recorded at first use"
        return False, (f"{path.name}: MISMATCH (checksum mismatch: {against} {expected[:12]}…, "
                       f"got {actual[:12]}…)")
    if pin:
        return True, f"{path.name}: pinned (sha256 {actual[:12]}… is the published one)"
    how = "checked against the hub's at download" if recorded_trust(path) == HUB_CHECKED else "no published checksum"
    return True, f"{path.name}: first-use (sha256 {actual[:12]}… as first recorded; {how})"


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
    weights: bool = True,
) -> Path:
    """Download `url` to `dest` unless it is already there (and matches `sha256` when given).

    Resumes `dest.part` with an HTTP Range request, retries network errors `retries` times with
    exponential backoff, verifies `sha256` (else the hub's X-Linked-Etag when sent), renames
    atomically, and records the file's sha256 in `<dest>.sha256` (with how far it is trusted: without
    a `sha256`, a warning says it is trusted on first use). In offline mode it never touches the network
    and raises MissingWeightsError (naming `model_id`'s download command) instead. `weights`: whether
    that error calls it a weights file.
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
                weights=weights,
            )
        raise MissingWeightsError(dest.name, model_id, dest, weights=weights)

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + PART_SUFFIX)
    with _fetch_lock(dest.with_name(dest.name + LOCK_SUFFIX)):
        if dest.is_file() and (not expected or recorded_sha256(dest) == expected):
            return dest  # another process fetched it while this one waited for the lock
        announced = _download_part(url, part, timeout, retries, backoff, progress, cancel)
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
        trust = PINNED if expected else HUB_CHECKED if announced else FIRST_USE
        write_sidecar(dest, actual, trust, url)
    if not expected:
        checked = ", it matches the server's checksum" if announced else ""
        log.warning(f"{dest.name}: no published checksum, trusted on first use (sha256 {actual[:12]}…{checked}); "
                    f"recorded in {sidecar_path(dest).name}, which `dclip models verify` checks it against")
    return dest


def _download_part(url, part: Path, timeout, retries, backoff, progress, cancel) -> Optional[str]:
    """`_one_attempt` until it succeeds, retrying network errors with exponential backoff."""
    attempt = 0
    while True:
        _check_cancel(cancel)
        try:
            return _one_attempt(url, part, timeout, progress, cancel)
        except DownloadError as exc:
            retryable = exc.status is None or exc.status in (206, 408, 416, 425, 429) or exc.status >= 500
            if not retryable or attempt >= retries:
                raise
            attempt += 1
            if backoff:
                time.sleep(min(backoff * 2 ** (attempt - 1), 30.0))


@contextmanager
def _fetch_lock(lock: Path) -> Iterator[None]:
    """One process at a time fetches a file; the lock file is gone again when the fetch ends.

    On POSIX the lock file is removed while still held, so a process waiting on it wakes holding a lock on
    a deleted file: it notices (the path is gone or names another file) and locks afresh. filelock's Unix
    lock cannot do that check, so it would leave a `.lock` beside every cached file. Its Windows lock
    removes the file itself."""
    if os.name != "posix":
        from filelock import FileLock

        with FileLock(str(lock)):
            yield
        return
    import fcntl

    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.path.exists(lock) and os.path.samestat(os.fstat(fd), os.stat(lock)):
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        yield
    finally:
        try:
            os.unlink(lock)
        except OSError:
            pass
        os.close(fd)


def repair(url: str, dest: Union[str, Path], sha256: Optional[str] = None, **kwargs) -> Path:
    """Delete a (corrupt) cached file, its sidecar and any partial file, then download it again."""
    dest = Path(dest)
    for p in (dest, sidecar_path(dest), dest.with_name(dest.name + PART_SUFFIX)):
        p.unlink(missing_ok=True)
    return fetch(url, dest, sha256=sha256, **kwargs)

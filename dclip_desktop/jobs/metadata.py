"""The settings an output carries (a `dclip` text chunk in the PNG): read without decoding pixels and
checked field by field, since anyone can hand the app a PNG. `dclip info`, Load settings in the GUI and
re-running an edit from its output all read them here."""

from __future__ import annotations

import os
import struct
import zlib
from typing import Any, Optional

from ..core.mixing import WeightSchedule, validate_degree
from ..core.schedule import T
from ..untrusted import MAX_TEXT, display, loads_object, open_regular, take
from .edit_job import SAMPLERS, EditRequest
from .errors import JobError, os_error_message
from .images import FIT_POLICIES, METADATA_KEY


class MetadataError(JobError):
    """An image's DiffusionCLIP Desktop settings are missing, damaged or not what this app writes."""


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_KEYWORD_MAX = 80  # a PNG text keyword is 1–79 bytes and a NUL
_TEXT_CHUNK_MAX = MAX_TEXT + 1024  # our JSON (bounded as all untrusted JSON) plus the chunk's own fields


def _inflate(data: bytes, what: str) -> bytes:
    """zlib data of at most MAX_TEXT bytes once inflated: a zTXt/iTXt bomb stops at the bound."""
    z = zlib.decompressobj()
    try:
        out = z.decompress(data, MAX_TEXT + 1)
    except zlib.error:
        raise MetadataError(f"{what}: the settings text is damaged (bad compression)") from None
    if len(out) > MAX_TEXT or z.unconsumed_tail:
        raise MetadataError(f"{what}: the settings text is implausibly large (over {MAX_TEXT} bytes)")
    return out


def _text_value(ctype: bytes, body: bytes, what: str) -> str:
    """The text of a tEXt, zTXt or iTXt chunk body after its keyword and NUL (PNG spec §11.3.4)."""
    if ctype == b"tEXt":
        return body.decode("latin-1")
    if ctype == b"zTXt":
        return _inflate(body[1:], what).decode("latin-1")
    try:  # iTXt: compression flag, method, language NUL, translated keyword NUL, UTF-8 text
        compressed = body[0] == 1
        _lang, _translated, text = body[2:].split(b"\0", 2)
        return (_inflate(text, what) if compressed else text).decode("utf-8")
    except MetadataError:
        raise
    except (IndexError, ValueError):
        raise MetadataError(f"{what}: the settings text is damaged") from None


def _png_text(fh, key: str, what: str) -> Optional[str]:
    """The text chunk `key` of the PNG `fh`, found by walking the chunks and seeking over the others.

    Pillow is not used here: Image.open refuses a header over its pixel limit (DecompressionBombError)
    and `img.text` decodes every pixel to find chunks after the image data, while settings need neither.
    """
    if fh.read(8) != _PNG_SIGNATURE:
        raise MetadataError(f"{what}: not a PNG image (only PNGs this app wrote carry settings)")
    want = key.encode("latin-1")
    while True:
        head = fh.read(8)
        if len(head) < 8:  # truncated after the last complete chunk: no settings here
            return None
        length, ctype = struct.unpack(">I4s", head)
        if ctype == b"IEND":
            return None
        if ctype not in (b"tEXt", b"zTXt", b"iTXt"):
            fh.seek(length + 4, os.SEEK_CUR)  # data and CRC
            continue
        prefix = fh.read(min(length, _KEYWORD_MAX))
        keyword, nul, _ = prefix.partition(b"\0")
        if keyword != want or not nul:
            fh.seek(length - len(prefix) + 4, os.SEEK_CUR)
            continue
        if length > _TEXT_CHUNK_MAX:
            raise MetadataError(f"{what}: the settings text is implausibly large ({length} bytes)")
        data = prefix + fh.read(length - len(prefix))
        crc = fh.read(4)
        if len(data) < length or len(crc) < 4 or zlib.crc32(ctype + data) != struct.unpack(">I", crc)[0]:
            raise MetadataError(f"{what}: the settings text is damaged (truncated or bad checksum)")
        return _text_value(ctype, data[len(keyword) + 1:], what)


def read_metadata(path: str | os.PathLike) -> dict:
    """The settings a PNG this app wrote carries (see `parse_metadata`), read from its text chunk
    without decoding the image. Raises only MetadataError, whatever the file is."""
    what = display(os.fspath(path))
    try:
        with open_regular(path, what, error=MetadataError) as fh:
            text = _png_text(fh, METADATA_KEY, what)
    except OSError as exc:
        raise MetadataError(os_error_message(exc) or f"{what}: cannot be read ({exc.strerror or exc})") from None
    if text is None:
        raise MetadataError(f"{what}: carries no DiffusionCLIP Desktop settings")
    return parse_metadata(text, what)


# The fields the app reads back (`request_from_metadata`, the GUI's Load settings, `dclip info`), as
# edit_metadata, translate_metadata, the batch and the CLI write them: (type, lo, hi) for `take`.
# Text is bounded so a hand-edited PNG cannot carry a megabyte into a label. Other keys are kept
# as they are, for `dclip info` only.
_NAME_LEN = 200
_META_FIELDS: dict[str, tuple] = {
    "app_version": (str, None, None), "operation": (str, None, None), "base_id": (str, None, None),
    "base_sha256": (str, None, None), "precision": (str, None, None), "batch_id": (str, None, None),
    "settings_key": (str, None, None), "source_image": (str, None, None),
    "t0": (int, 1, T - 1), "project_t0": (int, 1, T - 1),
    "s_for": (int, 2, T), "s_gen": (int, 2, T), "project_steps": (int, 2, T),
    "rounds": (int, 1, 10_000), "batch_size": (int, 1, 1 << 16),
    "faces": (int, 0, 1 << 16),  # how many faces the face workflow edited; present only on its outputs
    "seed": (int, -(1 << 63), (1 << 64) - 1),  # what torch.manual_seed takes
    "paste_back": (bool, None, None), "fit": (str, None, None), "degree": (float, None, None),
    "eta": (float, 0.0, 1.0), "sampler": (str, None, None),
}
_ATTRIBUTE_FIELDS: dict[str, tuple] = {
    "name": (str, None, None), "id": (str, None, None), "weights_sha256": (str, None, None),
    "weight": (float, None, None),
}
_MAX_ATTRIBUTES = 256


def _checked(obj: dict, table: dict, what: str) -> dict:
    out = dict(obj)
    for key, (kind, lo, hi) in table.items():
        value = take(obj, key, kind, what, default=None, lo=lo, hi=hi,
                     max_len=4096 if key == "source_image" else _NAME_LEN, error=MetadataError)
        if value is not None and kind is float:
            try:
                value = float(value)  # take lets an int through for a float, even one past float's range
            except OverflowError:
                raise MetadataError(f"{what}: '{key}' is not a finite number") from None
        if value is not None:
            out[key] = value
    return out


def check_metadata(meta: Any, what: str = "the image's settings") -> dict:
    """`meta` (JSON already parsed) checked field by field; a copy with weights as floats and the
    schedule as [[int, [float, …]], …]. Every field is optional (a reconstruction has no attributes);
    `request_from_metadata` says which an edit needs. Raises only MetadataError."""
    if not isinstance(meta, dict):
        raise MetadataError(f"{what}: not a JSON object")
    out = _checked(meta, _META_FIELDS, what)
    if out.get("degree") is not None:
        try:
            validate_degree(out["degree"])
        except ValueError as exc:
            raise MetadataError(f"{what}: {exc}") from None
    if out.get("sampler") is not None and out["sampler"] not in SAMPLERS:
        raise MetadataError(f"{what}: 'sampler' is {display(out['sampler'])!r}, not one of {', '.join(SAMPLERS)}")
    if out.get("fit") is not None and out["fit"] not in FIT_POLICIES:
        raise MetadataError(f"{what}: 'fit' is {display(out['fit'])!r}, not one of {', '.join(FIT_POLICIES)}")
    attrs = take(meta, "attributes", list, what, default=None, max_len=_MAX_ATTRIBUTES, error=MetadataError)
    if attrs is not None:
        checked = []
        for k, a in enumerate(attrs):
            where = f"{what}: attribute {k + 1}"
            if not isinstance(a, dict):
                raise MetadataError(f"{where} is a JSON {type(a).__name__}, not an object")
            a = _checked(a, _ATTRIBUTE_FIELDS, where)
            if not (a.get("id") or a.get("name")) or a.get("weight") is None:
                raise MetadataError(f"{where} needs a name or id and a weight")
            checked.append(a)
        out["attributes"] = checked
    if meta.get("schedule") is not None:
        try:
            sched = WeightSchedule.of(meta["schedule"])
            if attrs is not None:  # what edit_metadata writes: one weight per attribute in every row
                sched.validate(len(attrs))
        except ValueError as exc:
            raise MetadataError(f"{what}: 'schedule': {exc}") from None
        out["schedule"] = [[th, list(ws)] for th, ws in sched.rows]
    return out


def parse_metadata(text: str | bytes, what: str = "the image's settings") -> dict:
    """The JSON of an image's settings chunk, checked by `check_metadata`. Raises only MetadataError,
    for any input (the metadata of a PNG from the web is anyone's)."""
    return check_metadata(loads_object(text, what, error=MetadataError), what)


def request_from_metadata(meta: dict) -> EditRequest:
    """The EditRequest an output's metadata describes (attributes by id), with its batch size.
    `meta` is checked again (read_metadata already did, a caller's own dict may not be)."""
    meta = check_metadata(meta)
    missing = [k for k in ("attributes", "schedule", "degree", "t0", "s_for", "s_gen") if meta.get(k) is None]
    if missing:
        raise JobError(f"the image's settings are incomplete (no {', '.join(missing)}); was it made by an edit?")
    return EditRequest(
        attributes=[(a.get("id") or a["name"], a["weight"]) for a in meta["attributes"]],
        base_id=meta.get("base_id"), schedule=[(t, list(ws)) for t, ws in meta["schedule"]],
        degree=meta["degree"], t0=meta["t0"], s_for=meta["s_for"], s_gen=meta["s_gen"],
        batch_size=meta.get("batch_size") or 1,
        # older outputs carry no sampler: they were all made with deterministic DDIM
        eta=meta.get("eta") or 0.0, sampler=meta.get("sampler") or "ddim", seed=meta.get("seed") or 0,
    )

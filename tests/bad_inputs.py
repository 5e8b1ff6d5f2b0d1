"""Builds (never downloads) a corpus of good and bad input files for the batch job.

`build_corpus(folder)` returns {kind: (path, expected)} with expected "ok" (must be edited) or "bad"
(must be listed with a reason). Decisions worth knowing:
- jpeg data named .png is "ok": the decoder sniffs the content, the extension only selects the file.
- a PNG whose IDAT CRC is wrong but whose data is intact is "ok": Pillow does not check IDAT CRCs,
  and the pixels decode correctly; a corrupt IDAT *stream* is "bad".
- a chmod-000 file is "ok" when the tests run as root (root reads it anyway), "bad" otherwise.
- the nested file is only reached with --recursive; a folder named photo.jpg is always reported.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _rgb(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)),
                    np.full_like(x, int(rng.integers(0, 256)))], -1)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc & 0xFFFFFFFF)


def _png_gray1(w: int, h: int) -> bytes:
    """A 1-bit grayscale PNG of w×h zeros: tiny on disk whatever its claimed size."""
    row = b"\0" * (1 + (w + 7) // 8)
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def _png_chunks(data: bytes):
    pos = 8
    while pos < len(data):
        n = struct.unpack(">I", data[pos:pos + 4])[0]
        yield pos, data[pos + 4:pos + 8], n
        pos += 12 + n


def _idat_bad_crc(png: bytes) -> bytes:
    for pos, kind, n in _png_chunks(png):
        if kind == b"IDAT":
            end = pos + 8 + n
            return png[:end] + bytes(b ^ 0xFF for b in png[end:end + 4]) + png[end + 4:]
    raise AssertionError("no IDAT")


def _idat_corrupt(png: bytes) -> bytes:
    for pos, kind, n in _png_chunks(png):
        if kind == b"IDAT":
            data = b"\x78\x9c" + bytes((i * 37 + 11) % 256 for i in range(n - 2))
            return png[:pos] + _chunk(b"IDAT", data) + png[pos + 12 + n:]
    raise AssertionError("no IDAT")


def _exif_rotated_jpeg() -> bytes:
    img = _rgb(48, 24, 12)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° CW to display → shown as 24×48
    return _save(img, "JPEG", exif=exif, quality=90)


def _multiframe(fmt: str, **kw) -> bytes:
    frames = [_rgb(20, 20, s) for s in range(3)]
    return _save(frames[0], fmt, save_all=True, append_images=frames[1:], **kw)


def build_corpus(folder: str | os.PathLike) -> dict[str, tuple[Path, str]]:
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, tuple[Path, str]] = {}

    def put(kind: str, name: str, data: bytes, expected: str) -> Path:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        out[kind] = (path, expected)
        return path

    base = _rgb(40, 30, 1)
    png = _save(base, "PNG")
    jpg = _save(base, "JPEG", quality=90)
    # --- good files -------------------------------------------------------------------------
    put("rgb_png", "rgb.png", png, "ok")
    put("rgb_jpg", "rgb_j.jpg", jpg, "ok")
    put("rgb_jpeg_ext", "rgb_k.jpeg", jpg, "ok")
    put("rgb_webp", "rgb_w.webp", _save(base, "WEBP", lossless=True), "ok")
    put("rgb_bmp", "rgb_b.bmp", _save(base, "BMP"), "ok")
    put("rgb_tiff", "rgb_t.tiff", _save(base, "TIFF"), "ok")
    put("rgb_tif_ext", "rgb_u.tif", _save(base, "TIFF", compression="tiff_lzw"), "ok")
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(base.size))
    put("rgba_png", "rgba.png", _save(rgba, "PNG"), "ok")
    put("rgba_webp", "rgba_w.webp", _save(rgba, "WEBP", lossless=True), "ok")
    put("la_png", "la.png", _save(rgba.convert("LA"), "PNG"), "ok")
    pal = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    put("palette_trns_png", "palette_trns.png", _save(pal, "PNG", transparency=0), "ok")
    put("palette_bmp", "palette_b.bmp", _save(pal, "BMP"), "ok")
    put("gray_png", "gray.png", _save(base.convert("L"), "PNG"), "ok")
    put("gray_jpg", "gray_j.jpg", _save(base.convert("L"), "JPEG"), "ok")
    put("bilevel_png", "bilevel.png", _save(base.convert("1"), "PNG"), "ok")
    g16 = Image.fromarray((np.arange(40 * 30, dtype=np.uint16).reshape(30, 40) * 50).astype(np.uint16))
    put("gray16_png", "gray16.png", _save(g16, "PNG"), "ok")
    put("float32_tiff", "float32.tiff", _save(Image.fromarray(np.linspace(-1, 3, 1200, dtype=np.float32)
                                                              .reshape(30, 40), "F"), "TIFF"), "ok")
    put("cmyk_jpg", "cmyk.jpg", _save(base.convert("CMYK"), "JPEG"), "ok")
    put("progressive_jpg", "progressive.jpg", _save(base, "JPEG", progressive=True), "ok")
    put("exif_rot6_jpg", "exif_rot6.jpg", _exif_rotated_jpeg(), "ok")
    put("tiny_1x1", "tiny.png", _save(Image.new("RGB", (1, 1), (200, 30, 30)), "PNG"), "ok")
    put("panorama", "panorama.png", _save(_rgb(300, 12, 3), "PNG"), "ok")
    put("tall", "tall.png", _save(_rgb(10, 200, 4), "PNG"), "ok")
    put("solid_black", "black.png", _save(Image.new("RGB", (16, 16)), "PNG"), "ok")
    put("unicode_name", "café_日本.png", png, "ok")
    put("spaces_name", "my holiday photo.png", png, "ok")
    put("upper_ext_png", "UPPER.PNG", png, "ok")
    put("upper_ext_jpg", "CAMERA.JPG", jpg, "ok")
    put("dup_stem_png", "a.png", png, "ok")  # a.png and a.jpg both map to a.png: one gets "a (2).png"
    put("dup_stem_jpg", "a.jpg", jpg, "ok")
    put("jpeg_named_png", "actually_jpeg.png", jpg, "ok")
    put("multiframe_tiff", "pages.tiff", _multiframe("TIFF"), "ok")
    put("animated_webp", "anim.webp", _multiframe("WEBP", lossless=True, duration=100), "ok")
    put("idat_bad_crc", "idat_bad_crc.png", _idat_bad_crc(png), "ok")
    put("nested", "sub/deeper/nested.png", png, "ok")
    p = put("chmod_000", "locked.png", png, "ok" if os.geteuid() == 0 else "bad")
    p.chmod(0)
    latin1 = root / os.fsdecode(b"caf\xe9_latin1.png")  # a name that is not valid UTF-8
    latin1.write_bytes(png)
    out["non_utf8_name"] = (latin1, "ok")
    link = root / "link_to_rgb.png"
    link.symlink_to("rgb.png")
    out["symlink_to_good"] = (link, "ok")
    # --- bad files --------------------------------------------------------------------------
    put("zero_byte", "empty.png", b"", "bad")
    put("truncated_png", "truncated.png", png[: len(png) // 2], "bad")
    put("truncated_jpg", "truncated.jpg", jpg[: len(jpg) // 2], "bad")
    put("truncated_webp", "truncated.webp", _save(base, "WEBP")[:60], "bad")
    put("truncated_tiff", "truncated.tiff", _save(base, "TIFF")[:200], "bad")
    put("png_header_only", "header_only.png", png[:8], "bad")
    put("jpeg_header_only", "header_only.jpg", b"\xff\xd8\xff\xe0" + b"\0" * 12, "bad")
    put("idat_corrupt", "idat_corrupt.png", _idat_corrupt(png), "bad")
    put("zero_width_ihdr", "zero_width.png",
        png[:16] + struct.pack(">I", 0) + png[20:29] + struct.pack(">I", zlib.crc32(png[12:16] + struct.pack(
            ">I", 0) + png[20:29])) + png[33:], "bad")
    put("random_bytes", "random.png", np.random.default_rng(5).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "bad")
    put("text_as_jpg", "notes.jpg", b"just some notes, not a picture\n" * 20, "bad")
    put("html_as_png", "page.png", b"<!doctype html><html><body><img src='x.png'></body></html>", "bad")
    put("svg_as_png", "vector.png", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
        b'<rect width="10" height="10" fill="red"/></svg>', "bad")
    put("pdf_as_png", "document.png", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n",
        "bad")
    put("gzip_as_png", "archive.png", gzip.compress(png), "bad")
    put("zip_as_tif", "archive.tif", b"PK\x03\x04" + b"\0" * 100, "bad")
    put("elf_as_jpg", "program.jpg", b"\x7fELF\x02\x01\x01" + b"\0" * 120, "bad")
    put("bmp_bad_header", "bad_header.bmp", b"BM" + b"\xff" * 52, "bad")
    put("tiff_garbage", "garbage.tiff", b"II*\0" + b"\xff\xff\xff\x7f" + b"\0" * 40, "bad")
    put("webp_riff_only", "riff_only.webp", b"RIFF\x10\0\0\0WEBPVP8 ", "bad")
    put("bomb_400mp", "bomb_huge.png", _png_gray1(20000, 20000), "bad")
    put("bomb_81mp", "bomb_81mp.png", _png_gray1(9000, 9000), "bad")
    folder = root / "photo.jpg"
    folder.mkdir()
    out["folder_named_jpg"] = (folder, "bad")
    fifo = root / "pipe.png"
    os.mkfifo(fifo)
    out["fifo"] = (fifo, "bad")
    broken = root / "broken_link.png"
    broken.symlink_to("does_not_exist.png")
    out["broken_symlink"] = (broken, "bad")
    loop = root / "loop.png"
    loop.symlink_to("loop.png")
    out["symlink_loop"] = (loop, "bad")
    # --- not picked up at all (not an image extension) ----------------------------------------
    put("gif_ignored", "animation.gif", _multiframe("GIF"), "ignored")
    put("txt_ignored", "readme.txt", b"hello\n", "ignored")
    return out

"""Hostile and unlucky PNG metadata, --schedule/--attr/--degree values and settings files (issue 17).

Each case is built from code and checked as a user sees it: the exit code and the one stderr line of
`dclip` (no traceback), what `dclip info` prints, and the message the GUI shows. The PNGs are
written chunk by chunk so a header can claim 300 megapixels or a text chunk can lie about itself."""

from __future__ import annotations

import json
import math
import os
import struct
import threading
import zlib
from pathlib import Path

import pytest

from dclip_desktop.cli.main import main
from dclip_desktop.core.mixing import WeightSchedule, validate_degree
from dclip_desktop.jobs.errors import JobError
from tests.gui_helpers import close_boxes
from tests.test_hostile_jobs import STEPS, dclip, env, home, one_line, photo  # noqa: F401 (fixtures)

META = {"operation": "edit", "app_version": "0.1", "base_id": "demo-shapes", "base_sha256": "ab" * 32,
        "attributes": [{"id": "a1b2c3d4", "name": "blue", "weight": 1.0, "weights_sha256": "cd" * 32}],
        "schedule": [[0, [1.0]]], "degree": 0.5, "t0": 300, "s_for": 40, "s_gen": 40, "seed": 0,
        "source_image": "red.png"}


# --- PNGs built chunk by chunk ----------------------------------------------------------------
def chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


def png(text: str | bytes | None, size=(4, 4), *, idat: bytes | None = None, ctype: bytes = b"tEXt",
        text_after_idat: bool = False) -> bytes:
    """A PNG of `size` (black pixels unless `idat` replaces the image data) whose 'dclip' text chunk
    holds `text` as a tEXt, zTXt (compressed) or iTXt chunk."""
    w, h = size
    if idat is None:
        idat = zlib.compress(b"".join(b"\0" + b"\0" * 3 * w for _ in range(h)))
    body = text.encode("utf-8") if isinstance(text, str) else text
    if ctype == b"zTXt":
        body = b"\0" + zlib.compress(body)
    elif ctype == b"iTXt":
        body = b"\0\0\0\0" + body
    text_chunk = chunk(ctype, b"dclip\0" + body) if text is not None else b""
    head = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    image = chunk(b"IDAT", idat)
    middle = image + text_chunk if text_after_idat else text_chunk + image
    return head + middle + chunk(b"IEND", b"")


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def ztxt_bomb(inflated_mb: int) -> bytes:
    """A zTXt body that inflates to `inflated_mb` MB of JSON text, compressed piecewise (no big buffer)."""
    z = zlib.compressobj(9)
    out = [z.compress(b'{"a": "')]
    for _ in range(inflated_mb):
        out.append(z.compress(b" " * (1 << 20)))
    out.append(z.compress(b'"}') + z.flush())
    return b"\0" + b"".join(out)


def said(err: str, tmp_path: Path) -> str:
    """The one stderr line with the test's folder cut out (its name echoes the test's, "damaged"…)."""
    return one_line(err).replace(str(tmp_path), "<tmp>")


def run_with_timeout(fn, seconds: float = 20.0):
    """fn() in a thread; a call still blocked after `seconds` (a FIFO opened for reading) fails the test."""
    result: dict = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test below
            result["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    return t, result


# --- dclip info and read_metadata --------------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ("[]", "not an object"),
    ('"just text"', "not an object"),
    ('{"attributes": 5}', "'attributes'"),
    ('{"attributes": [5]}', "attribute 1"),
    ('{"attributes": [{"name": "blue"}]}', "weight"),
    ('{"attributes": [{"name": "blue", "weight": "heavy"}]}', "'weight'"),
    ('{"attributes": [{"name": "blue", "weight": 1' + "0" * 400 + "}]}", "'weight' is not a finite number"),
    ('{"degree": NaN}', "NaN"),
    ('{"degree": 1e308}', "degree"),
    ('{"degree": 1e400}', "out of range"),
    ('{"t0": 0}', "'t0'"),
    ('{"t0": 1e3}', "'t0'"),
    ('{"s_for": -1}', "'s_for'"),
    ('{"seed": "zero"}', "'seed'"),
    ('{"seed": 1' + "0" * 40 + "}", "'seed'"),
    ('{"schedule": [[500]]}', "schedule"),
    ('{"schedule": {"a": 1}}', "schedule"),
    ('{"schedule": [[1e300, [1]]]}', "threshold"),
    ('{"attributes": [{"name": "a", "weight": 1}], "schedule": [[0, [0.5, 0.5]]]}', "weights"),
    ('{"fit": "stretch"}', "'fit'"),
    ('{"paste_back": "yes"}', "'paste_back'"),
    ('{"base_id": "' + "x" * 5000 + '"}', "too long"),
    ("[" * 100_000 + "]" * 100_000, "nested"),
    ("{not json", "not valid JSON"),
])
def test_info_refuses_bad_metadata_in_one_line(tmp_path, capsys, text, message):
    image = write(tmp_path / "hostile.png", png(text))
    code, err = dclip(capsys, "info", str(image))
    assert code == 2
    line = said(err, tmp_path)
    assert "<tmp>/hostile.png" in line and message in line


def test_metadata_is_read_without_decoding_the_pixels(tmp_path, capsys):
    """A 300-megapixel header (Pillow's decompression-bomb limit is 179 MP) and image data that is
    garbage or cut short: the settings are still read, the pixels never are."""
    text = json.dumps(META)
    for name, data in [("huge.png", png(text, (20000, 15000), idat=b"not deflate data")),
                       ("cut.png", png(text, (64, 64))[:-40]),
                       ("late.png", png(text, text_after_idat=True, idat=b"garbage"))]:
        assert main(["info", str(write(tmp_path / name, data)), "--json"]) == 0, name
        out, err = capsys.readouterr()
        assert err == "" and json.loads(out) == META


@pytest.mark.parametrize("kind", ["tEXt", "zTXt", "iTXt"])
def test_huge_settings_text_is_refused_not_read(tmp_path, capsys, kind):
    """2 MB of JSON in a text chunk, or a zTXt/iTXt that inflates to 64 MB, stops at 1 MiB."""
    if kind == "tEXt":
        data = png(json.dumps({**META, "padding": "x" * (2 << 20)}))
    else:
        body = ztxt_bomb(64) if kind == "zTXt" else b"\1\0\0\0" + ztxt_bomb(64)[1:]
        data = png(None)
        data = data[:33] + chunk(kind.encode(), b"dclip\0" + body) + data[33:]
    code, err = dclip(capsys, "info", str(write(tmp_path / "big.png", data)))
    assert code == 2 and "implausibly large" in said(err, tmp_path)


def test_damaged_settings_chunk_is_one_line(tmp_path, capsys):
    data = bytearray(png(json.dumps(META)))
    data[50] ^= 0xFF  # inside the text chunk's JSON: its CRC no longer matches
    code, err = dclip(capsys, "info", str(write(tmp_path / "flipped.png", bytes(data))))
    assert code == 2 and "damaged (truncated or bad checksum)" in said(err, tmp_path)


def test_info_on_a_fifo_and_a_folder_does_not_hang(tmp_path, capsys):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    thread, result = run_with_timeout(lambda: main(["info", str(fifo)]))
    if thread.is_alive():  # unblock the reader so the thread ends, then fail
        with open(fifo, "wb"):
            pass
        thread.join(5)
        pytest.fail("dclip info blocked on a FIFO")
    assert result.get("value") == 2, result
    assert "not a regular file" in said(capsys.readouterr().err, tmp_path)
    (tmp_path / "folder.png").mkdir()
    code, err = dclip(capsys, "info", str(tmp_path / "folder.png"))
    assert code == 2 and "is a folder" in said(err, tmp_path)


def test_info_escapes_control_and_bidi_characters(tmp_path, capsys):
    hostile = {**META, "source_image": "cat\x1b[2J\x1b]0;owned\x07\u202egnp.exe", "\u202enote\x9b": "a\rb"}
    image = write(tmp_path / "ansi.png", png(json.dumps(hostile)))
    assert main(["info", str(image)]) == 0
    out = capsys.readouterr().out
    assert not any(c in out for c in "\x1b\x07\x9b\r\u202e"), repr(out)
    assert "cat\\x1b[2J" in out and "\\u202egnp.exe" in out and "\\u202enote\\x9b: a\\rb" in out
    assert main(["info", str(image), "--json"]) == 0
    out = capsys.readouterr().out
    assert not any(c in out for c in "\x1b\x07\x9b\r\u202e") and json.loads(out) == hostile


def test_parse_metadata_keeps_what_the_app_writes():
    from dclip_desktop.jobs.metadata import parse_metadata

    meta = parse_metadata(json.dumps({**META, "schedule": [[500, [1]], [0, [1]]], "weird": [1, {"x": None}]}))
    assert meta["schedule"] == [[500, [1.0]], [0, [1.0]]] and meta["weird"] == [1, {"x": None}]
    assert parse_metadata(json.dumps({"operation": "reconstruct", "t0": 301, "s_for": 8, "s_gen": 8}))["t0"] == 301


# --- the metadata round trip (batch_job.request_from_metadata) ----------------------------------
@pytest.mark.parametrize("change, message", [
    ({"degree": math.nan}, "degree"),
    ({"degree": 1e308}, "degree"),
    ({"t0": 5000}, "'t0'"),
    ({"s_gen": True}, "'s_gen'"),
    ({"schedule": [[500, [True]], [0, [1]]]}, "schedule"),
    ({"attributes": [{"id": "a1b2c3d4", "weight": math.inf}]}, "'weight'"),
    ({"batch_size": 0}, "'batch_size'"),
    ({"schedule": None}, "incomplete"),
])
def test_request_from_metadata_refuses_bad_fields(change, message):
    from dclip_desktop.jobs.metadata import request_from_metadata

    with pytest.raises(JobError, match=message):
        request_from_metadata({**META, **change})


def test_request_from_metadata_round_trip():
    from dclip_desktop.jobs.metadata import request_from_metadata

    req = request_from_metadata({**META, "batch_size": 4})
    assert req.attributes == [("a1b2c3d4", 1.0)] and req.schedule == [(0, [1.0])]
    assert (req.degree, req.t0, req.s_for, req.s_gen, req.batch_size) == (0.5, 300, 40, 40, 4)


# --- --schedule, --attr and --degree -----------------------------------------------------------
@pytest.mark.parametrize("schedule, message", [
    ("[1,2]", "row 1"),
    ("[[1e400,[1]]]", "out of range"),
    ('{"a":1}', "dict"),
    ("[[500]]", "row 1"),
    ("[[0,[true]]]", "bool"),
    ("[[500,[true]]]", "bool"),
    ("[" * 5000 + "]" * 5000, "nested"),
    ("[[" + "9" * 30 + ",[1]],[0,[1]]]", "threshold"),
    ("[[1e300,[1]],[0,[1]]]", "threshold"),
    ("[[0,[1e400]]]", "out of range"),
    ("[[0,[" + "9" * 400 + "]]]", "finite"),
    ("[[500,[1]],[0,[0.5,0.5]]]", "different counts"),
    ("[]", "no rows"),
])
@pytest.mark.usefixtures("env")
def test_bad_schedule_is_one_line(tmp_path, capsys, schedule, message):
    img = photo(tmp_path / "in.png")
    code, err = dclip(capsys, "edit", str(img), "--attr", "rnd", "--schedule", schedule,
                      "-o", str(tmp_path / "out.png"), *STEPS)
    assert code == 2
    line = said(err, tmp_path)
    assert "--schedule" in line and message in line
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("argv, message", [
    (["--degree", "nan"], "degree"),
    (["--degree", "1e308"], "degree"),
    (["--degree", "-0.5"], "degree"),
    (["--attr", "rnd:nan"], "bad weight"),
    (["--attr", ":0.5"], "names no attribute"),
])
@pytest.mark.usefixtures("env")
def test_bad_degree_and_weight_are_one_line(tmp_path, capsys, argv, message):
    img = photo(tmp_path / "in.png")
    attr = [] if "--attr" in argv else ["--attr", "rnd"]
    code, err = dclip(capsys, "edit", str(img), *attr, *argv, "-o", str(tmp_path / "out.png"), *STEPS)
    assert code == 2 and message in said(err, tmp_path)
    assert not (tmp_path / "out.png").exists()


def test_core_refuses_bad_degrees_and_schedule_shapes_with_value_error():
    for degree in (True, math.nan, math.inf, 1e308, -1e-9, 1.5, "0.5", None, 10 ** 400):
        with pytest.raises(ValueError, match="degree"):
            validate_degree(degree)
    for rows in ([1, 2], [[500]], {"a": 1}, "[[0,[1]]]", [[0, [None]]], [[0, [True]]], [[0.5, [1]]],
                 [[10 ** 30, [1]]], [[-1, [1]]], [[0, [10 ** 400]]], [[0, 1]], None):
        with pytest.raises(ValueError):
            WeightSchedule.of(rows)
    with pytest.raises(ValueError, match="row 1"):
        WeightSchedule(rows=((0, "ab"),)).validate(2)  # built directly, bypassing `of`
    assert WeightSchedule.of([(500, [1, 0]), (0, (0.5, 0.5))]).rows == ((500, (1.0, 0.0)), (0, (0.5, 0.5)))


# --- settings.json ------------------------------------------------------------------------------
def _settings_file() -> Path:
    folder = Path(os.environ["DCLIP_CONFIG_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "settings.json"


@pytest.mark.parametrize("content, field", [
    (b"[]", "not an object"),
    (b'{"device": 5}', "'device'"),
    (b'{"device": "gpu"}', "'device'"),
    (b'{"precision": "fp8"}', "'precision'"),
    (b'{"memory_layout": "nchw"}', "'memory_layout'"),
    (b'{"offline": "yes"}', "'offline'"),
    (b'{"preview_every": -3}', "'preview_every'"),
    (b'{"library_dir": 7}', "'library_dir'"),
    (b'{"preview_every": NaN}', "NaN"),
    (b'{"device": "\xff\xfe"}', "not UTF-8"),
    (b'{"default_base": "demo-shapes", "pad": "' + b"x" * (3 << 20) + b'"}', "implausibly large"),
    (None, "is a folder"),
])
def test_bad_settings_warn_once_and_the_app_keeps_working(tmp_path, capsys, content, field):
    path = _settings_file()
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    img = photo(tmp_path / "in.png")
    for k in range(2):  # the second command in this process does not repeat the warning
        code, err = dclip(capsys, "reconstruct", str(img), "--t0", "100", "-o", str(tmp_path / f"r{k}.png"),
                          *STEPS)
        assert code == 0, err
        if k == 0:
            line = one_line(err)
            assert line.startswith("dclip: warning: ") and str(path) in line
            assert field in line.replace(str(path), "<settings>")
        else:
            assert err == ""
    if content is not None:
        assert path.read_bytes() == content  # never rewritten behind the user's back
    else:
        assert path.is_dir()


def test_settings_fifo_does_not_hang(capsys):
    from dclip_desktop.jobs.settings import Settings

    path = _settings_file()
    os.mkfifo(path)
    thread, result = run_with_timeout(Settings.load)
    if thread.is_alive():
        with open(path, "wb"):
            pass
        thread.join(5)
        pytest.fail("Settings.load blocked on a FIFO")
    assert result.get("value") == Settings()


def test_one_bad_setting_keeps_the_others():
    from dclip_desktop.jobs.settings import Settings

    settings, problems = Settings.parse('{"device": 5, "preview_every": 7, "precision": " BF16 ", '
                                        '"library_dir": "", "cache_dir": "/tmp/c", "future_key": [1]}')
    assert settings == Settings(preview_every=7, precision="bf16", cache_dir="/tmp/c")
    assert len(problems) == 1 and "'device'" in problems[0] and "default" in problems[0]


# --- the GUI's Load settings from image ------------------------------------------------------------
@pytest.fixture
def window(qtbot):
    from dclip_desktop.gui.app import create_window, ensure_app

    ensure_app()
    w = create_window()
    qtbot.addWidget(w)
    with qtbot.waitSignal(w.controller.busy_changed, timeout=120_000, check_params_cb=lambda busy: not busy):
        pass
    yield w
    close_boxes(w)
    w.controller.shutdown()


def test_gui_load_settings_shows_one_message_for_hostile_images(qtbot, window, tmp_path):
    w = window
    w.mixing.set_degree(0.3)
    cases = {"list.png": png("[]"), "nan.png": png('{"degree": NaN}'), "far.png": png('{"degree": 5}'),
             "rows.png": png('{"schedule": [[500]]}'), "weight.png": png('{"attributes": [{"name": "a"}]}'),
             "huge.png": png('{"degree": 2}', (20000, 15000), idat=b"x")}
    for name, data in cases.items():
        with qtbot.waitSignal(w.error_reported, timeout=5000) as blocker:
            assert w.load_settings_from_image(str(write(tmp_path / name, data))) is None
        title, message = blocker.args
        assert title == "Load settings" and name in message and "\n" not in message, message
        close_boxes(w)
        assert w.mixing.degree == 0.3  # nothing half-applied
    good = write(tmp_path / "good.png", png(json.dumps({**META, "degree": 0.25})))
    assert w.load_settings_from_image(str(good))["degree"] == 0.25
    assert w.mixing.degree == 0.25

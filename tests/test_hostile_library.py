"""Hostile and unlucky input to the attribute library, driven as a user would (issue 17).

Each test builds its hostile file from code and checks what a user sees: the exit code and the one
line on stderr of `dclip library ...` (no traceback), what is in the library folder afterwards, and
that the file given to dclip is unchanged. Attributes are random LoRAs of the demo base (the only
base installed in tests; it loads from models/demo in a fraction of a second).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as st_save

from dclip_desktop.cli.main import main
from dclip_desktop.library import manifest as mf
from dclip_desktop.library import weights as wf
from dclip_desktop.library.errors import DamagedEntryError, LibraryError
from dclip_desktop.library.store import Library

from .test_hostile_jobs import one_line
from .test_library import meta, random_lora

DEMO = "demo-shapes"


@pytest.fixture(scope="module")
def demo_base():
    from dclip_desktop.zoo.loading import load_base

    return load_base(DEMO, "cpu")


@pytest.fixture
def lib():
    return Library()  # conftest points DCLIP_LIBRARY_DIR at a folder of this test's own


@pytest.fixture
def good(tmp_path, demo_base):
    """A well-formed export of a plausible attribute of the demo base, made in another library."""
    other = Library(tmp_path / "sender")
    other.save_attribute("blue", random_lora(demo_base), "lora", meta(base_id=DEMO))
    return other.export("blue", tmp_path / "blue.dclip")


def dclip(capsys, *argv) -> tuple[int, str, str]:
    """`dclip ARGV` in this process: (exit code, stdout, stderr). A traceback fails the test by itself."""
    code = main(list(argv))
    res = capsys.readouterr()
    return code, res.out, res.err


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def entries(lib: Library) -> list[str]:
    """Everything in the library's attributes folder (hidden temp folders included)."""
    return sorted(p.name for p in lib.attributes_dir.iterdir()) if lib.attributes_dir.is_dir() else []


def rezip(src: Path, dst: Path, *, weights: bytes | None = None, methods: dict | None = None, **fields) -> Path:
    """`src` rewritten with other weights (sha and size updated, as a forger would) and manifest fields."""
    with zipfile.ZipFile(src) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    data = json.loads(members[mf.MANIFEST_NAME])
    if weights is not None:
        members[mf.WEIGHTS_NAME] = weights
        data.update(weights_sha256=hashlib.sha256(weights).hexdigest(), weights_bytes=len(weights))
    data.update(fields)
    members[mf.MANIFEST_NAME] = json.dumps(data).encode()
    methods = {mf.MANIFEST_NAME: zipfile.ZIP_DEFLATED, **(methods or {})}
    with zipfile.ZipFile(dst, "w") as zf:
        for name, blob in members.items():
            zf.writestr(name, blob, compress_type=methods.get(name, zipfile.ZIP_STORED))
    return dst


def patch_headers(path: Path, member: str, *, method: int | None = None, flags: int = 0,
                  size: int | None = None) -> None:
    """Rewrite `member`'s local and central zip headers in place: compression method, flag bits
    or'ed in, declared uncompressed size."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        local = zf.getinfo(member).header_offset
    name = member.encode()
    central = data.find(b"PK\x01\x02")
    while central >= 0:
        n = struct.unpack_from("<H", data, central + 28)[0]
        if bytes(data[central + 46:central + 46 + n]) == name:
            break
        central = data.find(b"PK\x01\x02", central + 46)
    assert central >= 0
    for flag_at, method_at, size_at in ((local + 6, local + 8, local + 22), (central + 8, central + 10, central + 24)):
        struct.pack_into("<H", data, flag_at, struct.unpack_from("<H", data, flag_at)[0] | flags)
        if method is not None:
            struct.pack_into("<H", data, method_at, method)
        if size is not None:
            struct.pack_into("<I", data, size_at, size)
    path.write_bytes(bytes(data))


def lora_blob(factors: dict[str, torch.Tensor]) -> bytes:
    """Raw safetensors of LoRA factors, bypassing wf.encode's own checks (a forger's file)."""
    return st_save({k: v.contiguous() for k, v in factors.items()}, metadata={"format": wf.FORMAT, "kind": "lora"})


def refused_import(capsys, lib: Library, bundle: Path, *words: str) -> str:
    """Import `bundle` via the CLI: exit 2, one line naming the file and holding `words`, nothing
    written to the library, the file unchanged."""
    before, listed = sha(bundle), entries(lib)
    code, _, err = dclip(capsys, "library", "import", str(bundle))
    line = one_line(err)
    assert code == 2 and bundle.name in line, line
    for word in words:
        assert word in line, line
    assert entries(lib) == listed and sha(bundle) == before
    return line


# --- 1, 2: damaged and hostile .dclip archives ----------------------------------------------------------
def test_corrupt_deflate_stream_is_one_line(tmp_path, capsys, lib, good):
    bad = rezip(good, tmp_path / "corrupt-deflate.dclip")
    with zipfile.ZipFile(bad) as zf:
        info = zf.getinfo(mf.MANIFEST_NAME)
    data = bytearray(bad.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start:start + 4] = b"\xff\xff\xff\xff"  # BTYPE 11: "invalid block type" from zlib
    bad.write_bytes(bytes(data))
    with pytest.raises(zlib.error), zipfile.ZipFile(bad) as zf:  # the file really is what the test says
        zf.read(mf.MANIFEST_NAME)
    refused_import(capsys, lib, bad, "damaged archive")


def test_unsupported_compression_method_is_one_line(tmp_path, capsys, lib, good):
    bad = rezip(good, tmp_path / "method99.dclip")
    patch_headers(bad, mf.MANIFEST_NAME, method=99)  # 99: WinZip AES, which zipfile cannot read
    with pytest.raises(NotImplementedError), zipfile.ZipFile(bad) as zf:
        zf.read(mf.MANIFEST_NAME)
    refused_import(capsys, lib, bad, "compression method 99")


def test_encrypted_member_is_one_line(tmp_path, capsys, lib, good):
    bad = rezip(good, tmp_path / "encrypted.dclip")
    patch_headers(bad, mf.WEIGHTS_NAME, flags=0x1)
    with pytest.raises(RuntimeError), zipfile.ZipFile(bad) as zf:
        zf.read(mf.WEIGHTS_NAME)
    refused_import(capsys, lib, bad, "encrypted")


def test_bzip2_member_is_refused_unread(tmp_path, capsys, lib, good):
    # zipfile inflates a bzip2 (or LZMA) block without an output bound: refused before any byte is read.
    bad = rezip(good, tmp_path / "bzip2.dclip", methods={mf.WEIGHTS_NAME: zipfile.ZIP_BZIP2})
    refused_import(capsys, lib, bad, "compression method 12")


def test_declared_size_over_the_cap_is_refused_unread(tmp_path, capsys, lib, good):
    bad = rezip(good, tmp_path / "huge.dclip")
    patch_headers(bad, mf.WEIGHTS_NAME, size=(1 << 30) + (1 << 29))  # 1.5 GiB: bigger than any base's delta
    refused_import(capsys, lib, bad, "too large")


def test_deflate_bomb_with_lying_size_never_inflates_past_the_cap(tmp_path, capsys, lib, good, monkeypatch):
    bomb = b'{"name": "' + b" " * (8 << 20) + b'"}'  # 8 MiB deflates to 8 kB; the cap is 1 MiB
    bad = rezip(good, tmp_path / "bomb.dclip")
    with zipfile.ZipFile(good) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    with zipfile.ZipFile(bad, "w") as zf:
        for name, blob in members.items():
            zf.writestr(name, bomb if name == mf.MANIFEST_NAME else blob,
                        compress_type=zipfile.ZIP_DEFLATED if name == mf.MANIFEST_NAME else zipfile.ZIP_STORED)
    patch_headers(bad, mf.MANIFEST_NAME, size=1000)  # the header claims 1000 bytes
    inflated = []
    real = zipfile._get_decompressor

    def counting(method):
        d = real(method)

        class Counted:
            eof = property(lambda self: d.eof)
            unconsumed_tail = property(lambda self: d.unconsumed_tail)

            def decompress(self, data, *args):
                out = d.decompress(data, *args)
                inflated.append(len(out))
                return out

            def flush(self, *args):
                out = d.flush(*args)
                inflated.append(len(out))
                return out

        return Counted()

    monkeypatch.setattr(zipfile, "_get_decompressor", counting)
    refused_import(capsys, lib, bad, "damaged archive")
    assert 0 < sum(inflated) <= mf.MAX_MANIFEST_BYTES + (1 << 20)


def test_weights_cap_fits_the_largest_base():
    from dclip_desktop.library.bundle import MAX_WEIGHTS_BYTES
    from dclip_desktop.zoo.loading import build_base_from_config

    with torch.device("meta"):
        biggest = build_base_from_config("imagenet-512")
    fp16_delta = 2 * sum(p.numel() for p in biggest.parameters())
    assert fp16_delta < MAX_WEIGHTS_BYTES < 1.15 * fp16_delta + (64 << 20) < 1.3 * 2**30


def test_mangled_bundles_fail_only_as_library_errors(tmp_path, lib, good, demo_base):
    rng = random.Random(17)
    original = good.read_bytes()
    for i in range(150):
        data = bytearray(original)
        for _ in range(rng.randint(1, 8)):  # mostly in the headers: the local one and the central directory
            pos = rng.choice([rng.randrange(200), rng.randrange(len(data) - 400, len(data)), rng.randrange(len(data))])
            data[pos] = rng.randrange(256)
        if rng.random() < 0.2:
            data = data[: rng.randrange(len(data))]
        bad = tmp_path / f"mangled{i}.dclip"
        bad.write_bytes(bytes(data))
        try:
            lib.import_file(bad, name=f"m{i}", base_model=demo_base)
        except LibraryError:
            pass
    assert all(e.damaged is None for e in lib.list())


# --- 3: one hostile manifest does not hide the others ---------------------------------------------------
def test_hostile_manifests_are_listed_as_damaged(capsys, lib, demo_base):
    w = random_lora(demo_base)
    made = {n: lib.save_attribute(n, w, "lora", meta(base_id=DEMO)) for n in ("good", "deep", "v0", "nan")}
    (made["deep"].path / mf.MANIFEST_NAME).write_text('{"name": ' + "[" * 100_000 + "]" * 100_000 + "}")
    v0 = {"version": 0, "name": "old", "base": DEMO, "sha256": made["v0"].manifest["weights_sha256"],
          "size": made["v0"].manifest["weights_bytes"], "created": 1e20}
    (made["v0"].path / mf.MANIFEST_NAME).write_text(json.dumps(v0))
    nan_path = made["nan"].path / mf.MANIFEST_NAME
    nan_path.write_text(nan_path.read_text().replace('"t0": 400', '"t0": NaN'))
    assert "NaN" in nan_path.read_text()

    code, out, err = dclip(capsys, "library", "list")
    assert code == 0 and err == "", err
    assert "good" in out and out.count("DAMAGED") == 3 and "3 damaged entries" in out
    code, out, err = dclip(capsys, "library", "list", "--json")
    assert code == 0 and err == "", err
    rows = {r["id"]: r for r in json.loads(out)}
    assert rows[made["good"].id]["damaged"] is None and rows[made["good"].id]["name"] == "good"
    assert "nested" in rows[made["deep"].id]["damaged"]
    assert "Unix time" in rows[made["v0"].id]["damaged"]
    nan_reason = rows[made["nan"].id]["damaged"]
    assert str(nan_path) in nan_reason and "NaN" in nan_reason  # names the file that holds it
    code, out, err = dclip(capsys, "library", "show", made["nan"].id)
    assert code == 1 and str(nan_path) in out and err == ""


EDGE_MANIFESTS = [
    b"", b"\xff\xfe\x00", "[]", "null", "1e400", "1" * 5000, "[" * 100_000 + "]" * 100_000,
    '{"a": ' * 40 + "1" + "}" * 40, '{"t0": NaN}', '{"t0": Infinity}', '{"a": "\\ud800"}',
    '{"schema_version": true}', '{"schema_version": -1}', '{"schema_version": 2e0}', '{"version": 0, "created": 1e20}',
    '{"version": 0, "created": -1e20}', '{"version": 0, "created": 1e308}', '{"version": 0, "created": true}',
    '{"version": 0, "name": "x", "base": "b", "sha256": "' + "a" * 64 + '", "size": -5}',
    '{"schema_version": 1, "id": 3, "name": [], "kind": {}, "base_id": null}',
]


def test_manifest_parse_raises_only_manifest_error():
    valid = {"schema_version": 1, "id": "a1b2c3d4", "name": "blue", "kind": "lora", "base_id": DEMO,
             "weights_sha256": "ab" * 32, "weights_bytes": 1234, "created": "2026-12-02T10:00:00Z", "t0": 501,
             "lambdas": {"clip": 3.0}, "thumbnails": ["before.png"]}
    assert mf.parse(json.dumps(valid))["name"] == "blue"
    texts = list(EDGE_MANIFESTS)
    rng = random.Random(0)
    base = json.dumps(valid).encode()
    for _ in range(3000):  # byte-level mutations: what a bad disk or a careless editor makes
        data = bytearray(base)
        for _ in range(rng.randint(1, 6)):
            pos = rng.randrange(len(data))
            op = rng.random()
            if op < 0.4:
                data[pos] = rng.randrange(256)
            elif op < 0.7:
                del data[pos]
            else:
                data.insert(pos, rng.choice(b'[]{}",:0123456789eE.-+ntfalsueNI\\'))
        texts.append(bytes(data))
    for key in valid:  # every field replaced by a value of each other JSON type
        for value in (None, True, -1, 2**70, 1e308, "", "x" * 5000, [], {}, [[[]]]):
            texts.append(json.dumps({**valid, key: value}))
    accepted = 0
    for text in texts:
        try:
            mf.parse(text)
            accepted += 1
        except mf.ManifestError as exc:
            assert str(exc).startswith("manifest.json: ")
    assert 0 < accepted < len(texts)


# --- 4: .pth files that are no checkpoint -----------------------------------------------------------------
@pytest.mark.parametrize("case", ["empty-dict", "zero-bytes", "random", "pickle-like"])
def test_broken_pth_is_one_line_and_not_called_code(tmp_path, capsys, lib, case):
    path = tmp_path / f"human_{case}_t500.pth"
    rng = random.Random(case)
    if case == "empty-dict":
        torch.save({}, path)
    elif case == "zero-bytes":
        path.write_bytes(b"")
    elif case == "random":
        path.write_bytes(bytes(rng.randrange(256) for _ in range(4096)).replace(b"\x80", b"\x81").lstrip(b"P"))
    else:  # starts like a pickle, then garbage
        path.write_bytes(b"\x80\x02" + bytes(rng.randrange(256) for _ in range(4096)))
    before = sha(path)
    code, _, err = dclip(capsys, "library", "import", str(path), "--base", DEMO)
    line = one_line(err)
    assert code == 2 and path.name in line, line
    assert "run code" not in line and "refuses" not in line, line
    expected = {"empty-dict": "holds no weights", "zero-bytes": "empty"}.get(case, "not a PyTorch checkpoint")
    assert expected in line, line
    assert entries(lib) == [] and sha(path) == before


# --- 5: weights that do not fit the base, or are no fine-tune at all ----------------------------------
FIRST = "conv_in.weight"


@pytest.mark.parametrize("case, words", [
    ("nan", ["NaN"]),
    ("inf-scale", ["NaN or infinite"]),
    ("no-tensors", ["no tensors"]),
    ("unknown-name", ["is not a parameter of the base model"]),
    ("wrong-shape", ["shape (32, 3, 3, 3)"]),
    ("huge", ["the size of the parameter itself"]),
    ("missing-part", ["lack 'lora_scale'"]),
])
def test_bundle_weights_are_checked_against_the_base(tmp_path, capsys, lib, good, demo_base, case, words):
    factors = random_lora(demo_base)
    if case == "nan":
        factors[FIRST + ".lora_B"][0, 0] = float("nan")
    elif case == "inf-scale":
        factors[FIRST + ".lora_scale"] = torch.tensor(float("inf"))
    elif case == "no-tensors":
        factors = {}
    elif case == "unknown-name":
        factors = {k.replace(FIRST, "no_such.weight"): v for k, v in factors.items() if k.startswith(FIRST)}
    elif case == "wrong-shape":  # B made for 16 output channels, conv_in has 32
        factors[FIRST + ".lora_B"] = factors[FIRST + ".lora_B"][:16].clone()
    elif case == "huge":
        factors[FIRST + ".lora_scale"] = torch.tensor(1e5)
    else:
        del factors[FIRST + ".lora_scale"]
    bad = rezip(good, tmp_path / f"{case}.dclip", weights=lora_blob(factors))
    line = refused_import(capsys, lib, bad, "not imported", *words)
    assert "Traceback" not in line


def test_finiteness_and_emptiness_are_checked_without_the_base(tmp_path, capsys, lib, good, demo_base):
    factors = random_lora(demo_base)
    factors[FIRST + ".lora_A"][0, 0, 0, 0] = float("nan")
    for base in ("celebahq", "no-such-base"):  # registered but not installed; unknown
        refused_import(capsys, lib, rezip(good, tmp_path / f"nan-{base}.dclip", weights=lora_blob(factors),
                                          base_id=base), "NaN", "not imported")
        refused_import(capsys, lib, rezip(good, tmp_path / f"empty-{base}.dclip", weights=lora_blob({}),
                                          base_id=base), "no tensors")


def test_without_the_base_names_are_checked_at_first_use(tmp_path, capsys, lib, good, demo_base):
    factors = {k.replace(FIRST, "no_such.weight"): v for k, v in random_lora(demo_base).items() if FIRST in k}
    bundle = rezip(good, tmp_path / "later.dclip", weights=lora_blob(factors), base_id="celebahq")
    code, out, err = dclip(capsys, "library", "import", str(bundle))
    assert code == 0 and err == "", err
    assert "not installed" in out and "first used" in out
    with pytest.raises(LibraryError, match="does not fit.*not a parameter"):
        lib.materialize("blue", demo_base)  # the first use, against the base the attribute gets


def test_plausible_weights_import(capsys, lib, good, demo_base):
    code, out, err = dclip(capsys, "library", "import", str(good))
    assert code == 0 and err == "" and "not installed" not in out, err
    edited = lib.materialize("blue", demo_base)
    assert any(not torch.equal(a, b) for a, b in zip(edited.parameters(), demo_base.parameters()))


def test_a_nan_entry_already_in_the_library_is_damaged_not_black(lib, demo_base):
    entry = lib.save_attribute("x", random_lora(demo_base), "lora", meta(base_id=DEMO))
    factors = random_lora(demo_base)
    factors[FIRST + ".lora_B"][:] = float("nan")
    blob = lora_blob(factors)  # as an older dclip, which imported without checking, would have stored it
    entry.weights_path.write_bytes(blob)
    data = json.loads((entry.path / mf.MANIFEST_NAME).read_text())
    data.update(weights_sha256=hashlib.sha256(blob).hexdigest(), weights_bytes=len(blob))
    (entry.path / mf.MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(DamagedEntryError, match="NaN"):
        lib.materialize("x", demo_base)


def _pth(tmp_path, demo_base, name, change) -> Path:
    state = {k: v.clone() for k, v in demo_base.state_dict().items()}
    change(state)
    path = tmp_path / name
    torch.save(state, path)
    return path


@pytest.mark.parametrize("case, words", [("nan", ["NaN"]), ("huge", ["the size of the parameter itself"])])
def test_pth_weights_are_checked(tmp_path, capsys, lib, demo_base, case, words):
    def change(state):
        if case == "nan":
            state["conv_out.weight"][0, 0, 0, 0] = float("nan")
        else:
            state["conv_out.weight"] += 1e4

    path = _pth(tmp_path, demo_base, f"shape_{case}_t300.pth", change)
    before = sha(path)
    code, _, err = dclip(capsys, "library", "import", str(path), "--base", DEMO)
    line = one_line(err)
    assert code == 2 and path.name in line and "not imported" in line, line
    assert all(w in line for w in words), line
    assert entries(lib) == [] and sha(path) == before


def test_delta_threshold_is_far_above_a_real_fine_tune(demo_base):
    """A LoRA of the size a fine-tune makes, and one ten times as strong, pass; a scale of 1e6 does not
    (weights.MAX_DELTA_RATIO says what the project's own fine-tunes measure)."""
    params = dict(demo_base.named_parameters())
    factors = random_lora(demo_base)
    wf.check_fit("lora", factors, params)
    strong = {k: (v * 10 if k.endswith(".lora_B") else v) for k, v in factors.items()}
    wf.check_fit("lora", strong, params)
    garbage = dict(factors, **{FIRST + ".lora_scale": torch.tensor(1e6)})
    with pytest.raises(LibraryError, match="size of the parameter"):
        wf.check_fit("lora", garbage, params)


# --- 6: an id always wins over a name ----------------------------------------------------------------------
def test_ids_win_over_names_and_a_name_may_not_be_an_id(tmp_path, capsys, lib, demo_base):
    w = random_lora(demo_base)
    alpha = lib.save_attribute("alpha", w, "lora", meta(base_id=DEMO))
    beta = lib.save_attribute("beta", w, "lora", meta(base_id=DEMO))
    code, _, err = dclip(capsys, "library", "rename", "alpha", beta.id)
    assert code == 2 and "is the id of the attribute 'beta'" in one_line(err)
    sender = Library(tmp_path / "sender2")
    sender.save_attribute(alpha.id.upper(), w, "lora", meta(base_id=DEMO))
    bundle = sender.export(alpha.id.upper(), tmp_path / "named-like-an-id.dclip")
    refused_import(capsys, lib, bundle, "is the id of the attribute 'alpha'", "--name")

    data = json.loads((beta.path / mf.MANIFEST_NAME).read_text())  # a name set by hand, or by an old dclip
    (beta.path / mf.MANIFEST_NAME).write_text(json.dumps(dict(data, name=alpha.id)))
    code, out, err = dclip(capsys, "library", "show", alpha.id)
    assert code == 0 and out.startswith(f"alpha  ({alpha.id})"), out
    assert lib.get(alpha.id).id == alpha.id and lib.get(alpha.id.upper()).id == alpha.id


def test_an_imported_id_does_not_take_over_a_name(tmp_path, capsys, lib, good, demo_base):
    mine = lib.save_attribute("deadbeefcafe", random_lora(demo_base), "lora", meta(base_id=DEMO))
    bundle = rezip(good, tmp_path / "takeover.dclip", id="deadbeefcafe", name="innocent")
    code, _, err = dclip(capsys, "library", "import", str(bundle))
    assert code == 0, err
    assert lib.get("innocent").id != "deadbeefcafe"
    assert lib.get("deadbeefcafe").id == mine.id


# --- 7: control and bidi characters ------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["\x1b[2Jgone", "pixar\u202egnp.exe", "csi\x9b2J", "line\u2028break"])
def test_new_names_with_controls_are_refused(capsys, lib, demo_base, bad):
    with pytest.raises(LibraryError, match="control or bidi"):
        lib.save_attribute(bad, random_lora(demo_base), "lora", meta(base_id=DEMO))
    lib.save_attribute("plain", random_lora(demo_base), "lora", meta(base_id=DEMO))
    code, _, err = dclip(capsys, "library", "rename", "plain", bad)
    line = one_line(err)
    assert code == 2 and "control or bidi" in line and "\x1b" not in line and "\u202e" not in line
    assert [e.name for e in lib.list()] == ["plain"]


def test_imported_names_and_texts_with_controls_are_escaped(tmp_path, capsys, lib, good):
    bundle = rezip(good, tmp_path / "evil.dclip", name="a\u202eb\x1b[2J", target="\x1b]0;owned\x07pixar")
    code, out, err = dclip(capsys, "library", "import", str(bundle))
    assert code == 0 and err == "", err
    (entry,) = lib.list()
    assert entry.name == "a\\u202eb\\x1b[2J" and entry.target == "\\x1b]0;owned\\x07pixar"
    code, _, err = dclip(capsys, "library", "import", str(bundle), "--name", "x\u202ey")  # typed: refused
    assert code == 2 and "control or bidi" in one_line(err)


def test_list_and_show_escape_what_manifests_hold(capsys, lib, demo_base):
    entry = lib.save_attribute("ok", random_lora(demo_base), "lora", meta(base_id=DEMO))
    data = json.loads((entry.path / mf.MANIFEST_NAME).read_text())
    hostile = dict(data, name="\x1b[2J\u202eevil", source="\x9b31m", target="t\u2066x", base_id="b\x1b[1m")
    (entry.path / mf.MANIFEST_NAME).write_text(json.dumps(hostile))
    for argv in (["list"], ["show", entry.id], ["verify"], ["list", "--json"], ["show", entry.id, "--json"]):
        code, out, err = dclip(capsys, "library", *argv)
        assert code in (0, 1) and err == "", (argv, err)
        for ch in ("\x1b", "\u202e", "\x9b", "\u2066"):
            assert ch not in out, (argv, out)
    assert "\\x1b[2J\\u202eevil" in dclip(capsys, "library", "list")[1]


# --- 8: manifest values never become paths outside the library ------------------------------------------------
@pytest.mark.parametrize("bad_id", ["0123abcd\n", "../../escaped", "/tmp/abs", "0123abcd/../../x"])
def test_a_bundle_id_never_leaves_the_library(tmp_path, capsys, lib, good, bad_id):
    bundle = rezip(good, tmp_path / "path-id.dclip", id=bad_id)
    code, _, err = dclip(capsys, "library", "import", str(bundle))
    assert code == 0, err
    (entry,) = lib.list()
    assert entry.path.parent == lib.attributes_dir and entry.id.isalnum() and entry.id != bad_id.strip()
    assert not (tmp_path / "escaped").exists() and not (lib.root / "x").exists()


# --- 9: the disk and the folder say no --------------------------------------------------------------------------
def test_library_path_is_a_file(tmp_path, capsys, good, monkeypatch):
    libfile = tmp_path / "library"
    libfile.write_text("not a folder")
    monkeypatch.setenv("DCLIP_LIBRARY_DIR", str(libfile))
    for argv in (["list"], ["show", "blue"], ["import", str(good)], ["rm", "blue"], ["gc"], ["list", "--trash"]):
        code, _, err = dclip(capsys, "library", *argv)
        line = one_line(err)
        assert code == 2 and f"{libfile} is a file" in line, (argv, line)
    assert libfile.read_text() == "not a folder"


def test_library_under_a_file_is_one_line(tmp_path, capsys, good, monkeypatch):
    # Tests run as root, where a chmod 0o555 folder is still writable: ENOTDIR is the refusal that
    # root gets too (the read-only case proper is the next test).
    (tmp_path / "plain").write_text("x")
    monkeypatch.setenv("DCLIP_LIBRARY_DIR", str(tmp_path / "plain" / "library"))
    code, _, err = dclip(capsys, "library", "import", str(good))
    assert code == 2 and f"{tmp_path / 'plain'} is a file" in one_line(err)


def _chmod_stops_writes(tmp_path: Path) -> bool:
    probe = tmp_path / "probe"
    probe.mkdir()
    os.chmod(probe, 0o555)
    try:
        (probe / "x").write_bytes(b"")
        return False
    except PermissionError:
        return True
    finally:
        os.chmod(probe, 0o755)


def test_read_only_library_is_one_line(tmp_path, capsys, lib, good, demo_base):
    if not _chmod_stops_writes(tmp_path):  # root, unless run without CAP_DAC_OVERRIDE (setpriv)
        pytest.skip("this user writes into a 0o555 folder anyway (root): see test_library_under_a_file")
    lib.save_attribute("mine", random_lora(demo_base), "lora", meta(base_id=DEMO))
    folders = [lib.root, *(p for p in lib.root.rglob("*") if p.is_dir())]
    for folder in folders:
        os.chmod(folder, 0o555)
    try:
        for argv in (["import", str(good)], ["rename", "mine", "other"], ["rm", "mine"]):
            code, _, err = dclip(capsys, "library", *argv)
            line = one_line(err)
            assert code == 2 and str(lib.root) in line, line
    finally:
        for folder in folders:
            os.chmod(folder, 0o755)
    lock = lib.root / ".lock"
    os.chmod(lock, 0o444)  # an unwritable lock file: nothing may change without the lock
    try:
        code, _, err = dclip(capsys, "library", "rename", "mine", "other")
        line = one_line(err)
        assert code == 2 and f"cannot lock the library: {lock}" in line, line
    finally:
        os.chmod(lock, 0o644)
    assert [e.name for e in lib.list()] == ["mine"]


def _disk_full(monkeypatch):
    def fsync(fd):  # where a full disk shows on delayed-allocation filesystems: no file name attached
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)


def test_disk_full_during_import_names_the_library(tmp_path, capsys, lib, good, monkeypatch):
    lib.attributes_dir.mkdir(parents=True)
    _disk_full(monkeypatch)
    code, _, err = dclip(capsys, "library", "import", str(good))
    line = one_line(err)
    assert code == 2 and "disk is full" in line and str(lib.attributes_dir) in line, line
    assert entries(lib) == []


def test_disk_full_during_export_names_the_file(tmp_path, capsys, lib, demo_base, monkeypatch):
    lib.save_attribute("blue", random_lora(demo_base), "lora", meta(base_id=DEMO))
    out = tmp_path / "share"
    out.mkdir()
    _disk_full(monkeypatch)
    code, _, err = dclip(capsys, "library", "export", "blue", str(out / "blue.dclip"))
    line = one_line(err)
    assert code == 2 and "disk is full" in line and str(out / "blue.dclip") in line, line
    assert list(out.iterdir()) == []


def test_unusable_lock_file_is_one_line(capsys, lib, demo_base):
    lib.save_attribute("blue", random_lora(demo_base), "lora", meta(base_id=DEMO))
    lock = lib.root / ".lock"
    lock.unlink()
    lock.mkdir()  # a folder where the lock file goes: refused even for root, like a read-only file
    code, _, err = dclip(capsys, "library", "rename", "blue", "green")
    line = one_line(err)
    assert code == 2 and f"{lock} is a folder" in line, line
    assert [e.name for e in lib.list()] == ["blue"]


# --- 10: an entry deleted meanwhile is gone, not damaged --------------------------------------------------------
def _vanish_when_read(monkeypatch, victim, reads_before: int):
    """Move `victim`'s folder away (a concurrent `rm`) just before its manifest is read for the
    (reads_before + 1)-th time."""
    real, seen = mf.read, []

    def read(path):
        if path.parent == victim.path:
            seen.append(path)
            if len(seen) == reads_before + 1 and victim.path.is_dir():
                victim.path.rename(victim.path.parent.parent / "moved-away")
        return real(path)

    monkeypatch.setattr(mf, "read", read)


def test_show_of_an_entry_removed_meanwhile_says_gone(capsys, lib, demo_base, monkeypatch):
    victim = lib.save_attribute("victim", random_lora(demo_base), "lora", meta(base_id=DEMO))
    _vanish_when_read(monkeypatch, victim, reads_before=1)  # after the lookup found it, before it is read
    code, _, err = dclip(capsys, "library", "show", "victim")
    line = one_line(err)
    assert code == 2 and "no attribute named 'victim'" in line and "damaged" not in line, line


def test_list_while_an_entry_is_removed(capsys, lib, demo_base, monkeypatch):
    w = random_lora(demo_base)
    victim = lib.save_attribute("victim", w, "lora", meta(base_id=DEMO))
    lib.save_attribute("stays", w, "lora", meta(base_id=DEMO))
    _vanish_when_read(monkeypatch, victim, reads_before=0)
    code, out, err = dclip(capsys, "library", "list")
    assert code == 0 and err == "" and "stays" in out and "DAMAGED" not in out and "victim" not in out, out


def test_weights_of_an_entry_removed_meanwhile(lib, demo_base):
    entry = lib.get(lib.save_attribute("victim", random_lora(demo_base), "lora", meta(base_id=DEMO)).id)
    shutil.move(entry.path, lib.root / "elsewhere")
    with pytest.raises(LibraryError, match="no attribute named") as caught:
        lib.materialize(entry, demo_base)
    assert not isinstance(caught.value, DamagedEntryError)


# --- 11: exports follow the umask ---------------------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="no POSIX modes")
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_export_follows_the_umask(tmp_path, capsys, lib, demo_base, umask, mode):
    import dclip_desktop.library.atomic as atomic

    lib.save_attribute("blue", random_lora(demo_base), "lora", meta(base_id=DEMO))
    old = os.umask(umask)
    atomic._UMASK = None  # read again, as a process started with this umask would
    try:
        code, _, err = dclip(capsys, "library", "export", "blue", str(tmp_path / "blue.dclip"))
        assert code == 0, err
        assert (tmp_path / "blue.dclip").stat().st_mode & 0o777 == mode
        atomic.atomic_write_bytes(tmp_path / "plain.bin", b"x")
        assert (tmp_path / "plain.bin").stat().st_mode & 0o777 == mode
    finally:
        os.umask(old)
        atomic._UMASK = None

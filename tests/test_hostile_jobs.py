"""Hostile and unlucky input to the jobs, driven through the `dclip` CLI as a user would (issue 17).

Each test builds its case from code and checks what a user sees: the exit code, one line on stderr
(no traceback), the files in the chosen folders, and that nothing else on disk changed. The
attribute is a random LoRA saved through the library: these tests check file handling, not edit
quality. Steps are tiny (S_for/S_gen 3/3) to stay fast on 2 CPU cores."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from PIL import Image

from dclip_desktop.cli.main import main

STEPS = ["--s-for", "3", "--s-gen", "3", "-q"]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    from dclip_desktop.core.lora import inject_lora, lora_factors, lora_modules
    from dclip_desktop.jobs.session import Session
    from dclip_desktop.jobs.settings import Settings

    root = tmp_path_factory.mktemp("hostile-home")
    settings = Settings(device="cpu", precision="fp32", library_dir=str(root / "library"),
                        cache_dir=str(root / "latents"))
    session = Session(settings)
    model = copy.deepcopy(session.base("demo-shapes"))
    torch.manual_seed(3)
    inject_lora(model, 2)
    for _, m in lora_modules(model):
        torch.nn.init.normal_(m.lora_B.weight, std=0.02)
    session.library.save_attribute("rnd", lora_factors(model), "lora",
                                   {"base_id": "demo-shapes", "base_sha256": session.base_sha("demo-shapes"),
                                    "t0": 300, "s_for": 3, "s_gen": 3})
    return root


@pytest.fixture
def env(home, monkeypatch, tmp_path):
    """The module's library, a fresh latent cache per test, settings on CPU."""
    monkeypatch.setenv("DCLIP_LIBRARY_DIR", str(home / "library"))
    monkeypatch.setenv("DCLIP_LATENT_CACHE_DIR", str(tmp_path / "latents"))
    cfg = tmp_path / "config"
    cfg.mkdir()
    (cfg / "settings.json").write_text(json.dumps({"device": "cpu", "precision": "fp32"}))
    monkeypatch.setenv("DCLIP_CONFIG_DIR", str(cfg))
    return home


def dclip(capsys, *argv) -> tuple[int, str]:
    """Run `dclip ARGV` in this process: (exit code, stderr). A traceback fails the test by itself."""
    code = main(list(argv))
    err = capsys.readouterr().err
    return code, err


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def photo(path: Path, colour=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), colour).save(path)
    return path


def tree(root: Path) -> dict[str, str]:
    """relative path → sha256 (or 'dir' / 'link→target') of everything under root, links not followed."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(folder, name)
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = "link→" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# --- a tampered batch manifest never writes outside OUT_DIR -------------------------------------------
def _batch(tmp_path, capsys, n=2):
    src = tmp_path / "photos"
    for i in range(n):
        photo(src / f"p{i}.png", (200, 30 + 40 * i, 30))
    out = tmp_path / "edited"
    code, err = dclip(capsys, "batch", str(src), str(out), "--attr", "rnd", *STEPS[:-1])
    assert code == 0, err
    return src, out


@pytest.mark.parametrize("where", ["../escape.png", "ABS", "sub/../../escape.png", "link/escape.png"])
def test_tampered_batch_manifest_cannot_write_outside(env, tmp_path, capsys, where):
    src, out = _batch(tmp_path, capsys)
    outside = tmp_path / "outside"
    outside.mkdir()
    if where == "ABS":
        where = str(outside / "escape.png")
    if where.startswith("link/"):
        (out / "link").symlink_to(outside, target_is_directory=True)
    manifest_path = out / ".dclip-batch.json"
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest["files"].values():
        Path(out, entry["output"]).unlink()  # the outputs are gone: --resume must redo them
        entry.update(status="failed", output=where)
    manifest_path.write_text(json.dumps(manifest))
    before_src = tree(src)
    code, err = dclip(capsys, "batch", str(src), str(out), "--attr", "rnd", "--resume", *STEPS[:-1])
    assert code == 2
    line = one_line(err)
    assert "batch manifest is damaged" in line and "points outside" in line and "--force" in line
    assert not any(outside.iterdir()) and not (tmp_path / "escape.png").exists()
    # --force starts a new batch there: the outputs come back inside OUT_DIR, nothing lands outside
    code, err = dclip(capsys, "batch", str(src), str(out), "--attr", "rnd", "--resume", "--force", *STEPS[:-1])
    assert code == 0, err
    assert sorted(p.name for p in out.glob("*.png")) == ["p0.png", "p1.png"]
    assert not any(outside.iterdir()) and not (tmp_path / "escape.png").exists()
    assert tree(src) == before_src


@pytest.mark.parametrize("tamper", [
    lambda m: m["files"].update({"p0.png": []}),
    lambda m: next(iter(m["files"].values())).update(output=5),
    lambda m: next(iter(m["files"].values())).update(status="exploded"),
    lambda m: next(iter(m["files"].values())).update(size="big"),
    lambda m: m.update(files=[]),
    lambda m: m.update(batch_id={"x": 1}),
    lambda m: [e.update(output="same.png") for e in m["files"].values()],
    lambda m: next(iter(m["files"].values())).update(output="C:\\evil.png"),
], ids=["entry-not-object", "output-int", "status", "size-str", "files-list", "batch-id-obj", "dup-output",
        "backslash"])
def test_malformed_batch_manifest_is_one_line(env, tmp_path, capsys, tamper):
    src, out = _batch(tmp_path, capsys)
    path = out / ".dclip-batch.json"
    manifest = json.loads(path.read_text())
    tamper(manifest)
    path.write_text(json.dumps(manifest))
    code, err = dclip(capsys, "batch", str(src), str(out), "--attr", "rnd", "--resume", *STEPS[:-1])
    assert code == 2 and "batch manifest is damaged" in one_line(err)


def test_batch_size_is_capped_at_the_file_count(env, tmp_path, capsys):
    src = tmp_path / "photos"
    for i in range(3):
        photo(src / f"p{i}.png")
    for size, out in (("64", tmp_path / "a"), ("100000", tmp_path / "b")):
        code, err = dclip(capsys, "batch", str(src), str(out), "--attr", "rnd", "--batch-size", size, *STEPS[:-1])
        assert code == 0, err
        with Image.open(out / "p0.png") as img:
            assert json.loads(img.text["dclip"])["batch_size"] == 3
    assert tree(tmp_path / "a") .keys() == tree(tmp_path / "b").keys()


# --- the latent cache only touches files it wrote ------------------------------------------------------
@pytest.mark.slow
def test_latent_cache_in_a_users_folder_touches_only_its_own_files(env, tmp_path, capsys, monkeypatch):
    from safetensors.torch import save_file

    folder = tmp_path / "my-models"
    big = folder / "sd15" / "model.safetensors"
    big.parent.mkdir(parents=True)
    with open(big, "wb") as fh:  # 3 GB, sparse: over the cache's 2 GB cap on its own
        fh.truncate(3 << 30)
    (folder / "ab").mkdir()
    save_file({"w": torch.ones(4)}, str(folder / "ab" / ("ab" + "0" * 62 + ".safetensors")))  # our name, not ours
    (folder / "ab" / "notes.txt").write_text("mine")
    (folder / "ab" / ".tmp-mine.part").write_text("mine")
    os.utime(folder / "ab" / ".tmp-mine.part", (1, 1))  # old, as the cache's own stale temp files would be
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    save_file({"w": torch.ones(4)}, str(elsewhere / ("cd" + "1" * 62 + ".safetensors")))
    (folder / "cd").symlink_to(elsewhere, target_is_directory=True)
    stat_big = big.stat()
    small_before = {k: v for k, v in tree(folder).items() if not k.startswith("sd15")}
    elsewhere_before = tree(elsewhere)
    monkeypatch.setenv("DCLIP_LATENT_CACHE_DIR", str(folder))
    img = photo(tmp_path / "red.png")
    for i in range(2):
        code, err = dclip(capsys, "edit", str(img), "--attr", "rnd", "-o", str(tmp_path / f"o{i}.png"), *STEPS)
        assert code == 0, err
    after = tree(folder)
    assert big.exists() and big.stat().st_size == stat_big.st_size and big.stat().st_mtime_ns == stat_big.st_mtime_ns
    for rel, digest in small_before.items():
        assert after.get(rel) == digest, rel
    assert tree(elsewhere) == elsewhere_before
    ours = [rel for rel in after if rel not in small_before and not rel.startswith("sd15")]
    assert len(ours) >= 1 and all(rel.endswith(".safetensors") for rel in ours if after[rel] != "dir")


def test_unwritable_latent_cache_does_not_fail_an_edit(env, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("DCLIP_LATENT_CACHE_DIR", str(blocker / "latents"))
    img = photo(tmp_path / "red.png")
    code, err = dclip(capsys, "edit", str(img), "--attr", "rnd", "-o", str(tmp_path / "o.png"), *STEPS)
    assert code == 0, err
    assert (tmp_path / "o.png").is_file() and "latent cache" in err and "Traceback" not in err
    assert blocker.read_text() == "not a folder"


@pytest.fixture
def tiny_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    with open(disk / "filler", "wb") as fh:  # fill it up
        try:
            fh.write(b"\0" * (64 << 10))
        except OSError:
            pass
    yield disk
    subprocess.run(["umount", str(disk)], capture_output=True)


def test_full_cache_disk_neither_fails_an_edit_nor_a_batch(env, tmp_path, capsys, monkeypatch, tiny_disk):
    monkeypatch.setenv("DCLIP_LATENT_CACHE_DIR", str(tiny_disk / "latents"))
    img = photo(tmp_path / "red.png")
    code, err = dclip(capsys, "edit", str(img), "--attr", "rnd", "-o", str(tmp_path / "o.png"), *STEPS)
    assert code == 0, err
    assert (tmp_path / "o.png").is_file()
    src = tmp_path / "photos"
    for i in range(3):
        photo(src / f"p{i}.png")
    out = tmp_path / "edited"
    code, err = dclip(capsys, "batch", str(src), str(out), "--attr", "rnd", *STEPS[:-1])
    assert code == 0, err  # the output disk has room: the batch must not stop with "disk full" on it
    assert sorted(p.name for p in out.glob("p*.png")) == ["p0.png", "p1.png", "p2.png"]


def test_full_output_disk_is_one_line_naming_it(env, tmp_path, capsys, tiny_disk):
    img = photo(tmp_path / "red.png")
    code, err = dclip(capsys, "edit", str(img), "--attr", "rnd", "-o", str(tiny_disk / "o.png"), *STEPS)
    assert code == 2
    line = one_line(err)
    assert "disk is full" in line and str(tiny_disk) in line
    assert not [p for p in tiny_disk.iterdir() if p.name != "filler"]  # no temp file left behind


# --- several inputs, one output -------------------------------------------------------------------------
def test_several_inputs_and_one_output_file_is_refused_before_any_work(env, tmp_path, capsys):
    a, b = photo(tmp_path / "a" / "x.png"), photo(tmp_path / "b" / "x.png", (30, 200, 30))
    code, err = dclip(capsys, "edit", str(a), str(b), "--attr", "rnd", "-o", str(tmp_path / "single.png"), *STEPS)
    assert code == 2 and "give a folder" in one_line(err)
    assert not (tmp_path / "single.png").exists()


def test_same_stem_from_two_folders_gives_two_files(env, tmp_path, capsys):
    a, b = photo(tmp_path / "a" / "x.png"), photo(tmp_path / "b" / "x.png", (30, 200, 30))
    out = tmp_path / "out"
    code, err = dclip(capsys, "edit", str(a), str(b), "--attr", "rnd", "-o", str(out), *STEPS)
    assert code == 0, err
    files = sorted(p.name for p in out.iterdir())
    assert files == ["x_edit (2).png", "x_edit.png"]
    sources = set()
    for name in files:
        with Image.open(out / name) as img:
            sources.add(img.getpixel((0, 0)))
    assert len(sources) == 2  # two different results, none lost


def test_output_with_trailing_slash_is_a_new_folder(env, tmp_path, capsys):
    img = photo(tmp_path / "red.png")
    code, err = dclip(capsys, "edit", str(img), "--attr", "rnd", "-o", str(tmp_path / "newdir") + "/", *STEPS)
    assert code == 0, err
    assert (tmp_path / "newdir").is_dir() and (tmp_path / "newdir" / "red_edit.png").is_file()


def test_an_existing_file_in_an_output_folder_is_never_replaced(env, tmp_path, capsys):
    img = photo(tmp_path / "red.png")
    out = tmp_path / "out"
    mine = photo(out / "red_edit.png", (1, 2, 3))
    digest = hashlib.sha256(mine.read_bytes()).hexdigest()
    code, err = dclip(capsys, "edit", str(img), "--attr", "rnd", "-o", str(out), *STEPS)
    assert code == 0, err
    assert hashlib.sha256(mine.read_bytes()).hexdigest() == digest and (out / "red_edit (2).png").is_file()


def test_output_onto_a_device_or_link_is_refused(env, tmp_path, capsys):
    img = photo(tmp_path / "red.png")
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "link.png").symlink_to(img)
    for target in ("pipe.png", "link.png"):
        code, err = dclip(capsys, "edit", str(img), "--attr", "rnd", "-o", str(tmp_path / target), *STEPS)
        assert code == 2 and "not a regular file" in one_line(err)
    assert (tmp_path / "link.png").is_symlink() and Image.open(img).getpixel((0, 0)) == (200, 30, 30)


def test_output_under_a_file_is_one_line(env, tmp_path, capsys):
    img = photo(tmp_path / "red.png")
    (tmp_path / "plain").write_text("x")
    code, err = dclip(capsys, "edit", str(img), "--attr", "rnd", "-o", str(tmp_path / "plain" / "o.png"), *STEPS)
    assert code == 2
    assert str(tmp_path / "plain") in one_line(err)


def test_translate_into_an_existing_folder_with_one_seed(env, tmp_path, capsys):
    img = photo(tmp_path / "stroke.png")
    out = tmp_path / "candidates"
    out.mkdir()
    code, err = dclip(capsys, "translate", str(img), "--attr", "rnd", "--seeds", "1", "--rounds", "1",
                      "-o", str(out), *STEPS)
    assert code == 0, err
    assert [p.name for p in out.iterdir()] == ["stroke_seed0.png"]


# --- an attribute without t0 -----------------------------------------------------------------------------
def test_an_imported_pth_without_t0_edits_and_batches(env, tmp_path, capsys, monkeypatch):
    from dclip_desktop.jobs.session import Session
    from dclip_desktop.jobs.settings import Settings

    monkeypatch.setenv("DCLIP_LIBRARY_DIR", str(tmp_path / "library"))  # imports go to a library of its own
    base = Session(Settings(device="cpu", precision="fp32")).base("demo-shapes")
    state = {k: v.clone() for k, v in base.state_dict().items()}
    torch.manual_seed(0)
    for k in state:
        if k.endswith("conv_out.weight"):
            state[k] += 0.01 * torch.randn_like(state[k])
    pth = tmp_path / "foo.pth"  # a full fine-tune, named without the reference's "_t<t0>" suffix
    torch.save(state, pth)
    code, err = dclip(capsys, "library", "import", str(pth), "--base", "demo-shapes")
    assert code == 0, err
    img = photo(tmp_path / "red.png")
    code, err = dclip(capsys, "edit", str(img), "--attr", "foo", "-o", str(tmp_path / "o.png"), *STEPS)
    assert code == 0, err
    with Image.open(tmp_path / "o.png") as out:
        meta = json.loads(out.text["dclip"])
    from dclip_desktop.zoo.registry import get_base

    assert meta["t0"] == get_base("demo-shapes").recipe["t0"]
    code, err = dclip(capsys, "batch", str(tmp_path / "red.png"), str(tmp_path / "edited"), "--attr", "foo",
                      *STEPS[:-1])
    assert code == 2 and "input folder" in one_line(err)  # a file is not a folder: one line, not int(None)
    (tmp_path / "in").mkdir()
    os.replace(img, tmp_path / "in" / "red.png")
    code, err = dclip(capsys, "batch", str(tmp_path / "in"), str(tmp_path / "edited"), "--attr", "foo", *STEPS[:-1])
    assert code == 0, err


def test_outputs_follow_the_umask(env, tmp_path, capsys):
    img = photo(tmp_path / "red.png")
    old = os.umask(0o027)
    try:
        import dclip_desktop.library.atomic as atomic

        atomic._UMASK = None  # read again, as a process started with this umask would
        code, err = dclip(capsys, "edit", str(img), "--attr", "rnd", "-o", str(tmp_path / "o.png"), *STEPS)
        assert code == 0, err
        assert (tmp_path / "o.png").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)
        atomic._UMASK = None


def test_default_t0_is_finetune_configs():
    from dclip_desktop.core.finetune import FinetuneConfig
    from dclip_desktop.zoo.registry import DEFAULT_T0, attribute_t0

    assert DEFAULT_T0 == FinetuneConfig.t0  # the registry cannot import torch-heavy core/finetune
    assert attribute_t0(None, "no-such-base") == DEFAULT_T0 and attribute_t0(True, "demo-shapes") != 1

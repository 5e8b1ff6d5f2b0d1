"""Batch job on the demo base: the bad-input corpus, kill-and-resume, metadata round trip, full disk.

The attribute is a random LoRA saved through the library: these tests check robustness and
bookkeeping, not edit quality. Steps are tiny (S_for/S_gen 3/3) to stay fast on 2 CPU cores."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.attributes import save_random_lora
from tests.bad_inputs import build_corpus
from tests.gui_helpers import ROOT
from tests.test_compiled import inductor_toolchain

STEPS = 3


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from dclip_desktop.jobs.session import Session
    from dclip_desktop.jobs.settings import Settings

    home = tmp_path_factory.mktemp("batch-home")
    settings = Settings(device="cpu", precision="fp32", library_dir=str(home / "library"),
                        cache_dir=str(home / "latents"))
    session = Session(settings)
    save_random_lora(session, seed=1, std=0.02, steps=STEPS)
    env = {**os.environ, "DCLIP_LIBRARY_DIR": settings.library_dir, "DCLIP_LATENT_CACHE_DIR": settings.cache_dir,
           "DCLIP_CONFIG_DIR": str(home / "config"), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}
    return session, env


def _request(src, out, **kw):
    from dclip_desktop.jobs.batch_job import BatchRequest
    from dclip_desktop.jobs.edit_job import EditRequest

    edit = EditRequest([("rnd", 1.0)], s_for=STEPS, s_gen=STEPS, degree=kw.pop("degree", 1.0))
    return BatchRequest(src, out, edit, **kw)


def _snapshot(root: Path) -> dict:
    """Every entry under root (links not followed): type, mode, mtime, and content hash or link target."""
    snap = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(folder, name)
            st = os.lstat(p)
            rec = [stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_mtime_ns]
            if stat.S_ISLNK(st.st_mode):
                rec.append(os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                rec += [st.st_size, hashlib.sha256(p.read_bytes()).hexdigest()]
            snap[os.fsencode(p.relative_to(root))] = rec
    return snap


def _no_partials(out: Path) -> None:
    for folder, _, files in os.walk(out):
        for name in files:
            assert not name.endswith((".part", ".tmp")), f"partial file left: {name}"
            if name.endswith(".png"):
                with Image.open(Path(folder, name)) as im:
                    im.load()


def test_corpus_no_crash_reasons_outputs_and_untouched_inputs(engine, tmp_path, capsys):
    from dclip_desktop.cli.main import main
    from dclip_desktop.jobs.batch_job import MANIFEST_NAME, edit_from_metadata, read_manifest, run_batch
    from dclip_desktop.jobs.images import open_image
    from dclip_desktop.jobs.metadata import read_metadata

    session, _ = engine
    src, out = tmp_path / "in", tmp_path / "out"
    corpus = build_corpus(src)
    assert len(corpus) >= 40
    out.mkdir()
    Image.new("RGB", (5, 5), (1, 2, 3)).save(out / "rgb.png")  # a file this batch did not write: kept as is
    stranger = (out / "rgb.png").read_bytes()
    before = _snapshot(src)
    events, steps = [], []
    summary = run_batch(session, _request(src, out, recursive=True, paste_back=True, batch_size=8),
                        progress=lambda ph, s, t, p=None: steps.append((ph, s, t)),
                        on_file=lambda rel, st, why: events.append((rel, st, why)))
    assert _snapshot(src) == before, "the input folder changed"
    assert (out / "rgb.png").read_bytes() == stranger

    rel = {k: os.path.relpath(p, src) for k, (p, _) in corpus.items()}
    ok = [k for k, (_, e) in corpus.items() if e == "ok"]
    bad = [k for k, (_, e) in corpus.items() if e == "bad"]
    errors = dict(summary.errors)
    assert summary.failed == len(bad) and summary.done == len(ok) and summary.skipped == 0
    for k in bad:
        assert errors.get(rel[k]), f"{k}: no reason recorded"
    manifest = read_manifest(out)
    outputs = {}
    for k in ok:
        entry = manifest["files"][rel[k]]
        assert entry["status"] == "done", (k, entry)
        target = out / entry["output"]
        outputs[k] = target
        with Image.open(target) as im:
            im.load()
            assert im.size == open_image(corpus[k][0]).size, k  # paste-back keeps the oriented size
        meta = read_metadata(target)
        assert meta["source_image"] == rel[k] and meta["seed"] == 0 and meta["s_for"] == STEPS
    assert len({str(p) for p in outputs.values()}) == len(ok), "two inputs share an output"
    assert outputs["rgb_png"].name == "rgb (2).png"
    assert {outputs["dup_stem_png"].name, outputs["dup_stem_jpg"].name} == {"a.png", "a (2).png"}
    assert outputs["nested"] == out / "sub" / "deeper" / "nested.png"
    for k in ("gif_ignored", "txt_ignored"):
        assert rel[k] not in manifest["files"]
    assert {r for r, st, _ in events if st == "failed"} == {rel[k] for k in bad}
    assert steps and all(ph == "batch" for ph, _, _ in steps) and steps[-1][1:] == (summary.total, summary.total)
    report = json.loads(summary.report_json.read_text())
    assert len(report["files"]) == summary.total == len(ok) + len(bad)
    csv_lines = summary.report_csv.read_bytes().decode("utf-8", "surrogateescape").splitlines()
    assert len(csv_lines) == summary.total + 1
    assert (out / MANIFEST_NAME).exists()
    _no_partials(out)

    # metadata round trip: `dclip info` prints the settings; the same public API reproduces the pixels
    for k in ("exif_rot6_jpg", "unicode_name"):
        assert main(["info", str(outputs[k])]) == 0
        printed = capsys.readouterr().out
        assert "s_for: 3" in printed and "rnd" in printed and "paste_back: True" in printed
        again = edit_from_metadata(session, read_metadata(outputs[k]), corpus[k][0])
        assert np.array_equal(np.asarray(again), np.asarray(Image.open(outputs[k]).convert("RGB"))), k


def _run_cli(env, *args):
    return subprocess.Popen([sys.executable, "-m", "dclip_desktop", "--device", "cpu", "--precision", "fp32", "batch",
                             *map(str, args), "--attr", "rnd", "--s-for", str(STEPS), "--s-gen", str(STEPS), "-q"],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _visible_pngs(out: Path) -> list[Path]:
    return [p for p in out.rglob("*.png") if not p.name.startswith(".")]


@pytest.mark.slow
def test_kill_and_resume_leaves_no_duplicate_or_partial(engine, tmp_path):
    from dclip_desktop.jobs.batch_job import read_manifest, run_batch
    from dclip_desktop.jobs.errors import JobError
    from dclip_desktop.jobs.metadata import read_metadata

    session, env = engine
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    n = 12
    for i in range(n):
        rng = np.random.default_rng(i)
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(src / f"img{i:02d}.png")
    before = _snapshot(src)
    rnd = random.Random(1234)
    kills = sorted(rnd.sample(range(1, n - 1), 3))
    for k in kills:
        proc = _run_cli(env, src, out, "--batch-size", "2", "--resume")
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if out.exists() and len(_visible_pngs(out)) >= k:
                time.sleep(rnd.uniform(0, 0.3))
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        for p in _visible_pngs(out):  # whatever a kill leaves is complete
            with Image.open(p) as im:
                im.load()
        manifest = read_manifest(out)
        if manifest:
            for entry in manifest["files"].values():
                if entry["status"] == "done":
                    assert (out / entry["output"]).is_file()
    proc = _run_cli(env, src, out, "--batch-size", "2", "--resume")
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "failed 0" in stdout
    _no_partials(out)
    pngs = _visible_pngs(out)
    sources = sorted(read_metadata(p)["source_image"] for p in pngs)
    assert sources == sorted(f"img{i:02d}.png" for i in range(n)), "a duplicate or missing output"
    manifest = read_manifest(out)
    assert all(e["status"] == "done" for e in manifest["files"].values())
    assert {e["output"] for e in manifest["files"].values()} == {p.name for p in pngs}
    assert _snapshot(src) == before

    # resume with other settings is refused unless forced; a new batch over an old one needs --force
    with pytest.raises(JobError, match="degree"):
        run_batch(session, _request(src, out, resume=True, batch_size=2, degree=0.5))
    with pytest.raises(JobError, match="--resume"):
        run_batch(session, _request(src, out, batch_size=2))
    again = run_batch(session, _request(src, out, resume=True, batch_size=4))
    assert (again.done, again.skipped, again.failed) == (0, n, 0)


def test_refuses_to_write_into_the_input(engine, tmp_path):
    from dclip_desktop.cli.main import main
    from dclip_desktop.jobs.batch_job import run_batch
    from dclip_desktop.jobs.errors import JobError

    session, _ = engine
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(src / "x.png")
    with pytest.raises(JobError, match="input folder"):
        run_batch(session, _request(src, src))
    with pytest.raises(JobError, match="inside the input"):
        run_batch(session, _request(src, src / "sub", recursive=True))
    assert main(["batch", str(src), str(src), "--attr", "rnd"]) == 2
    assert sorted(p.name for p in src.rglob("*")) == ["sub", "x.png"]


@pytest.mark.slow
def test_compiled_batch_writes_the_same_images(engine, tmp_path):
    """Settings → compile for batches (inductor with frozen weights on a CPU) changes speed, not
    results: the same folder edited with and without it gives the same pixels (±1 level)."""
    import shutil

    from dclip_desktop.jobs.batch_job import run_batch
    from dclip_desktop.jobs.session import Session

    session, _ = engine
    src = tmp_path / "in"
    shutil.copytree(ROOT / "resources" / "samples", src)
    eager = run_batch(session, _request(src, tmp_path / "eager", batch_size=2))
    # a session of its own: no cached latents, so the compiled base does the inversion too
    fast_session = Session(replace(session.settings, compile_batches=True, cache_dir=str(tmp_path / "latents")))
    fast = run_batch(fast_session, _request(src, tmp_path / "fast", batch_size=2))
    assert eager.done == fast.done == len(list(src.glob("*.png")))
    for a in sorted((tmp_path / "eager").glob("*.png")):
        b = tmp_path / "fast" / a.name
        pa, pb = (np.asarray(Image.open(f).convert("RGB"), dtype=np.int16) for f in (a, b))
        assert np.abs(pa - pb).max() <= 1, a.name
    wrapper = fast_session.sampling_unet(fast_session.base("demo-shapes"), compiled=True)
    # with inductor's CPU toolchain here (a C++ compiler and Python's headers) it must have compiled,
    # not fallen back to eager
    if inductor_toolchain():
        assert wrapper.failed is None, wrapper.failed


def test_paste_back_geometry():
    from dclip_desktop.jobs.batch_job import paste_back
    from dclip_desktop.jobs.images import fit_image

    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 60, 3), dtype=np.uint8))
    for fit in ("center-crop", "pad", "squash"):
        fitted, box = fit_image(img, 32, fit)
        out = paste_back(img, Image.new("RGB", (32, 32), (255, 0, 0)), box)
        assert out.size == img.size
        arr = np.asarray(out)
        red = (arr == [255, 0, 0]).all(-1)
        if fit == "center-crop":  # only the middle square is replaced; the sides stay the photo's
            assert red[:, 16:44].all() and not red[:, :14].any() and not red[:, 46:].any()
        else:
            assert red.all()


def test_full_disk_stops_cleanly_and_resume_finishes(engine, tmp_path):
    from dclip_desktop.jobs.batch_job import DiskFullError, read_manifest, run_batch

    session, _ = engine
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        src, out = tmp_path / "in", disk / "out"
        src.mkdir()
        for i in range(6):  # noise does not compress: each pasted-back PNG is ~27 KB
            rng = np.random.default_rng(100 + i)
            Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(src / f"n{i}.png")
        with pytest.raises(DiskFullError, match="disk full") as info:
            run_batch(session, _request(src, out, paste_back=True, batch_size=2))
        written = _visible_pngs(out)
        assert info.value.summary.done == len(written) < 6
        assert f"{len(written)} files written" in str(info.value)
        _no_partials(out)
        manifest = read_manifest(out)
        for entry in manifest["files"].values():
            if entry["status"] == "done":
                assert (out / entry["output"]).is_file()
        subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)
        summary = run_batch(session, _request(src, out, paste_back=True, batch_size=2, resume=True))
        assert summary.failed == 0 and summary.done + summary.skipped == 6
        assert len(_visible_pngs(out)) == 6
        _no_partials(out)
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)

"""The attribute library on real files: round trips, damage reports, crash safety, trash, imports."""

from __future__ import annotations

import copy
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from dclip_desktop.core.lora import full_delta, inject_lora, lora_factors, lora_modules
from dclip_desktop.library import manifest as mf
from dclip_desktop.library.errors import DamagedEntryError, LibraryError
from dclip_desktop.library.pth_import import import_official_pth, parse_official_name
from dclip_desktop.library.store import Library

from .conftest import tiny_unet

REPO = Path(__file__).resolve().parents[1]


def random_lora(base, rank: int = 4, seed: int = 1) -> dict[str, torch.Tensor]:
    """LoRA factors with non-zero B, as after some fine-tuning."""
    model = copy.deepcopy(base)
    torch.manual_seed(seed)
    inject_lora(model, rank)
    for _, m in lora_modules(model):
        torch.nn.init.normal_(m.lora_B.weight, std=0.02)
    return lora_factors(model)


def meta(base_id: str = "tiny", t0: int = 400, **kw) -> dict:
    out = {"base_id": base_id, "base_sha256": "ab" * 32, "source": "face", "target": "pixar face", "t0": t0,
           "s_for": 40, "s_gen": 6, "lambdas": {"clip": 3.0, "l1": 0.3, "face": 0.0}, "lr": 1e-3,
           "lr_schedule": "constant", "epochs": 1, "mode": "efficient", "lora_rank": 4, "seed": 0}
    out.update(kw)
    return out


def forward(model, seed: int = 7) -> torch.Tensor:
    torch.manual_seed(seed)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        return model(x, torch.tensor([10, 500])).sample


@pytest.fixture
def lib(tmp_path):
    return Library(tmp_path / "lib")


def test_library_dir_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("DCLIP_LIBRARY_DIR", str(tmp_path / "envlib"))
    assert Library().root == tmp_path / "envlib"
    assert Library(tmp_path / "explicit").root == tmp_path / "explicit"


def test_round_trip_export_import_is_bit_identical(tmp_path, unet):
    lib = Library(tmp_path / "a")
    thumbs = {"before": Image.new("RGB", (16, 16), "red"), "after": Image.new("RGB", (16, 16), "blue")}
    entry = lib.save_attribute("Pixar", random_lora(unet), "lora", meta(), thumbs)
    assert entry.damaged is None and entry.kind == "lora" and entry.t0 == 400 and entry.base_id == "tiny"
    m = entry.manifest
    assert m["schema_version"] == mf.SCHEMA_VERSION and m["weights_bytes"] == entry.weights_path.stat().st_size
    assert m["lambdas"] == {"clip": 3.0, "l1": 0.3, "face": 0.0} and m["created"].endswith("Z")
    assert entry.thumbnail("before") is not None and entry.thumbnail("after") is not None
    edited = lib.materialize(entry, unet)
    assert not torch.equal(forward(edited), forward(unet)), "the attribute must change the model"
    assert torch.equal(forward(unet), forward(tiny_unet())), "materialize must not touch the base"

    bundle = lib.export("pixar", tmp_path / "share")
    assert bundle.suffix == ".dclip" and bundle.is_file()
    fresh = Library(tmp_path / "b")
    imported = fresh.import_file(bundle)
    assert imported.name == "Pixar" and imported.damaged is None
    assert imported.thumbnail("after") is not None
    assert imported.manifest["weights_sha256"] == m["weights_sha256"]
    assert torch.equal(forward(fresh.materialize(imported, unet)), forward(edited))
    kind, w = fresh.load_weights(imported)
    assert kind == "lora" and w.keys() == lib.load_weights(entry)[1].keys()


def test_full_delta_is_fp16_with_scale_and_accurate(lib, unet):
    tuned = copy.deepcopy(unet)
    torch.manual_seed(3)
    with torch.no_grad():
        for p in tuned.parameters():
            p += 4e-6 * torch.randn_like(p)  # the size of a paper learning-rate step
    delta = full_delta(tuned, unet)
    entry = lib.save_attribute("full", delta, "full_delta", meta(lora_rank=None))
    kind, back = lib.load_weights(entry)
    assert kind == "full_delta" and back.keys() == delta.keys()
    for k in delta:
        assert back[k].dtype == torch.float32
        assert (back[k] - delta[k]).abs().max() <= 1e-3 * delta[k].abs().max()
    n_params = sum(v.numel() for v in delta.values())
    assert entry.manifest["weights_bytes"] < 2 * n_params + 64 * 1024  # fp16 + header
    out = forward(lib.materialize(entry, unet))
    assert torch.allclose(out, forward(tuned), atol=1e-4)


def test_damaged_entries_are_listed_with_reasons(lib, unet):
    w = random_lora(unet)
    names = ["truncated", "bad-manifest", "sha-mismatch", "missing-weights", "fine"]
    entries = {n: lib.save_attribute(n, w, "lora", meta()) for n in names}
    wp = entries["truncated"].weights_path
    wp.write_bytes(wp.read_bytes()[: wp.stat().st_size // 2])
    (entries["bad-manifest"].path / "manifest.json").write_text("{not json")
    wp = entries["sha-mismatch"].weights_path
    data = bytearray(wp.read_bytes())
    data[-3] ^= 0xFF  # same size, header intact, content changed
    wp.write_bytes(bytes(data))
    entries["missing-weights"].weights_path.unlink()

    listed = {e.id: e for e in lib.list()}
    assert len(listed) == 5
    reasons = {n: listed[entries[n].id].damaged for n in names}
    assert "truncated" in reasons["truncated"]
    assert "JSON" in reasons["bad-manifest"]
    assert "sha256" in reasons["sha-mismatch"]
    assert "missing" in reasons["missing-weights"]
    assert reasons["fine"] is None
    assert listed[entries["bad-manifest"].id].name == entries["bad-manifest"].id  # shown by folder name

    with pytest.raises(DamagedEntryError, match="sha256"):
        lib.get("sha-mismatch")
    assert lib.get("fine").damaged is None
    ok = {e.id: (good, reason) for e, good, reason in lib.verify()}
    assert [n for n in names if ok[entries[n].id][0]] == ["fine"]
    lib.delete("sha-mismatch")  # damaged entries can still be cleaned up
    assert len(lib.list()) == 4


def test_weight_file_cut_inside_its_header_is_damaged(lib, unet):
    entry = lib.save_attribute("t", random_lora(unet), "lora", meta())
    with open(entry.weights_path, "r+b") as fh:
        fh.truncate(6)
    (reason,) = [e.damaged for e in lib.list()]
    assert "truncated" in reason


SAVE_LOOP = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import torch
    from dclip_desktop.library.store import Library

    real_fsync = os.fsync

    def slow_fsync(fd):  # every durable step announces itself, then lingers so the test can kill here
        real_fsync(fd)
        print("fsync", flush=True)
        time.sleep(0.15)

    os.fsync = slow_fsync
    lib = Library(Path(sys.argv[1]))
    torch.manual_seed(0)
    w = {}
    for i in range(4):
        w[f"l{i}.weight.lora_A"] = torch.randn(4, 64)
        w[f"l{i}.weight.lora_B"] = torch.randn(64, 4)
        w[f"l{i}.weight.lora_scale"] = torch.tensor(1.0)
    for i in range(100):
        lib.save_attribute(f"{sys.argv[2]}-{i}", w, "lora", {"base_id": "tiny", "t0": 400})
        print("saved", i, flush=True)
    """
)


@pytest.mark.parametrize("kill_after", [1, 2, 3, 7])
def test_kill_mid_save_leaves_no_half_entry(tmp_path, kill_after):
    script = tmp_path / "save_loop.py"
    script.write_text(SAVE_LOOP)
    root = tmp_path / "lib"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(script), str(root), "run"], stdout=subprocess.PIPE, text=True,
                            env=env, cwd=tmp_path)
    saved, fsyncs = [], 0
    try:
        deadline = time.time() + 60
        while fsyncs < kill_after and time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("fsync"):
                fsyncs += 1
            elif line.startswith("saved"):
                saved.append(f"run-{line.split()[1]}")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert fsyncs == kill_after, "the saver died before reaching the kill point"
    lib = Library(root)
    listed = lib.list()
    assert all(e.damaged is None for e in listed), [e.damaged for e in listed]
    names = {e.name for e in listed}
    assert set(saved) <= names and len(names) <= len(saved) + 1
    report = lib.gc()
    assert not [p for p in (root / "attributes").iterdir() if p.name.startswith(".")]
    assert {e.name for e in lib.list()} == names
    assert all(p.name.startswith(".tmp-") for p in report.removed)
    lib.save_attribute("after-crash", {"x.lora_A": torch.ones(1, 2), "x.lora_B": torch.ones(2, 1),
                                       "x.lora_scale": torch.tensor(1.0)}, "lora", {"base_id": "tiny"})


def test_rename_delete_restore_empty_trash(lib, unet):
    w = random_lora(unet)
    a = lib.save_attribute("Pixar", w, "lora", meta())
    lib.save_attribute("Gogh", w, "lora", meta(base_id="other"))
    with pytest.raises(LibraryError, match="already exists"):
        lib.save_attribute("PIXAR", w, "lora", meta())
    with pytest.raises(LibraryError, match="already exists"):
        lib.rename("gogh", "pixar")
    with pytest.raises(LibraryError, match="empty"):
        lib.save_attribute("  ", w, "lora", meta())
    assert lib.rename("pixar", "Pixar 2").name == "Pixar 2"
    lib.rename("Pixar 2", "pixar 2")  # changing only the case of its own name is fine
    assert lib.get(a.id).name == "pixar 2" and lib.get(a.id[:6]).id == a.id
    assert [e.name for e in lib.list(base_id="tiny")] == ["pixar 2"]

    lib.delete("pixar 2")
    assert [e.name for e in lib.list()] == ["Gogh"]
    assert lib.find("pixar 2") is None
    with pytest.raises(LibraryError, match="no attribute"):
        lib.get("pixar 2")
    assert [e.name for e in lib.trash()] == ["pixar 2"]
    lib.save_attribute("pixar 2", w, "lora", meta())  # the name is free again
    with pytest.raises(LibraryError, match="already exists"):
        lib.restore("pixar 2")
    restored = lib.restore(a.id, new_name="pixar old")
    assert restored.id == a.id and restored.damaged is None
    assert torch.equal(forward(lib.materialize(restored, unet)), forward(lib.materialize("pixar 2", unet)))

    lib.delete("gogh")
    assert lib.empty_trash(older_than_days=1).removed == []
    report = lib.empty_trash()
    assert len(report.removed) == 1 and lib.trash() == []
    assert sorted(e.name for e in lib.list()) == ["pixar 2", "pixar old"]


def test_import_rejects_name_collision_and_corrupt_bundle(tmp_path, lib, unet):
    lib.save_attribute("blue", random_lora(unet), "lora", meta())
    bundle = lib.export("blue", tmp_path / "blue.dclip")
    with pytest.raises(LibraryError, match="already exists"):
        lib.import_file(bundle)
    again = lib.import_file(bundle, name="blue copy")
    assert again.id != lib.get("blue").id  # same id is taken: a new one is given
    corrupt = tmp_path / "corrupt.dclip"
    data = bytearray(bundle.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    with pytest.raises(LibraryError):
        Library(tmp_path / "other").import_file(corrupt)
    (tmp_path / "junk.dclip").write_bytes(b"not a zip")
    with pytest.raises(LibraryError, match="not a .dclip"):
        lib.import_file(tmp_path / "junk.dclip")
    assert not list((tmp_path / "other").glob("attributes/*"))


def test_materialize_on_a_different_architecture_is_a_clear_error(lib, unet):
    from diffusers import UNet2DModel

    lib.save_attribute("a", random_lora(unet), "lora", meta())
    other = UNet2DModel(sample_size=16, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=8,
                        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))
    with pytest.raises(LibraryError, match="does not fit"):
        lib.materialize("a", other)


V0_MANIFEST = {
    "name": "old pixar", "base": "celebahq", "base_sha": "cd" * 32, "src_txt": "face", "trg_txt": "pixar",
    "t_0": 601, "n_inv_step": 40, "n_train_step": 6, "clip_loss_w": 3, "l1_loss_w": 0.3, "id_loss_w": 0.3,
    "lr": 4e-6, "n_epochs": 1, "rank": 8, "kind": "lora", "created": 1700000000.0,
}


def test_migrates_a_v0_manifest(lib, unet):
    entry = lib.save_attribute("tmp", random_lora(unet), "lora", meta())
    old = dict(V0_MANIFEST, id=entry.id, sha256=entry.manifest["weights_sha256"],
               size=entry.manifest["weights_bytes"])
    (entry.path / "manifest.json").write_text(json.dumps(old))
    (e,) = lib.list()
    assert e.damaged is None and e.name == "old pixar"
    m = e.manifest
    assert m["schema_version"] == 1 and m["base_id"] == "celebahq" and m["t0"] == 601 and m["s_for"] == 40
    assert m["lambdas"] == {"clip": 3, "l1": 0.3, "face": 0.3} and m["lora_rank"] == 8
    assert m["source"] == "face" and m["target"] == "pixar" and m["created"] == "2023-11-14T22:13:20Z"
    assert set(mf.MIGRATIONS) == {0}
    lib.rename("old pixar", "pixar v1")  # a rename writes the migrated manifest
    assert json.loads((entry.path / "manifest.json").read_text())["schema_version"] == 1
    (entry.path / "manifest.json").write_text(json.dumps(dict(m, schema_version=99)))
    assert "newer dclip" in lib.list()[0].damaged


class Payload:
    """Unpickling this calls open(marker, 'w'): code execution stand-in."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_not_executed(tmp_path, lib, unet):
    marker = tmp_path / "pwned"
    evil = tmp_path / "human_evil_t500.pth"
    torch.save({"conv_in.weight": torch.zeros(1), "x": Payload(marker)}, evil)
    with open(evil, "rb") as fh:  # the payload is live: a plain load would run it
        import zipfile

        with zipfile.ZipFile(fh) as zf:
            inner = [n for n in zf.namelist() if n.endswith("data.pkl")][0]
            blob = zf.read(inner)
    assert b"open" in blob
    with pytest.raises(LibraryError, match="refuses"):
        lib.import_file(evil, base_id="tiny", base_model=unet)
    assert not marker.exists()
    raw = tmp_path / "raw_evil_t500.pth"
    raw.write_bytes(pickle.dumps(Payload(marker), protocol=2))  # a legacy (non-zip) pickle
    with pytest.raises(LibraryError):
        import_official_pth(raw, lib, base_id="tiny", base_model=unet)
    assert not marker.exists() and lib.list() == []


def test_official_pth_import(tmp_path, lib, unet):
    assert parse_official_name("human_pixar_t601.pth") == {
        "name": "human_pixar", "t0": 601, "target": "pixar", "base_id": "celebahq", "source": "face"}
    assert parse_official_name("church_gothic_t601.pth")["base_id"] == "church"
    assert parse_official_name("dog_nicolas_cage_t500.pth")["target"] == "nicolas cage"
    assert parse_official_name("weird.pth")["base_id"] is None

    tuned = copy.deepcopy(unet)
    torch.manual_seed(5)
    with torch.no_grad():
        for p in tuned.parameters():
            p += 1e-4 * torch.randn_like(p)
    path = tmp_path / "human_pixar_t601.pth"
    torch.save({f"module.{k}": v for k, v in tuned.state_dict().items()}, path)
    entry = lib.import_file(path, base_model=unet, dense=True)  # the default, low rank: tests/test_low_rank.py
    assert (entry.name, entry.t0, entry.target, entry.base_id, entry.kind) == (
        "human_pixar", 601, "pixar", "celebahq", "full_delta")
    assert entry.manifest["imported"]["from"] == "human_pixar_t601.pth"
    assert torch.allclose(forward(lib.materialize(entry, unet)), forward(tuned), atol=1e-4)
    with pytest.raises(LibraryError, match="--name"):
        lib.import_file(path, base_model=unet)
    with pytest.raises(LibraryError, match="--base"):
        lib.import_file(path.rename(tmp_path / "weird_t300.pth"), base_model=unet)


def ddpm256_unet():
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=256, block_out_channels=(128, 128, 256, 256, 512, 512), layers_per_block=2,
        down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D",
                          "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
        downsample_padding=0, freq_shift=1, flip_sin_to_cos=False, norm_eps=1e-6,
    )


def test_rank8_lora_of_real_ddpm256_is_at_most_20_mb(lib):
    with torch.device("meta"):
        model = ddpm256_unet()
    assert 113.6e6 < sum(p.numel() for p in model.parameters()) < 113.7e6
    inject_lora(model, 8)
    factors = {k: (torch.randn(v.shape) * 1e-3 if v.dim() else torch.tensor(1.0))
               for k, v in lora_factors(model).items()}
    entry = lib.save_attribute("ddpm256-r8", factors, "lora", meta(base_id="celebahq", lora_rank=8))
    size = entry.weights_path.stat().st_size
    assert size <= 20e6, f"rank-8 attribute is {size / 1e6:.1f} MB"
    assert entry.size_bytes <= 20e6

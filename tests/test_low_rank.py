"""Full fine-tunes stored as per-layer low-rank deltas: size, the edit against the dense delta, bad files."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from dclip_desktop.cli.main import main
from dclip_desktop.core import low_rank as lr
from dclip_desktop.library import weights as wf
from dclip_desktop.library.errors import LibraryError
from dclip_desktop.library.store import Library

REPO = Path(__file__).resolve().parents[1]
# Small enough for a 2-core CPU: a 1-epoch full fine-tune on 2 sampled images.
FINETUNE = ["finetune", "--src", "red", "--tgt", "blue", "--full", "--sample", "2", "--oversample", "1",
            "--epochs", "1", "--sample-steps", "4", "--s-for", "10", "-q"]


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_full_finetune_is_stored_low_rank_and_edits_like_the_dense_one(tmp_path, capsys):
    assert main([*FINETUNE, "--name", "blue-lr"]) == 0
    assert main([*FINETUNE, "--name", "blue-dense", "--dense"]) == 0
    lib = Library()
    small, dense = lib.get("blue-lr"), lib.get("blue-dense")
    assert (small.kind, dense.kind) == ("low_rank", "full_delta")
    storage = small.manifest["storage"]
    assert storage["kind"] == "low_rank" and storage["ranks"]["factored_layers"] > 0
    assert lr.within(storage["error_vs_dense_levels"])
    assert small.manifest["weights_bytes"] == storage["bytes"] < storage["dense_bytes"]
    assert small.manifest["weights_bytes"] < dense.manifest["weights_bytes"] and small.size_bytes <= 20e6

    image = REPO / "resources" / "samples" / "red_circle.png"
    outs = {}
    for name in ("blue-lr", "blue-dense"):
        outs[name] = tmp_path / f"{name}.png"
        assert main(["edit", str(image), "--attr", name, "-o", str(outs[name]), "--s-for", "10", "--s-gen", "6",
                     "-q"]) == 0
    diff = np.abs(_pixels(outs["blue-lr"]) - _pixels(outs["blue-dense"]))
    print(f"\nlow rank {small.manifest['weights_bytes']} B vs dense {dense.manifest['weights_bytes']} B; "
          f"edit |Δ| mean {diff.mean():.3f} max {diff.max()} levels; storage {storage}")
    assert diff.mean() <= lr.PIXEL_TOLERANCE["mean"] and diff.max() <= lr.PIXEL_TOLERANCE["max"]

    capsys.readouterr()
    assert main(["library", "list"]) == 0
    out = capsys.readouterr().out
    assert "SIZE" in out and "low_rank" in out and "1.9 MB" in out
    assert main(["library", "show", "blue-lr"]) == 0
    assert "low rank" in capsys.readouterr().out


def test_synthetic_ddpm256_delta_encodes_to_at_most_20_mb():
    from diffusers import UNet2DModel

    from dclip_desktop.zoo.catalogue import DDPM256_CONFIG

    with torch.device("meta"):
        model = UNet2DModel(**DDPM256_CONFIG)
    shapes = {n: p.shape for n, p in model.named_parameters()}
    assert 113.6e6 < sum(s.numel() for s in shapes.values()) < 113.7e6
    # Like a real fine-tune's change: a few strong directions per layer plus small full-rank noise.
    g = torch.Generator().manual_seed(0)
    delta = {}
    for name, shape in shapes.items():
        if len(shape) >= 2:
            cols = shape.numel() // shape[0]
            low = torch.randn(shape[0], 4, generator=g) @ torch.randn(4, cols, generator=g) * 2e-5
            delta[name] = (low + 1e-6 * torch.randn(shape[0], cols, generator=g)).reshape(shape)
        else:
            delta[name] = 1e-6 * torch.randn(shape, generator=g)
    start = time.perf_counter()
    stored = lr.factorize(delta, lr.spectra(delta), 0.01)
    blob = wf.encode(stored, "low_rank")
    back = wf.decode(blob, "low_rank")
    err = lr.relative_error(delta, back)
    print(f"\nDDPM-256 synthetic delta: {len(blob) / 1e6:.2f} MB low rank (dense fp16 would be "
          f"{2 * sum(s.numel() for s in shapes.values()) / 1e6:.0f} MB), ranks {lr.rank_summary(stored)}, "
          f"relative error {err:.4f}, {time.perf_counter() - start:.1f} s")
    assert len(blob) <= 20e6
    assert back.keys() == delta.keys() and all(back[k].shape == delta[k].shape for k in delta)
    assert err < 0.1


def _factored(unet) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    delta = {n: 1e-4 * torch.randn(p.shape[0], 2) @ torch.randn(2, p[0].numel()) if p.dim() >= 2 else
             1e-5 * torch.randn(p.shape) for n, p in unet.named_parameters()}
    delta = {n: d.reshape(p.shape) for (n, p), d in zip(unet.named_parameters(), delta.values())}
    return lr.factorize(delta, lr.spectra(delta), 0.01)


def test_round_trip_of_the_stored_form_matches_the_truncation(unet):
    stored = _factored(unet)
    assert lr.ranks(stored) and set(lr.ranks(stored).values()) == {2}
    back = wf.decode(wf.encode(stored, "low_rank"), "low_rank")
    params = dict(unet.named_parameters())
    assert back.keys() == params.keys()
    wf.check_fit("low_rank", back, params)
    for name, d in back.items():
        want = lr.expand(stored[name + "::A"], stored[name + "::B"]) if name + "::A" in stored else stored[name]
        assert (d - want).abs().max() <= 2e-3 * want.abs().max()


@pytest.mark.parametrize("damage, message", [
    ("missing", "lack 'B'"),
    ("shape", "do not fit each other"),
    ("nan", "NaN"),
])
def test_bad_low_rank_files_are_refused_in_one_line(unet, damage, message):
    stored = _factored(unet)
    name = next(k[:-3] for k in stored if k.endswith("::A"))
    tensors = dict(st_load(wf.encode(stored, "low_rank")))
    if damage == "missing":
        del tensors[name + "::B"]
    elif damage == "shape":
        tensors[name + "::B"] = torch.zeros(tensors[name + "::B"].shape[0], 1, dtype=torch.float16)
    else:
        tensors[name + "::A"] = tensors[name + "::A"].clone()
        tensors[name + "::A"].view(-1)[0] = float("nan")
    blob = st_save(tensors, metadata={"format": wf.FORMAT, "kind": "low_rank"})
    with pytest.raises(LibraryError, match=message) as info:
        wf.decode(blob, "low_rank")
    assert "\n" not in str(info.value)


def test_pth_import_is_low_rank_unless_dense(tmp_path, unet, capsys):
    stored = _factored(unet)
    tuned = copy.deepcopy(unet)
    decoded = wf.decode(wf.encode(stored, "low_rank"), "low_rank")
    with torch.no_grad():
        for n, p in tuned.named_parameters():
            p += decoded[n]
    path = tmp_path / "human_pixar_t601.pth"
    torch.save(tuned.state_dict(), path)
    lib = Library()
    small = lib.import_file(path, base_model=unet)
    dense = lib.import_file(path, base_model=unet, name="pixar dense", dense=True)
    assert (small.kind, dense.kind) == ("low_rank", "full_delta")
    assert small.manifest["storage"]["criterion"].startswith("4-step sample from fixed noise")
    assert small.manifest["weights_bytes"] < dense.manifest["weights_bytes"]
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([500])
    with torch.no_grad():
        a = lib.materialize(small, unet)(x, t).sample
        b = lib.materialize(dense, unet)(x, t).sample
    assert torch.allclose(a, b, atol=1e-3)


def test_gc_reports_what_it_freed(capsys):
    lib = Library()
    lib.attributes_dir.mkdir(parents=True)
    leftover = lib.attributes_dir / ".tmp-deadbeef"
    leftover.mkdir()
    (leftover / "weights.safetensors").write_bytes(b"\0" * 3000)
    assert main(["library", "gc"]) == 0
    out = capsys.readouterr().out
    assert "removed 1 item(s), freed 3 kB" in out and not leftover.exists()
    assert main(["library", "gc"]) == 0
    assert "nothing to remove, 0 bytes freed" in capsys.readouterr().out

"""`dclip models add BASE FILE` and ImageNet-512 as DiffusionCLIP runs it (issue #19, build items 1–2).

Synthetic state dicts carry the exact key names of the real files: guided-diffusion's UNetModel at the
AFHQ-dog and ImageNet-512 configs (what core/adm.py builds), the original DDPM code's names (what
core/convert.py converts from) and diffusers' UNet2DModel, at reduced width. Through `main([...])`, the
installed base loads offline and reproduces a forward of the same weights.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import replace

import pytest
import torch
from safetensors.torch import save_file

from dclip_desktop.cli.main import main
from dclip_desktop.core.adm import AFHQ_DOG_256, IMAGENET_512, ADMUNet, ClassConditioned
from dclip_desktop.core.adm_checkpoint import KNOWN_CONFIGS, expected_shapes
from dclip_desktop.core.convert import to_original_state_dict
from dclip_desktop.zoo import download, loading, registry
from dclip_desktop.zoo.catalogue import DDPM256_CONFIG

from .test_adm import _randomize

# The released configs at reduced width and size: same blocks, levels and attention levels, so the
# same key names (asserted below); only the shapes shrink.
SMALL_IMAGENET = replace(IMAGENET_512, image_size=128, num_channels=64, attention_resolutions="8,4,2",
                         num_head_channels=32)
SMALL_AFHQ = replace(AFHQ_DOG_256, image_size=64, num_channels=32, attention_resolutions="4", num_head_channels=32)
SMALL_DDPM = {**DDPM256_CONFIG, "sample_size": 64, "block_out_channels": (16, 16, 32, 32, 64, 64),
              "norm_num_groups": 8}


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def small_adm(monkeypatch):
    """The registry's ADM bases, built at reduced width (the real catalogue entries and file names)."""
    monkeypatch.setitem(KNOWN_CONFIGS, "imagenet_512", SMALL_IMAGENET)
    monkeypatch.setitem(KNOWN_CONFIGS, "afhq_dog_256", SMALL_AFHQ)


@pytest.fixture
def ddpm_base():
    spec = registry.register_base(
        registry.BaseSpec("test-add-ddpm", "Small DDPM-256 family", "test", "ddpm", 64, repo_id="acme/add-ddpm",
                          files=list(registry.DDPM_FILES), config=SMALL_DDPM),
        replace=True,
    )
    yield spec
    registry._BASES.pop(spec.id, None)


def _cache_files() -> list[str]:
    root = download.cache_root()
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def _add(capsys, base: str, path) -> tuple[int, list[str]]:
    capsys.readouterr()
    rc = main(["models", "add", base, str(path)])
    out = capsys.readouterr()
    return rc, (out.err if rc else out.out).strip().splitlines()


def _x(size: int, batch: int = 1):
    g = torch.Generator().manual_seed(7)
    return torch.randn(batch, 3, size, size, generator=g), torch.tensor([417] * batch)


def _same_keys(cfg_small, cfg_full) -> None:
    assert expected_shapes(cfg_small).keys() == expected_shapes(cfg_full).keys()


# --- ImageNet-512 unconditional ------------------------------------------------------------------------
def test_class_conditional_without_label_is_the_unconditional_model():
    """guided-diffusion's class_cond=False model given the same weights (label_emb aside) computes the same."""
    cond = _randomize(ADMUNet(SMALL_IMAGENET)).eval()
    uncond = ADMUNet(replace(SMALL_IMAGENET, class_cond=False)).eval()
    sd = {k: v for k, v in cond.state_dict().items() if k != "label_emb.weight"}
    uncond.load_state_dict(sd, strict=True)
    x, t = _x(SMALL_IMAGENET.image_size, batch=2)
    with torch.no_grad():
        out = cond(x, t)
        assert torch.equal(out, uncond(x, t))
        assert not torch.allclose(out, cond(x, t, torch.tensor([0, 0])), atol=1e-4)  # a label does matter


def test_imagenet_base_is_unconditional_and_official_pth_imports(small_adm, capsys, tmp_path):
    _same_keys(SMALL_IMAGENET, IMAGENET_512)
    src = _randomize(ADMUNet(SMALL_IMAGENET)).eval()
    path = tmp_path / "512x512_diffusion.pt"
    torch.save(src.state_dict(), path)  # guided-diffusion's file: a plain state dict, exact names
    rc, lines = _add(capsys, "imagenet-512", path)
    assert rc == 0 and len(lines) == 1 and "512x512_diffusion.pt" in lines[0]
    base = loading.load_base("imagenet-512", "cpu", offline=True)
    assert isinstance(base, ADMUNet) and not isinstance(base, ClassConditioned)
    x, t = _x(SMALL_IMAGENET.image_size)
    with torch.no_grad():
        torch.testing.assert_close(base(x, t), src(x, t), atol=1e-5, rtol=0)
    assert registry.get_base("imagenet-512").loader is None
    assert "unconditional" in registry.get_base("imagenet-512").title

    # DiffusionCLIP's official fine-tune: the bare UNet's keys (it saves model.module.state_dict())
    tuned = {k: v + 1e-3 * torch.randn_like(v) if v.is_floating_point() else v for k, v in src.state_dict().items()}
    official = tmp_path / "imagenet_watercolor_t601.pth"
    torch.save(tuned, official)
    assert main(["library", "import", str(official)]) == 0  # the base guessed from the name
    from dclip_desktop.library.store import Library

    lib = Library()
    entry = lib.get("imagenet_watercolor")
    assert (entry.base_id, entry.t0) == ("imagenet-512", 601)
    model = lib.materialize(entry, base)
    ref = ADMUNet(SMALL_IMAGENET).eval()
    ref.load_state_dict(tuned)
    with torch.no_grad():
        torch.testing.assert_close(model(x, t), ref(x, t), atol=1e-4, rtol=0)  # the delta is stored in fp16


def test_explicit_class_label_wraps(small_adm, capsys, tmp_path, monkeypatch):
    src = _randomize(ADMUNet(SMALL_IMAGENET)).eval()
    torch.save(src.state_dict(), tmp_path / "w.pt")
    assert _add(capsys, "imagenet-512", tmp_path / "w.pt")[0] == 0
    monkeypatch.setitem(registry.get_base("imagenet-512").config, "class_label", 3)
    model = loading.load_base("imagenet-512", "cpu", offline=True)
    assert isinstance(model, ClassConditioned)
    x, t = _x(SMALL_IMAGENET.image_size)
    with torch.no_grad():
        torch.testing.assert_close(model(x, t), src(x, t, torch.tensor([3])), atol=1e-5, rtol=0)


# --- models add: each layout ---------------------------------------------------------------------------
def test_afhq_dog_adm_file(small_adm, capsys, tmp_path):
    _same_keys(SMALL_AFHQ, AFHQ_DOG_256)
    src = _randomize(ADMUNet(SMALL_AFHQ)).eval()
    path = tmp_path / "afhq_dog_4m.pt"
    torch.save(src.state_dict(), path)
    rc, lines = _add(capsys, "afhq-dog", path)
    assert rc == 0 and len(lines) == 1
    dest = download.model_dir("afhq-dog") / "afhq_dog_4m.pt"
    assert dest.read_bytes() == path.read_bytes()
    assert os.path.samefile(dest, path)  # the same filesystem: hard-linked, not copied
    assert download.recorded_sha256(dest) == download.sha256_file(path)
    assert download.is_installed("afhq-dog")
    model = loading.load_base("afhq-dog", "cpu", offline=True)
    x, t = _x(SMALL_AFHQ.image_size)
    with torch.no_grad():
        torch.testing.assert_close(model(x, t), src(x, t), atol=1e-5, rtol=0)
    assert download.verify_model("afhq-dog")[0][1]


def _small_unet(seed: int = 0):
    from diffusers.models.unets.unet_2d import UNet2DModel

    torch.manual_seed(seed)
    model = UNet2DModel(**SMALL_DDPM).eval()
    with torch.no_grad():  # non-zero everywhere: zero-initialised layers would hide a wrong key
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _ddpm_forward(model, size=64):
    x, t = _x(size)
    with torch.no_grad():
        return model(x, t).sample


@pytest.mark.parametrize("layout", ["original", "diffusers-safetensors", "diffusers-bin-old-names"])
def test_ddpm_layouts(ddpm_base, capsys, tmp_path, layout):
    from diffusers.models.unets.unet_2d import UNet2DModel

    src = _small_unet()
    sd = src.state_dict()
    if layout == "original":  # SDEdit's celeba_hq.ckpt, DiffusionCLIP's DDPM class: a plain state dict
        with torch.device("meta"):
            assert set(sd) == set(UNet2DModel(**DDPM256_CONFIG).state_dict())  # the real key names
        path = tmp_path / "celeba_hq.ckpt"
        original = to_original_state_dict(sd, SMALL_DDPM)
        assert "temb.dense.0.weight" in original and "up.4.attn.0.q.weight" in original
        torch.save(original, path)
    elif layout == "diffusers-safetensors":
        path = tmp_path / "diffusion_pytorch_model.safetensors"
        save_file({k: v.contiguous() for k, v in sd.items()}, path)
    else:  # the hub's .bin: the old attention names
        path = tmp_path / "diffusion_pytorch_model.bin"
        old = {k.replace("to_q", "query").replace("to_k", "key").replace("to_v", "value")
               .replace("to_out.0", "proj_attn"): v for k, v in sd.items()}
        assert any(".proj_attn." in k for k in old)
        torch.save(old, path)
    rc, lines = _add(capsys, "test-add-ddpm", path)
    assert rc == 0 and len(lines) == 1, lines
    folder = download.model_dir("test-add-ddpm")
    assert download.is_installed("test-add-ddpm") and (folder / "config.json").is_file()
    weights = loading.base_weights_path("test-add-ddpm")
    assert weights.name == ("diffusion_pytorch_model.bin" if layout.endswith("bin-old-names")
                            else "diffusion_pytorch_model.safetensors")
    assert download.recorded_sha256(weights) == download.sha256_file(weights)
    model = loading.load_base("test-add-ddpm", "cpu", offline=True)
    torch.testing.assert_close(_ddpm_forward(model), _ddpm_forward(src), atol=1e-5, rtol=0)


def test_adding_again_replaces_the_other_variant(ddpm_base, capsys, tmp_path):
    src = _small_unet()
    torch.save(src.state_dict(), tmp_path / "diffusion_pytorch_model.bin")
    assert _add(capsys, "test-add-ddpm", tmp_path / "diffusion_pytorch_model.bin")[0] == 0
    other = _small_unet(seed=1)
    torch.save(to_original_state_dict(other.state_dict(), SMALL_DDPM), tmp_path / "x.ckpt")
    assert _add(capsys, "test-add-ddpm", tmp_path / "x.ckpt")[0] == 0
    assert not (download.model_dir("test-add-ddpm") / "diffusion_pytorch_model.bin").exists()
    model = loading.load_base("test-add-ddpm", "cpu", offline=True)
    torch.testing.assert_close(_ddpm_forward(model), _ddpm_forward(other), atol=1e-5, rtol=0)


# --- refusals: one line, exit 2, nothing in the cache --------------------------------------------------
class _Payload:
    def __reduce__(self):
        return (os.getcwd, ())


def test_refusals_leave_nothing(small_adm, ddpm_base, capsys, tmp_path):
    wrong = _randomize(ADMUNet(SMALL_IMAGENET)).state_dict()  # ImageNet weights for the dog base
    torch.save(wrong, tmp_path / "afhq_dog_4m.pt")
    (tmp_path / "notes.pt").write_text("these are not weights\n")
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"w": torch.zeros(1), "x": _Payload()}, f, protocol=2)
    sd = _small_unet().state_dict()
    sd["conv_in.weight"] = torch.zeros(16, 3, 5, 5)
    torch.save(sd, tmp_path / "bad_shape.bin")
    cases = [
        ("afhq-dog", tmp_path / "afhq_dog_4m.pt", ["does not fit afhq-dog", "first difference", "imagenet_512"]),
        ("test-add-ddpm", tmp_path / "bad_shape.bin", ["conv_in.weight", "(16, 3, 5, 5)", "(16, 3, 3, 3)"]),
        ("afhq-dog", tmp_path / "notes.pt", ["notes.pt", "not a PyTorch checkpoint"]),
        ("afhq-dog", tmp_path / "evil.pt", ["refusing to load evil.pt"]),
        ("afhq-dog", tmp_path / "missing.pt", ["missing.pt", "no such file", "afhq_dog_4m.pt", "ilvr_adm"]),
        ("test-add-ddpm", tmp_path / "missing.pt", ["no such file", "diffusion_pytorch_model.safetensors"]),
        ("demo-shapes", tmp_path / "afhq_dog_4m.pt", ["ships with the app"]),
        ("no-such-base", tmp_path / "afhq_dog_4m.pt", ["no-such-base"]),
    ]
    for base, path, words in cases:
        rc, lines = _add(capsys, base, path)
        assert rc == 2 and len(lines) == 1, (base, path.name, lines)
        for w in words:
            assert w in lines[0], (w, lines[0])
        assert _cache_files() == [], (base, path.name)


def test_another_filesystem_copies(small_adm, tmp_path, monkeypatch):
    import errno

    from dclip_desktop.zoo import add_file

    def no_link(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(add_file.os, "link", no_link)
    path = tmp_path / "dog.pt"
    torch.save(ADMUNet(SMALL_AFHQ).state_dict(), path)
    added = add_file.add_base_file("afhq-dog", path)
    assert added.path.read_bytes() == path.read_bytes() and not os.path.samefile(added.path, path)
    assert download.recorded_sha256(added.path) == added.sha256 == download.sha256_file(path)


def test_cancel_or_a_pinned_checksum_leaves_nothing(small_adm, tmp_path, monkeypatch):
    from dclip_desktop.core.cancel import Cancelled
    from dclip_desktop.errors import BadInput
    from dclip_desktop.zoo.add_file import add_base_file

    path = tmp_path / "dog.pt"
    torch.save(ADMUNet(SMALL_AFHQ).state_dict(), path)
    with pytest.raises(Cancelled):
        add_base_file("afhq-dog", path, cancel=lambda: True)
    assert _cache_files() == []
    monkeypatch.setattr(registry.get_base("afhq-dog"), "files", [registry.FileSpec("afhq_dog_4m.pt", "0" * 64)])
    with pytest.raises(BadInput, match="not afhq-dog's published afhq_dog_4m.pt"):
        add_base_file("afhq-dog", path)
    assert _cache_files() == []


def test_afhq_dog_names_its_file_and_how_to_install_it(capsys):
    assert [f.name for f in registry.get_base("afhq-dog").files] == ["afhq_dog_4m.pt"]
    for argv in (["models", "download", "afhq-dog"], ["--offline", "models", "download", "afhq-dog"]):
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1
        for w in ("afhq_dog_4m.pt", "github.com/jychoi118/ilvr_adm", "dclip models add afhq-dog PATH",
                  str(download.model_dir("afhq-dog"))):
            assert w in err[0], (w, err[0])


# --- the GUI: Models → Base models → Add file… ------------------------------------------------------------
def test_gui_add_file(qtbot, small_adm, tmp_path):
    from dclip_desktop.gui.app import create_window, ensure_app
    from tests.gui_helpers import close_boxes

    ensure_app()
    w = create_window()
    qtbot.addWidget(w)
    try:
        qtbot.waitUntil(lambda: not w.controller.busy, timeout=60_000)
        dialog = w.open_base_models()
        row = next(i for i in range(dialog.table.rowCount()) if dialog.table.item(i, 1).text() == "afhq-dog")
        dialog.table.selectRow(row)
        with qtbot.waitSignal(w.controller.failed, timeout=60_000, check_params_cb=lambda k, *_: k == "base") as b:
            dialog.add_file(str(tmp_path / "missing.pt"))
        message = b.args[1]
        assert "\n" not in message and "afhq_dog_4m.pt" in message and dialog.info.text() == message
        assert _cache_files() == []

        src = _randomize(ADMUNet(SMALL_AFHQ)).eval()
        torch.save(src.state_dict(), tmp_path / "dog.pt")
        with qtbot.waitSignal(w.controller.finished, timeout=60_000, check_params_cb=lambda k, *_: k == "base"):
            dialog.add_file(str(tmp_path / "dog.pt"))
        assert "added afhq_dog_4m.pt" in dialog.info.text()
        assert dialog.table.item(row, 3).text() == "installed"
    finally:
        close_boxes(w)
        w.controller.shutdown()

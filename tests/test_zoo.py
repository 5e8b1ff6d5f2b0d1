"""The model zoo: registry, device choice, and real loading code fed from a local hub (127.0.0.1)."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from dclip_desktop.zoo import device, download, loading, registry

from .test_download import hub  # noqa: F401 - the local hub fixture (a real HTTP server on 127.0.0.1)


# --- registry -----------------------------------------------------------------------------------
def test_registry_lists_demo_first_and_looks_up():
    bases = registry.list_bases()
    assert bases[0].id == "demo-shapes" == registry.default_base().id
    assert bases[0].is_demo and bases[0].arch == "ddpm" and bases[0].resolution == 32
    assert {"celebahq", "church", "bedroom"} <= set(registry.base_ids())
    church = registry.get_base("church")
    assert church.repo_id == "google/ddpm-ema-church-256" and church.resolution == 256
    assert [f.name for f in church.files] == ["config.json", "diffusion_pytorch_model.safetensors"]
    assert registry.get_base(church) is church
    assert registry.get_clip("ViT-B-16-quickgelu").repo_id == "timm/vit_base_patch16_clip_224.openai"
    assert registry.get_clip("ViT-B-16-quickgelu").files[0].name == "open_clip_model.safetensors"
    face = registry.get_face()
    assert face.filename == "20180402-114759-vggface2.pt"
    assert face.url.startswith("https://github.com/timesler/facenet-pytorch/releases/download/")
    assert registry.get_any("demo-tiny").is_demo


def test_unknown_base_error_lists_valid_ids():
    with pytest.raises(registry.UnknownBaseError) as info:
        registry.get_base("ffhq")
    msg = str(info.value)
    assert "ffhq" in msg and "demo-shapes" in msg and "celebahq" in msg and "church" in msg
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    with pytest.raises(registry.UnknownBaseError, match="ViT-B-16-quickgelu"):
        registry.get_clip("RN50")


def test_presets_follow_the_t0_guidance():
    for spec in registry.list_bases():
        assert spec.presets, spec.id
        for p in spec.presets:
            assert p.domain == spec.domain and 0 < p.t0 < 1000 and p.source and p.target
    faces = {p.target: p.t0 for p in registry.get_base("celebahq").presets}
    assert 201 <= faces["tanned face"] <= 401 and faces["Neanderthal"] >= 500 and faces["sketch"] >= 500
    church = {p.target: p.t0 for p in registry.get_base("church").presets}
    assert 201 <= church["golden church"] <= 401 and 201 <= church["red brick wall church"] <= 401


def test_register_rejects_unknown_arch_and_duplicates():
    with pytest.raises(ValueError, match="arch"):
        registry.register_base(registry.BaseSpec("x", "x", "x", "vae", 8))
    with pytest.raises(ValueError, match="already"):
        registry.register_base(registry.BaseSpec("church", "x", "x", "ddpm", 8))


def test_ddpm256_config_has_113_67_m_params():
    model = loading.build_base_from_config("celebahq", seed=0)
    n = sum(p.numel() for p in model.parameters())
    assert n == registry.DDPM256_PARAMS and round(n / 1e6, 2) == 113.67
    assert model.config.sample_size == 256 and not model.config.flip_sin_to_cos


# --- device -------------------------------------------------------------------------------------
def test_pick_device_and_precision():
    assert device.pick_device("cpu") == torch.device("cpu")
    auto = device.pick_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else auto.type)
    if not torch.cuda.is_available():
        with pytest.raises(device.DeviceUnavailableError, match="CUDA is not available"):
            device.pick_device("cuda:0")
    with pytest.raises(device.DeviceUnavailableError, match="unknown device"):
        device.pick_device("tpu")
    cpu = torch.device("cpu")
    assert device.pick_precision("auto", cpu) is None and device.pick_precision("fp32", cpu) is None
    assert device.pick_precision("bf16", cpu) is torch.bfloat16
    with pytest.raises(ValueError, match="fp16"):
        device.pick_precision("fp16", cpu)
    with pytest.raises(ValueError, match="unknown precision"):
        device.pick_precision("int8", cpu)
    assert "CPU" in device.describe(cpu)


# --- loading: the demo --------------------------------------------------------------------------
def test_demo_base_loads_and_has_a_stable_sha():
    model = loading.load_base("demo-shapes", "cpu")
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    path = loading.base_weights_path("demo-shapes")
    assert loading.base_sha256("demo-shapes") == hashlib.sha256(path.read_bytes()).hexdigest()
    rebuilt = loading.build_base_from_config("demo-shapes")
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    clip, tok = loading.load_clip("demo-tiny", "cpu")
    assert tok(["red circle"]).shape[0] == 1 and not any(p.requires_grad for p in clip.parameters())


# --- loading: real code paths against the local hub ---------------------------------------------
TINY = dict(
    sample_size=8,
    block_out_channels=(8, 16),
    layers_per_block=1,
    norm_num_groups=4,
    down_block_types=("DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=None,
)


def _serve_dir(hub, repo_id, folder):  # noqa: F811
    for f in folder.iterdir():
        hub.files[f"/{repo_id}/resolve/main/{f.name}"] = f.read_bytes()


@pytest.fixture
def tiny_hub_base(hub, tmp_path):  # noqa: F811
    """A tiny DDPM repo on the local hub, in the hub's old attention key names (query/key/value/proj_attn)."""
    from diffusers.models.unets.unet_2d import UNet2DModel
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    ref = UNet2DModel(**TINY).eval()
    repo = tmp_path / "repo"
    ref.save_pretrained(repo)
    weights = repo / "diffusion_pytorch_model.safetensors"
    old = {
        k.replace("to_q", "query")
        .replace("to_k", "key")
        .replace("to_v", "value")
        .replace("to_out.0", "proj_attn"): v
        for k, v in load_file(weights).items()
    }
    assert any("proj_attn" in k for k in old)
    save_file(old, weights)
    _serve_dir(hub, "acme/tiny-ddpm", repo)
    spec = registry.register_base(
        registry.BaseSpec(
            "test-tiny",
            "Tiny",
            "test",
            "ddpm",
            8,
            repo_id="acme/tiny-ddpm",
            files=list(registry.DDPM_FILES),
            config=TINY,
        ),
        replace=True,
    )
    yield spec, ref, hashlib.sha256(weights.read_bytes()).hexdigest()
    registry._BASES.pop("test-tiny", None)


def test_load_base_downloads_verifies_and_loads(tiny_hub_base, monkeypatch):
    spec, ref, sha = tiny_hub_base
    model = loading.load_base("test-tiny", "cpu")
    x, t = torch.randn(1, 3, 8, 8), torch.tensor([500])
    with torch.no_grad():
        # same weights; the float reduction order may differ between two model instances
        assert torch.allclose(model(x, t).sample, ref(x, t).sample, atol=1e-5)
    assert loading.base_sha256("test-tiny") == sha
    assert json.loads((download.model_dir(spec) / "config.json").read_text())["block_out_channels"] == [8, 16]
    # offline afterwards: loads from the cache
    monkeypatch.setenv("DCLIP_OFFLINE", "1")
    loading.load_base("test-tiny", "cpu")
    # a damaged cache is refused with the repair command
    path = download.model_dir(spec) / "diffusion_pytorch_model.safetensors"
    path.write_bytes(path.read_bytes()[:-1] + b"\0")
    with pytest.raises(download.ChecksumError, match="dclip models download test-tiny"):
        loading.load_base("test-tiny", "cpu")


def test_loading_a_base_prints_no_accelerate_warning(tiny_hub_base, capfd):
    """`accelerate` is not a dependency: diffusers must not tell the user to install it on every load.
    diffusers logs to its own non-propagating logger (whose stream may predate capfd): listen there too."""
    import logging
    import warnings

    records: list[logging.LogRecord] = []
    listener = logging.Handler()
    listener.emit = records.append
    logger = logging.getLogger("diffusers")
    logger.addHandler(listener)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loading.load_base("demo-shapes", "cpu")
            loading.load_base("test-tiny", "cpu")
    finally:
        logger.removeHandler(listener)
    out = capfd.readouterr()
    said = [r.getMessage() for r in records] + [str(w.message) for w in caught] + [out.err, out.out]
    assert not [m for m in said if "accelerate" in m]


def test_missing_weights_offline_name_file_and_command():
    with pytest.raises(download.MissingWeightsError, match="dclip models download celebahq") as info:
        loading.load_base("celebahq", "cpu", offline=True)
    assert "config.json" in str(info.value) or "diffusion_pytorch_model" in str(info.value)
    with pytest.raises(download.MissingWeightsError, match="dclip models download celebahq"):
        loading.base_sha256("celebahq")
    with pytest.raises(download.MissingWeightsError, match="open_clip_model.safetensors.*ViT-B-16-quickgelu"):
        loading.load_clip("ViT-B-16-quickgelu", "cpu", offline=True)
    with pytest.raises(
        download.MissingWeightsError, match="vggface2.*dclip models download facenet-vggface2"
    ):
        loading.load_face("cpu", offline=True)


def test_load_clip_from_hub_file(hub, tmp_path):  # noqa: F811
    """The real open_clip path (create_model with a local pretrained file), on the demo CLIP config."""
    from safetensors.torch import save_file

    from dclip_desktop.demo.tiny_clip import build_demo_clip

    ref, tok = build_demo_clip("cpu")
    save_file(
        {k: v.contiguous() for k, v in ref.state_dict().items()}, tmp_path / "open_clip_model.safetensors"
    )
    hub.files["/acme/tiny-clip/resolve/main/open_clip_model.safetensors"] = (
        tmp_path / "open_clip_model.safetensors"
    ).read_bytes()
    registry.register_clip(
        registry.ClipSpec(
            "dclip-demo-tiny",
            "tiny",
            repo_id="acme/tiny-clip",
            image_size=32,
            files=[
                registry.FileSpec("open_clip_model.safetensors", alternative="open_clip_pytorch_model.bin")
            ],
        ),
        replace=True,
    )
    try:
        model, tokenizer = loading.load_clip("dclip-demo-tiny", "cpu")
    finally:
        registry._CLIPS.pop("dclip-demo-tiny", None)
    assert not any(p.requires_grad for p in model.parameters())
    text = tokenizer(["a red circle"])
    with torch.no_grad():
        assert torch.equal(model.encode_text(text), ref.eval().encode_text(text))


def test_load_face_from_cache_file(hub, tmp_path):  # noqa: F811
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    ref = InceptionResnetV1(pretrained=None, classify=False, num_classes=3).eval()
    state = {k: v.half() for k, v in ref.state_dict().items()}  # upstream also holds logits.*
    torch.save(state, tmp_path / "face.pt")
    hub.files["/releases/face.pt"] = (tmp_path / "face.pt").read_bytes()
    registry.register_face(
        registry.FaceSpec("test-face", "t", "face.pt", hub.url + "/releases/face.pt"), replace=True
    )
    try:
        net, mtcnn = loading.load_face("cpu", face_id="test-face")
    finally:
        registry._FACES.pop("test-face", None)
    assert (download.cache_root() / "facenet" / "face.pt").is_file()
    assert not hasattr(net, "logits") or net.logits is None or not net.classify
    x = torch.randn(1, 3, 160, 160)
    ref.load_state_dict({k: v.float() for k, v in state.items()})
    with torch.no_grad():
        assert torch.allclose(net(x), ref(x), atol=1e-6)
    assert type(mtcnn).__name__ == "MTCNN"

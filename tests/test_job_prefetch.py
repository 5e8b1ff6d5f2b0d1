"""A job loads every model it needs before its first UNet call, and the downloads that triggers show
their bytes in the CLI (issue 19, "also found" 2 and 3)."""

from __future__ import annotations

import pytest
import torch
from tqdm import tqdm

from dclip_desktop.core.finetune import FinetuneConfig
from dclip_desktop.errors import MissingWeights
from dclip_desktop.jobs.finetune_job import FinetuneRequest, run_finetune
from dclip_desktop.jobs.session import Session
from dclip_desktop.jobs.settings import Settings
from dclip_desktop.zoo import registry
from tests.conftest import tiny_unet
from tests.test_download import _fake_repo, hub  # noqa: F401 - `hub` is a fixture

BASE = "test-prefetch"


def _counted_session(monkeypatch, clip_name: str = "demo-tiny") -> tuple[Session, list]:
    """An offline session on the demo base whose CLIP is `clip_name`, counting the base's forwards."""
    session = Session(Settings(device="cpu", precision="fp32", offline=True))
    monkeypatch.setattr(session, "clip_name", lambda base_id: clip_name)
    forwards = []
    session.base("demo-shapes").register_forward_pre_hook(lambda module, args: forwards.append(1))
    return session, forwards


@pytest.mark.parametrize("missing", ["clip", "face"])
def test_finetune_stops_on_a_missing_model_before_any_unet_call(monkeypatch, missing):
    # offline, with an empty model cache: the real CLIP (or the face net, for λ_face > 0) is not installed
    session, forwards = _counted_session(monkeypatch, "ViT-B-16-quickgelu" if missing == "clip" else "demo-tiny")
    cfg = FinetuneConfig(t0=301, s_for=4, s_gen=3, lora_rank=2, lambda_face=0.3 if missing == "face" else 0.0)
    req = FinetuneRequest("demo-shapes", "red", "blue", "blue", cfg, sample_count=2, oversample=1)
    events = []
    with pytest.raises(MissingWeights, match="ViT-B-16" if missing == "clip" else "vggface2"):
        run_finetune(session, req, progress=lambda *e: events.append(e[:3]))
    assert forwards == [] and events == [] and session.inversion_calls == 0
    assert session.library.find("blue") is None


def test_the_models_are_loaded_before_sampling_starts(monkeypatch):
    session, forwards = _counted_session(monkeypatch)
    loaded_at = []
    clip = session.clip

    def clip_loader(name, progress=None):
        loaded_at.append(len(forwards))
        return clip(name, progress)

    monkeypatch.setattr(session, "clip", clip_loader)
    cfg = FinetuneConfig(t0=301, s_for=4, s_gen=3, lora_rank=2, epochs=1)
    run_finetune(session, FinetuneRequest("demo-shapes", "red", "blue", "blue", cfg, sample_count=1, oversample=1))
    assert loaded_at[0] == 0 and forwards  # CLIP first, then the UNet work


@pytest.fixture
def served_base(hub, tmp_path):  # noqa: F811 - the imported fixture
    """A tiny real UNet2DModel served in diffusers' layout by the loopback hub, registered as a base."""
    folder = tmp_path / "unet"
    tiny_unet(size=16).save_pretrained(folder)
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    _fake_repo(hub, "acme/prefetch", files)
    spec = registry.BaseSpec(
        id=BASE, title="served", domain="test", arch="ddpm", resolution=16, repo_id="acme/prefetch",
        files=[registry.FileSpec("config.json", weights=False),
               registry.FileSpec("diffusion_pytorch_model.safetensors")],
    )
    registry.register_base(spec, replace=True)
    yield files
    registry._BASES.pop(BASE, None)


def test_a_job_reports_the_bytes_of_what_it_downloads(served_base):
    from dclip_desktop.jobs.edit_job import reconstruct_tensor

    session = Session(Settings(device="cpu", precision="fp32"))
    events: dict[str, list] = {}
    closed = []

    class Recorder:
        def __init__(self, model_id):
            self.model_id = model_id
            events[model_id] = []

        def __call__(self, done, total):
            events[self.model_id].append((done, total))

        def close(self):
            closed.append(self.model_id)

    session.downloads = Recorder
    reconstruct_tensor(session, BASE, torch.zeros(1, 3, 16, 16), t0=100, s_for=2, s_gen=2)
    size = len(served_base["diffusion_pytorch_model.safetensors"])
    assert (size, size) in events[BASE] and closed == [BASE]
    dones = [d for d, t in events[BASE] if t == size]
    assert dones == sorted(dones)


def test_the_cli_shows_a_byte_bar_for_a_download_a_job_starts(served_base, tmp_path, capsys):
    from dclip_desktop.cli.main import main
    from dclip_desktop.jobs.images import save_png

    format_sizeof = tqdm.format_sizeof

    src = tmp_path / "in.png"
    save_png(torch.zeros(3, 16, 16), src)
    assert main(["reconstruct", str(src), "-o", str(tmp_path / "out.png"), "--base", BASE, "--t0", "100",
                 "--s-for", "2", "--s-gen", "2"]) == 0
    err = capsys.readouterr().err
    shown = format_sizeof(len(served_base["diffusion_pytorch_model.safetensors"]), divisor=1024)
    assert f"downloading {BASE}" in err and f"{shown}/{shown}" in err  # the weights file, in bytes, to the end


def test_a_failed_load_closes_its_download_bar():
    session = Session(Settings(device="cpu", precision="fp32", offline=True))
    opened, closed = [], []

    class Bar:
        def __init__(self, model_id):
            opened.append(model_id)

        def __call__(self, done, total):
            pass

        def close(self):
            closed.append(1)

    session.downloads = Bar
    with pytest.raises(MissingWeights):
        session.prepare("demo-shapes", clip=False, face=True)
    assert opened == ["demo-shapes", "facenet-vggface2"] and len(closed) == 2  # the face net failed

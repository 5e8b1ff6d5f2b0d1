"""Trust on first use made explicit: pinned vs first-use downloads, what the sidecar records, what
`dclip models verify` says, the face net's mirror override and hand-install hint, and the lock files."""

from __future__ import annotations

import logging
import os

import pytest

from dclip_desktop.cli.main import main
from dclip_desktop.zoo import download, registry
from tests import test_download
from tests.test_download import _fake_repo, payload, sha

hub, fake_base = test_download.hub, test_download.fake_base  # the loopback fake hub's fixtures

FACE = "facenet-vggface2"
FACE_FILE = "20180402-114759-vggface2.pt"


@pytest.fixture
def pinned_base(hub):
    """A hub base whose weights have a published sha256 (and whose config has none)."""
    weights = payload(40_000, seed=7)
    spec = registry.BaseSpec(
        id="test-pinned", title="pinned", domain="test", arch="ddpm", resolution=8, repo_id="acme/pinned",
        files=[registry.FileSpec("config.json", weights=False),
               registry.FileSpec("diffusion_pytorch_model.safetensors", alternative="diffusion_pytorch_model.bin",
                                 alternative_sha256=sha(weights))],
    )
    registry.register_base(spec, replace=True)
    _fake_repo(hub, "acme/pinned", {"config.json": b"{}", "diffusion_pytorch_model.bin": weights})
    yield spec
    registry._BASES.pop(spec.id, None)


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("dclip")]


def test_unpinned_download_warns_once_and_records_first_use(hub, tmp_path, caplog):
    data = payload(20_000)
    hub.files["/f.pt"] = data
    with caplog.at_level(logging.WARNING, logger="dclip_desktop"):
        out = download.fetch(hub.url + "/f.pt", tmp_path / "f.pt")
        download.fetch(hub.url + "/f.pt", out)  # already there: nothing fetched, nothing said
    said = _warnings(caplog)
    assert len(said) == 1 and "f.pt" in said[0] and "first use" in said[0] and sha(data)[:12] in said[0]
    side = download.sidecar_path(out).read_text().splitlines()
    assert side[0] == f"{sha(data)}  f.pt"  # still what sha256sum writes and old readers read
    assert download.recorded_trust(out) == download.FIRST_USE and hub.url + "/f.pt" in side[1]
    ok, reason = download.verify(out)
    assert ok and reason.startswith("f.pt: first-use")


def test_pinned_download_is_silent_and_verifies_as_pinned(hub, tmp_path, caplog):
    data = payload(20_000, seed=1)
    hub.files["/p.pt"] = data
    with caplog.at_level(logging.WARNING, logger="dclip_desktop"):
        out = download.fetch(hub.url + "/p.pt", tmp_path / "p.pt", sha256=sha(data))
    assert _warnings(caplog) == []
    assert download.recorded_trust(out) == download.PINNED
    assert download.verify(out, sha(data)) == (True, f"p.pt: pinned (sha256 {sha(data)[:12]}… is the published one)")
    ok, reason = download.verify(out, "0" * 64)
    assert not ok and "MISMATCH" in reason and "pinned" in reason


def test_old_sidecars_still_read(tmp_path):
    f = tmp_path / "old.bin"
    f.write_bytes(b"abc")
    download.sidecar_path(f).write_text(f"{sha(b'abc')}  old.bin\n")  # as written before trust was recorded
    assert download.recorded_sha256(f) == sha(b"abc") and download.recorded_trust(f) is None
    assert download.verify(f)[1].startswith("old.bin: first-use")
    f.write_bytes(b"abd")
    ok, reason = download.verify(f)
    assert not ok and "MISMATCH" in reason and "first use" in reason


def test_models_verify_reports_pinned_first_use_and_mismatch(pinned_base, capsys, monkeypatch):
    monkeypatch.delenv("DCLIP_OFFLINE", raising=False)
    download.download("test-pinned")
    assert main(["models", "verify", "test-pinned"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("test-pinned: config.json: first-use")
    assert out[1].startswith("test-pinned: diffusion_pytorch_model.bin: pinned")
    assert not any(" ok " in line for line in out)  # "ok (sha256 …)" no longer hides first-use files
    weights = download.model_dir("test-pinned") / "diffusion_pytorch_model.bin"
    weights.write_bytes(b"tampered")
    assert main(["models", "verify", "test-pinned"]) == 1
    assert "diffusion_pytorch_model.bin: MISMATCH" in capsys.readouterr().out


def test_pinned_alternative_is_checked_at_download(hub, pinned_base, monkeypatch):
    monkeypatch.delenv("DCLIP_OFFLINE", raising=False)
    hub.files["/acme/pinned/resolve/main/diffusion_pytorch_model.bin"] = b"not the published file"
    with pytest.raises(download.ChecksumError):
        download.download("test-pinned")
    assert not (download.model_dir("test-pinned") / "diffusion_pytorch_model.bin").exists()


def test_real_bases_pin_nothing_unverified():
    """No checksum is pinned that could not be checked against a stated public source: a wrong pin would
    refuse every user's genuine download. Hub files are checked against the hub's own LFS sha256."""
    for base in ("celebahq", "church", "bedroom"):
        weights = registry.get_base(base).files[1]
        assert weights.alternative == "diffusion_pytorch_model.bin"
        assert weights.pinned_sha256("diffusion_pytorch_model.bin") is None
    assert registry.get_face(FACE).sha256 is None  # no published checksum: trusted on first use


def test_no_lock_files_left_behind(hub, fake_base, monkeypatch):
    monkeypatch.delenv("DCLIP_OFFLINE", raising=False)
    _fake_repo(hub, "acme/fake-ddpm", {"config.json": b"{}", "diffusion_pytorch_model.bin": payload(1000)})
    folder = download.download("test-fake")  # the .safetensors is tried (404) and never downloaded
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json", "config.json.sha256", "diffusion_pytorch_model.bin", "diffusion_pytorch_model.bin.sha256"]
    with pytest.raises(download.DownloadError):  # a failed fetch leaves its lock behind neither
        download.fetch(hub.url + "/nope", folder / "nope.bin", retries=0)
    assert not list(folder.glob("*.lock"))


def test_face_net_mirror_override(hub, monkeypatch):
    monkeypatch.delenv("DCLIP_OFFLINE", raising=False)
    hub.files["/mirror/" + FACE_FILE] = b"face weights"
    monkeypatch.setenv("DCLIP_FACENET_URL", hub.url + "/mirror/")
    folder = download.ensure(FACE)
    assert (folder / FACE_FILE).read_bytes() == b"face weights"
    assert hub.requests[-1][0] == "/mirror/" + FACE_FILE
    (folder / FACE_FILE).unlink()
    hub.files["/other.pt"] = b"other"
    monkeypatch.setenv("DCLIP_FACENET_URL", hub.url + "/other.pt")  # a file URL is used as it is
    assert (download.ensure(FACE) / FACE_FILE).read_bytes() == b"other"


def test_face_net_errors_say_it_can_be_placed_by_hand(hub, monkeypatch):
    folder = download.model_dir(FACE)
    monkeypatch.setenv("DCLIP_OFFLINE", "1")
    with pytest.raises(download.MissingWeightsError) as info:
        download.ensure(FACE)
    msg = str(info.value)
    assert f"put {FACE_FILE} into {folder} by hand" in msg and "DCLIP_FACENET_URL" in msg
    assert "dclip models download facenet-vggface2" in msg
    monkeypatch.delenv("DCLIP_OFFLINE")
    monkeypatch.setenv("DCLIP_FACENET_URL", hub.url + "/missing/")  # the mirror does not have it
    with pytest.raises(download.DownloadError) as info:
        download.ensure(FACE, retries=0)
    assert "404" in str(info.value) and f"put {FACE_FILE} into {folder} by hand" in str(info.value)


def test_config_is_not_called_weights(fake_base):
    with pytest.raises(download.MissingWeightsError) as info:
        download.ensure("test-fake", offline=True)
    assert "missing file 'config.json' of 'test-fake'" in str(info.value)
    assert "weights file 'config.json'" not in str(info.value)


def test_offline_download_says_to_switch_offline_off(capsys, monkeypatch):
    monkeypatch.delenv("DCLIP_OFFLINE", raising=False)
    assert main(["--offline", "models", "download", "church"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "drop --offline" in err and "run it again" in err
    assert "Fetch it with" not in err
    monkeypatch.setenv("DCLIP_OFFLINE", "1")
    assert main(["models", "download", "church"]) == 2
    err = capsys.readouterr().err
    assert "unset DCLIP_OFFLINE" in err and "drop --offline" not in err
    assert not os.path.exists(download.model_dir("church"))

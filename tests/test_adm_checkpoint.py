"""ADM checkpoint files: unwrapped and loaded strictly into the config they fit, refused otherwise.

Small configs and helpers come from test_adm (the same family as the released checkpoints)."""

from __future__ import annotations

import pickle

import pytest
import torch

from dclip_desktop.core.adm import AFHQ_DOG_256, IMAGENET_512, ADMUNet
from dclip_desktop.core.adm_checkpoint import load_adm_checkpoint, match_config
from dclip_desktop.core.checkpoint import CheckpointError, unwrap

from .test_adm import SMALL, _inputs, _one_thread, _randomize  # noqa: F401 (_one_thread: autouse fixture)


def test_full_size_synthetic_state_dicts_load_strictly():
    """State dicts with the released files' keys and shapes (meta tensors) load strictly, are recognised."""
    for cfg in (AFHQ_DOG_256, IMAGENET_512):
        with torch.device("meta"):
            src, dst = ADMUNet(cfg), ADMUNet(cfg)
        sd = {f"module.{k}": v for k, v in src.state_dict().items()}
        flat = unwrap({"state_dict": sd})
        dst.load_state_dict(flat, strict=True, assign=True)
        assert match_config(flat) == cfg.name
    assert match_config({"x": torch.zeros(1)}) is None


def test_load_wrapped_prefixed_checkpoint(tmp_path):
    cfg = SMALL["conv_newattn_cond"]
    src = _randomize(ADMUNet(cfg))
    sd = {f"module.{k}": v.clone() for k, v in src.state_dict().items()}
    path = tmp_path / "finetuned_dog.pt"
    torch.save({"state_dict": sd, "step": 10}, path)

    model = load_adm_checkpoint(path, cfg)
    assert not model.training
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    x, t, y = _inputs(cfg, torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, y), src.eval()(x, t, y))

    # EMA is preferred over raw weights; plain and DataParallel-style dicts unwrap the same way.
    assert unwrap({"model": {"a": torch.ones(1)}, "ema": {"module.a": torch.zeros(1)}})["a"] == 0
    assert list(unwrap({"module.x.y": torch.ones(1)})) == ["x.y"]


def test_mismatch_lists_keys(tmp_path):
    cfg = SMALL["updown_legacy_uncond"]
    sd = ADMUNet(cfg).state_dict()
    sd.pop("middle_block.1.qkv.weight")
    sd["bogus.weight"] = torch.zeros(1)
    sd["out.2.weight"] = torch.zeros(3, 32, 3, 3)
    path = tmp_path / "bad.pt"
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as e:
        load_adm_checkpoint(path, cfg)
    msg = str(e.value)
    assert "middle_block.1.qkv.weight" in msg and "bogus.weight" in msg and "out.2.weight" in msg
    assert "missing" in msg and "unexpected" in msg


def test_missing_and_corrupt_files(tmp_path):
    cfg = SMALL["updown_legacy_uncond"]
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_adm_checkpoint(tmp_path / "nope.pt", cfg)
    good = tmp_path / "good.pt"
    torch.save(ADMUNet(cfg).state_dict(), good)
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="trunc.pt"):
        load_adm_checkpoint(trunc, cfg)


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("fmt", ["torch_zip", "raw_pickle"])
def test_malicious_pickle_not_executed(tmp_path, fmt):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    obj = {"state_dict": {"x": torch.zeros(1)}, "payload": _Payload(str(marker))}
    if fmt == "torch_zip":
        torch.save(obj, path)
    else:
        path.write_bytes(pickle.dumps(obj, protocol=2))
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refusing"):
        load_adm_checkpoint(path, SMALL["updown_legacy_uncond"])
    assert not marker.exists()
    # The payload is live: an unsafe load would have run it.
    if fmt == "torch_zip":
        torch.load(path, weights_only=False)
    else:
        pickle.loads(path.read_bytes())
    assert marker.exists()

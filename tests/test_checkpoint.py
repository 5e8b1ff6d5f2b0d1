"""core.checkpoint: real files written by torch.save / safetensors, every wrapper and prefix form unwrapped,
and every file that is not a safe checkpoint refused with one error type and a one-line message."""

from __future__ import annotations

import builtins
import pickle
from collections import OrderedDict

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from dclip_desktop.core import checkpoint
from dclip_desktop.core.checkpoint import CheckpointError, CheckpointNotFound, read_state_dict, unwrap
from dclip_desktop.errors import BadInput, Kind


def small_state(seed: int = 0) -> OrderedDict:
    """A real module's state dict (an OrderedDict, with a buffer and an int64 tensor), as torch.save gets it."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2)).state_dict()


def save(tmp_path, obj, name="ckpt.pth", **kwargs):
    path = tmp_path / name
    torch.save(obj, path, **kwargs)
    return path


def assert_same(loaded: dict, expected: dict) -> None:
    assert sorted(loaded) == sorted(expected)
    assert all(torch.equal(loaded[k], v) for k, v in expected.items())


def refused(path, *words: str) -> CheckpointError:
    with pytest.raises(CheckpointError) as info:
        read_state_dict(path)
    exc = info.value
    message = str(exc)
    assert isinstance(exc, BadInput) and exc.kind is Kind.BAD_INPUT
    assert "\n" not in message and path.name in message, message
    assert all(w in message for w in words), message
    return exc


# --- unwrapping ---------------------------------------------------------------------------------------------
def test_plain_state_dict_and_legacy_format(tmp_path):
    sd = small_state()
    assert_same(read_state_dict(save(tmp_path, sd)), sd)
    assert_same(read_state_dict(save(tmp_path, sd, "legacy.pt", _use_new_zipfile_serialization=False)), sd)
    assert_same(read_state_dict(save(tmp_path, dict(sd), "plain-dict.ckpt")), sd)


@pytest.mark.parametrize("key", checkpoint.WRAPPER_KEYS)
def test_each_wrapper_key(tmp_path, key):
    sd = small_state()
    training = {key: sd, "step": 1200, "epoch": 3, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3}]}}
    assert_same(read_state_dict(save(tmp_path, training)), sd)
    assert_same(read_state_dict(save(tmp_path, {key: sd}, "bare.pth")), sd)


def test_nested_wrappers_and_prefixes(tmp_path):
    sd = small_state()
    nested = {"state_dict": {"model": {f"module.{k}": v for k, v in sd.items()}}, "step": 5}
    assert_same(read_state_dict(save(tmp_path, nested)), sd)
    for prefix in ("module.", "module.module.", "_orig_mod.", "module._orig_mod.", "_orig_mod.module."):
        path = save(tmp_path, {f"{prefix}{k}": v for k, v in sd.items()}, "prefixed.pth")
        assert_same(read_state_dict(path), sd)
    # a prefix is only stripped at the start of a key
    assert list(unwrap({"net.module.weight": torch.ones(1)})) == ["net.module.weight"]


def test_ema_weights_are_preferred(tmp_path):
    raw, ema = small_state(0), small_state(1)
    for wrapped in ({"model": raw, "ema": ema}, {"state_dict": raw, "ema": ema, "step": 9},
                    {"ema": {f"module.{k}": v for k, v in ema.items()}, "model": raw}):
        assert_same(read_state_dict(save(tmp_path, wrapped)), ema)


def test_tensors_beside_scalars_are_the_state_dict(tmp_path):
    sd = small_state()
    assert_same(read_state_dict(save(tmp_path, {**sd, "step": 10, "config": {"lr": 3e-4}, 7: "x"})), sd)


def test_safetensors_whatever_its_suffix(tmp_path):
    sd = {k: v.contiguous() for k, v in small_state().items()}
    for name in ("w.safetensors", "w.pth"):
        path = tmp_path / name
        save_file({f"module.{k}": v for k, v in sd.items()}, str(path), metadata={"format": "pt"})
        assert_same(read_state_dict(path), sd)
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes((tmp_path / "w.safetensors").read_bytes()[:-40])
    refused(truncated, "safetensors", "truncated or corrupt")


# --- refusals -----------------------------------------------------------------------------------------------
class Payload:
    """Unpickling this calls open(marker, 'w'): the stand-in for running code."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


class Harmless:
    """An arbitrary class: no code of its own, but weights-only loading builds no foreign objects."""


@pytest.mark.parametrize("fmt", ["torch_zip", "torch_legacy", "raw_pickle"])
def test_code_in_a_pickle_is_refused_not_run(tmp_path, fmt):
    marker = tmp_path / "pwned"
    obj = {"state_dict": small_state(), "payload": Payload(marker)}
    path = tmp_path / "evil.pth"
    if fmt == "raw_pickle":
        path.write_bytes(pickle.dumps(obj, protocol=2))
    else:
        torch.save(obj, path, _use_new_zipfile_serialization=fmt == "torch_zip")
    exc = refused(path, "refusing to load evil.pth", "run code", "refuses")
    assert "weights_only=False" not in str(exc)  # torch's own advice is exactly what must not be done
    assert not marker.exists()
    # the payload is live: an unsafe load would have run it
    torch.load(path, weights_only=False) if fmt != "raw_pickle" else pickle.loads(path.read_bytes())
    assert marker.exists()


def test_arbitrary_objects_are_refused(tmp_path):
    refused(save(tmp_path, {"conv.weight": torch.zeros(1), "meta": Harmless()}, "obj.pth"), "refusing")


def test_truncated_files(tmp_path):
    good = save(tmp_path, small_state()).read_bytes()
    for name, blob in (("cut.pth", good[: len(good) // 2]), ("cut-start.pth", good[:300])):
        path = tmp_path / name
        path.write_bytes(blob)
        exc = refused(path, "not a PyTorch checkpoint dclip can read", "truncated or corrupt")
        assert "refus" not in str(exc)
    legacy = save(tmp_path, small_state(), "legacy.pth", _use_new_zipfile_serialization=False).read_bytes()
    (tmp_path / "cut-legacy.pth").write_bytes(legacy[:200])
    refused(tmp_path / "cut-legacy.pth")  # cut inside a global's name, it may read as a foreign global


def test_files_that_are_no_checkpoint(tmp_path):
    cases = {
        "empty.pth": (b"", ["is empty (0 bytes)"]),
        "notes.pth": (b"these are not the weights you are looking for\n" * 20, ["not a PyTorch checkpoint"]),
        "image.pth": (b"\x89PNG\r\n\x1a\n" + bytes(200), ["not a PyTorch checkpoint"]),
        "pickle-like.pth": (b"\x80\x02" + bytes(range(256)) * 4, ["not a PyTorch checkpoint dclip can read"]),
        "zip-like.pth": (b"PK\x03\x04" + bytes(500), ["not a PyTorch checkpoint dclip can read"]),
    }
    for name, (blob, words) in cases.items():
        path = tmp_path / name
        path.write_bytes(blob)
        exc = refused(path, *words)
        assert "refus" not in str(exc) and "run code" not in str(exc), name


def test_checkpoints_that_hold_no_state_dict(tmp_path):
    refused(save(tmp_path, {}, "empty-dict.pth"), "holds no weights")
    refused(save(tmp_path, {"state_dict": {}}, "empty-wrapped.pth"), "holds no weights")
    refused(save(tmp_path, [torch.zeros(1)], "list.pth"), "does not hold a model state dict", "list")
    refused(save(tmp_path, torch.zeros(3), "tensor.pth"), "does not hold a model state dict", "Tensor")
    refused(save(tmp_path, {"step": 3, "lr": 0.1}, "scalars.pth"), "holds no tensors", "its keys: step, lr")
    deep: object = small_state()
    for _ in range(6):
        deep = {"model": deep}
    refused(save(tmp_path, deep, "deep.pth"), "nested too deeply")


def test_missing_file_is_a_checkpoint_error_and_a_file_not_found_error(tmp_path):
    with pytest.raises(CheckpointNotFound, match="missing.pth") as info:
        read_state_dict(tmp_path / "missing.pth")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, CheckpointError)
    with pytest.raises(CheckpointNotFound):
        read_state_dict(tmp_path)  # a folder is no checkpoint file either


def test_unwrap_of_objects_already_loaded():
    sd = small_state()
    assert_same(unwrap({"ema": sd}), sd)
    with pytest.raises(CheckpointError, match="weights.pt does not hold a model state dict"):
        unwrap([sd], "weights.pt")

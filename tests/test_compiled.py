import shutil
import sysconfig
from pathlib import Path

import torch
from torch import nn

from dclip_desktop.core.compiled import CompiledUNet
from dclip_desktop.jobs.session import Session
from dclip_desktop.jobs.settings import Settings


class _TimeConv(nn.Module):
    """The UNet call signature, model(x, t), at toy size."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x, t):
        return torch.tanh(self.conv(x)) * (t.float()[:, None, None, None] / 1000)


def inductor_toolchain() -> bool:
    """Inductor's CPU kernels need a C++ compiler and Python's headers (they include Python.h)."""
    return bool(shutil.which("c++") or shutil.which("g++")) and Path(sysconfig.get_path("include"), "Python.h").is_file()


def test_compiled_unet_matches_eager():
    """Where this machine has inductor's toolchain the model really compiles; the numbers are eager's."""
    torch.manual_seed(0)
    model = _TimeConv().eval().requires_grad_(False)
    x, t = torch.randn(2, 3, 8, 8), torch.full((2,), 500)
    fast = CompiledUNet(model)
    out = fast(x, t)
    torch.testing.assert_close(out, model(x, t), rtol=1e-4, atol=1e-5)
    if inductor_toolchain():
        assert fast.failed is None, fast.failed


def test_a_failed_compile_falls_back_to_eager_for_good():
    """A compiler that breaks (no Triton, no C++ compiler, an inductor bug) costs speed, never the job."""
    torch.manual_seed(0)
    model = _TimeConv().eval().requires_grad_(False)
    x, t = torch.randn(2, 3, 8, 8), torch.full((2,), 500)
    fast = CompiledUNet(model)
    calls = []

    def broken(*args):
        calls.append(args)
        raise RuntimeError("inductor: no working C++ compiler\nsecond line")

    fast.compiled = broken  # what torch.compile's wrapper does on a machine without a toolchain
    torch.testing.assert_close(fast(x, t), model(x, t))
    assert fast.failed == "RuntimeError: inductor: no working C++ compiler"
    torch.testing.assert_close(fast(x, t), model(x, t))
    assert len(calls) == 1  # not retried on every step


def test_compile_setting_wraps_each_model_once():
    """The batch setting compiles each UNet once per session (kept for later batches); without it a
    session samples with the model itself."""
    s = Session(Settings(device="cpu", compile_batches=True))
    base = s.base("demo-shapes")
    fast = s.sampling_unet(base, compiled=True)
    assert isinstance(fast, CompiledUNet) and fast.model is base
    assert s.sampling_unet(base, compiled=True) is fast
    assert s.sampling_unet(base, compiled=False) is base

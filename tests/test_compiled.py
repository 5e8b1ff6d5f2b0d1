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


def test_compiled_unet_matches_eager_or_falls_back():
    """Compiled where this machine has a compiler, eager where it has none: same numbers either way."""
    torch.manual_seed(0)
    model = _TimeConv().eval().requires_grad_(False)
    x, t = torch.randn(2, 3, 8, 8), torch.full((2,), 500)
    fast = CompiledUNet(model)
    out = fast(x, t)
    torch.testing.assert_close(out, model(x, t), rtol=1e-4, atol=1e-5)
    assert fast.failed is None or isinstance(fast.failed, str)


def test_compile_setting_wraps_each_model_once():
    """The batch setting compiles each UNet once per session (kept for later batches); without it a
    session samples with the model itself."""
    s = Session(Settings(device="cpu", compile_batches=True))
    base = s.base("demo-shapes")
    fast = s.sampling_unet(base, compiled=True)
    assert isinstance(fast, CompiledUNet) and fast.model is base
    assert s.sampling_unet(base, compiled=True) is fast
    assert s.sampling_unet(base, compiled=False) is base

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("DCLIP_OFFLINE", "1")  # tests never touch the network

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# The parsers' fuzzers (tests/test_fuzz_parsers.py): 200 examples each in CI; HYPOTHESIS_PROFILE=long
# for a longer run. No deadline: a 2-core CI machine stalls now and then.
settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=20_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def tiny_unet(seed: int = 0, size: int = 16):
    """A random-weight UNet2DModel of the real architecture family, small enough for CPU tests."""
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=size,
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    ).eval()


@pytest.fixture
def unet():
    return tiny_unet()


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory, monkeypatch):
    """Every test gets its own library, latent cache, model cache and settings."""
    root = tmp_path_factory.mktemp("dclip-home")
    monkeypatch.setenv("DCLIP_LIBRARY_DIR", str(root / "library"))
    monkeypatch.setenv("DCLIP_LATENT_CACHE_DIR", str(root / "latents"))
    monkeypatch.setenv("DCLIP_CACHE_DIR", str(root / "models"))
    monkeypatch.setenv("DCLIP_CONFIG_DIR", str(root / "config"))
    monkeypatch.setenv("DCLIP_LOG_DIR", str(root / "logs"))


def tiny_clip(seed: int = 0):
    """A random-weight open_clip CLIP from a small config, with the real BPE tokenizer."""
    import open_clip
    from open_clip.model import CLIP

    torch.manual_seed(seed)
    model = CLIP(
        embed_dim=32,
        vision_cfg=dict(image_size=16, layers=2, width=64, patch_size=4, head_width=32),
        text_cfg=dict(context_length=32, vocab_size=49408, width=64, heads=2, layers=2),
    ).eval()
    return model, open_clip.get_tokenizer("ViT-B-32", context_length=32)


@pytest.fixture
def panel(qtbot):
    """The real prompt panel on a fresh fine-tune model, with a controller that runs no job."""
    from types import SimpleNamespace

    from dclip_desktop.gui.models.bases import usable_bases
    from dclip_desktop.gui.models.finetune import FinetuneModel
    from dclip_desktop.gui.ui.prompt_panel import PromptPanel
    from dclip_desktop.gui.worker import JobController

    controller = JobController(session=SimpleNamespace(settings=SimpleNamespace(preview_every=1),
                                                       forget_attributes=lambda: None))
    p = PromptPanel(FinetuneModel(), controller, usable_bases())
    qtbot.addWidget(p)
    yield p
    controller.shutdown()

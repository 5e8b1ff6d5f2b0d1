"""`dclip-desktop --self-test`: prove an installed (or frozen) app can really edit.

Loads the bundled demo base and CLIP, fine-tunes a tiny "red" → "blue" attribute in a temporary
library, edits a held-out red scene and checks the pixels moved toward blue. Qt-free, so the same
check runs from the packaged app, the CLI and the tests.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path


def run_self_test(log=print) -> tuple[bool, str]:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dclip-selftest-") as tmp:
        os.environ["DCLIP_LIBRARY_DIR"] = str(Path(tmp) / "library")
        os.environ["DCLIP_LATENT_CACHE_DIR"] = str(Path(tmp) / "latents")
        import torch

        from .core.finetune import FinetuneConfig
        from .demo import world
        from .demo.evaluate import colour_progress
        from .jobs.edit_job import EditRequest, edit_tensor
        from .jobs.finetune_job import FinetuneRequest, run_finetune
        from .jobs.session import Session
        from .jobs.settings import Settings

        session = Session(Settings(device="cpu", precision="fp32", offline=True))
        log(f"device {session.device}, torch {torch.__version__}")
        train, _, _ = world.make_scenes(range(6), color="red")
        cfg = FinetuneConfig(t0=301, s_for=10, s_gen=4, epochs=2, lora_rank=4, batch_size=6)
        entry = run_finetune(session, FinetuneRequest("demo-shapes", "red", "blue", "self-test", cfg, tensors=train))
        log(f"fine-tuned '{entry.name}' ({entry.size_bytes} bytes)")
        scene, masks, _ = world.make_scenes([world.HELDOUT_SEED_START + 7], color="red")
        edited = edit_tensor(session, EditRequest([(entry.id, 1.0)], s_for=10, s_gen=10), scene).cpu()
        if not torch.isfinite(edited).all():
            return False, "the edit produced non-finite pixels"
        before = colour_progress(scene, masks, "red", "blue")
        after = colour_progress(edited, masks, "red", "blue")
        log(f"red→blue progress inside the shape: {before:.3f} → {after:.3f}")
        if not after > before + 0.02:
            return False, f"the edit did not move the shape toward blue ({before:.3f} → {after:.3f})"
    return True, f"self-test passed in {time.perf_counter() - start:.1f} s"

"""The engine context a job runs in: device, precision, loaded models, library and latent cache.

The GUI worker keeps one Session alive so models load once; the CLI makes one per command.
Nothing here imports Qt.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ..core.cancel import CancelToken, Progress
from ..core.compiled import CompiledUNet, compiles_on
from ..core.finetune import SAMPLE_STEPS, precompute_latents, sample_from_noise, sample_noise
from ..core.mixing import ModelDenoiser
from ..core.schedule import DEFAULT_SCHEDULE
from .images import image_sha256
from .settings import Settings


class Session:
    def __init__(self, settings: Optional[Settings] = None) -> None:
        from ..zoo.device import pick_device, pick_precision

        self.settings = settings or Settings.load()  # offline mode is passed to each load, never put in os.environ
        self.device = pick_device(self.settings.device)
        self.autocast_dtype = pick_precision(self.settings.precision, self.device)
        self._bases: dict[str, nn.Module] = {}
        self._shas: dict[str, str] = {}
        self._clips: dict[str, tuple] = {}
        self._attrs: dict[tuple, nn.Module] = {}
        self._compiled: dict[nn.Module, CompiledUNet] = {}
        self._library = None
        self._cache = None
        self.inversion_calls = 0  # UNet calls spent on inversion: 0 when every latent came from the cache
        self.sampling_calls = 0  # UNet calls spent sampling training images: 0 when the sample cache held them
        # For a load given no progress: model id → a (done, total) byte callback for the files it fetches (the
        # CLI's bars). Its close(), where it has one, runs when the load ends, finished or failed.
        self.downloads: Optional[Callable[[str], Callable[[int, int], None]]] = None

    @property
    def precision(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.autocast_dtype]

    # --- models -------------------------------------------------------------------------------
    def spec(self, base_id: str):
        from ..zoo.registry import get_base

        return get_base(base_id)

    def prepare(self, base_id: str, *, clip: bool = False, face: bool = False) -> None:
        """Load every model a job will use before its first UNet call: a file missing offline, or a
        download that fails, then stops the job at once rather than after its sampling and inversion
        (most of an hour at 256² on a CPU). Downloads report through `downloads`."""
        self.base(base_id)
        if clip:
            self.clip(self.clip_name(base_id))
        if face:
            self.face()

    def _load(self, model_id: str, load, progress):
        if progress is not None or self.downloads is None:
            return load(progress)
        bar = self.downloads(model_id)
        try:
            return load(bar)
        finally:
            close = getattr(bar, "close", None)
            if close is not None:
                close()

    def base(self, base_id: str, progress=None) -> nn.Module:
        if base_id not in self._bases:
            from ..zoo.loading import load_base

            model = self._load(base_id, lambda p: load_base(base_id, self.device, offline=self.settings.offline,
                                                            progress=p), progress)
            if self.settings.channels_last(self.device.type):  # attribute models, fine-tunes: copies inherit it
                model = model.to(memory_format=torch.channels_last)
            self._bases[base_id] = model.eval().requires_grad_(False)
        return self._bases[base_id]

    def base_sha(self, base_id: str) -> str:
        if base_id not in self._shas:
            from ..zoo.loading import base_sha256

            self._shas[base_id] = base_sha256(base_id)
        return self._shas[base_id]

    def clip_name(self, base_id: str) -> str:
        spec = self.spec(base_id)
        return "demo-tiny" if spec.is_demo else "ViT-B-16-quickgelu"

    def clip(self, name: str, progress=None):
        if name not in self._clips:
            from ..zoo.loading import load_clip

            self._clips[name] = self._load(
                name, lambda p: load_clip(name, self.device, offline=self.settings.offline, progress=p), progress)
        return self._clips[name]

    def face(self, progress=None):
        if "face" not in self._clips:
            from ..zoo.loading import load_face
            from ..zoo.registry import DEFAULT_FACE

            self._clips["face"] = self._load(
                DEFAULT_FACE, lambda p: load_face(self.device, offline=self.settings.offline, progress=p), progress)
        return self._clips["face"]

    # --- library ------------------------------------------------------------------------------
    @property
    def library(self):
        if self._library is None:
            from ..library.store import Library

            root = self.settings.library_dir
            self._library = Library(Path(root) if root else None)
        return self._library

    @property
    def cache(self):
        if self._cache is None:
            from ..library.cache import LatentCache

            root = self.settings.cache_dir
            self._cache = LatentCache(Path(root) if root else None)
        return self._cache

    def attribute(self, name_or_id: str) -> tuple[object, nn.Module]:
        """(library entry, its materialised model): the base plus the attribute's delta, cached."""
        entry = self.library.get(name_or_id)
        base_id = entry.base_id
        key = (entry.id, entry.manifest.get("weights_sha256"), base_id)
        if key not in self._attrs:
            model = self.library.materialize(entry, self.base(base_id))
            self._attrs[key] = model.to(self.device).eval().requires_grad_(False)
        return entry, self._attrs[key]

    def forget_attributes(self) -> None:
        """Drop materialised attributes (after a rename/delete/import changed the library)."""
        self._attrs.clear()
        self._compiled = {m: c for m, c in self._compiled.items() if m in self._bases.values()}

    def sampling_unet(self, model: nn.Module, compiled: bool = False):
        """`model` as a sampling loop calls it: torch.compiled (once per model, kept) when asked for
        on a device where compiling pays (`compiles_on`); the model itself otherwise."""
        if not (compiled and compiles_on(self.device.type)):
            return model
        if model not in self._compiled:  # modules hash by identity
            self._compiled[model] = CompiledUNet(model)
        return self._compiled[model]

    # --- inversion with the latent cache ------------------------------------------------------
    def _latent_keys(self, base_id: str, x0: torch.Tensor, t0: int, s_for: int) -> list:
        from ..library.cache import LatentKey

        return [LatentKey(self.base_sha(base_id), image_sha256(x), t0, s_for, self.precision) for x in x0]

    def cached_latents(self, base_id: str, x0: torch.Tensor, t0: int, s_for: int) -> list[Optional[torch.Tensor]]:
        """The cache's x_t0 for each image (None where it has none), for a caller that plans by it; pass
        the list back to `invert(known=...)` so the cache is read once."""
        return self.cache.get_many(self._latent_keys(base_id, x0, t0, s_for))

    def invert(
        self,
        base_id: str,
        x0: torch.Tensor,
        t0: int,
        s_for: int,
        *,
        batch_size: int = 32,
        known: Optional[list[Optional[torch.Tensor]]] = None,
        whole: bool = False,
        progress: Optional[Progress] = None,
        cancel: Optional[CancelToken] = None,
        use_cache: bool = True,
        compiled: bool = False,
    ) -> torch.Tensor:
        """x_t0 for each image, inverting only those the latent cache does not hold (paper §3.1:
        latents are recycled across attributes). `whole`: when any is missing, invert every image in one
        batch, so a compiled UNet sees one shape."""
        x0 = x0.to(self.device)
        keys = None  # hashing every image costs a pass over its pixels: only when the cache is asked or fed
        if known is not None:
            found = list(known)
        elif use_cache:
            keys = self._latent_keys(base_id, x0, t0, s_for)
            found = self.cache.get_many(keys)
        else:
            found = [None] * len(x0)
        missing = [i for i, z in enumerate(found) if z is None]
        if missing:
            run = list(range(len(found))) if whole else missing
            den = ModelDenoiser(self.sampling_unet(self.base(base_id), compiled), self.autocast_dtype)
            latents = precompute_latents(
                den, x0[run], t0, s_for, batch_size=batch_size, autocast_dtype=self.autocast_dtype,
                progress=progress, cancel=cancel,
            )
            self.inversion_calls += den.calls
            by_index = dict(zip(run, latents))
            if use_cache:  # a padded batch repeats its last image: store each key once
                keys = keys or self._latent_keys(base_id, x0, t0, s_for)
                first = {keys[i]: i for i in reversed(missing)}
                self.cache.put_many(list(first), [by_index[i].cpu() for i in first.values()])
            found = [by_index.get(i, z) for i, z in enumerate(found)]
        return torch.stack([z.to(self.device) for z in found])


    # --- training images sampled from the base, with the same cache ---------------------------
    def sample(
        self,
        base_id: str,
        n: int,
        shape: tuple[int, int, int],
        *,
        seed: int = 0,
        steps: int = SAMPLE_STEPS,
        batch_size: int = 32,
        progress: Optional[Progress] = None,
        cancel: Optional[CancelToken] = None,
        use_cache: bool = True,
    ) -> tuple[torch.Tensor, int]:
        """(n DDIM samples of the base from the noise of `seed`, how many came from the cache). Only the
        missing ones are sampled, so progress counts the steps actually run; each finished batch is
        stored at once, so a cancel keeps every complete sample and no partial one. Sample i of a seed
        does not depend on n (`sample_noise`): asking for more reuses the ones already drawn."""
        from ..library.cache import sample_key

        noise = sample_noise(n, shape, seed)
        if n == 0:
            return noise.to(self.device), 0
        t_start = DEFAULT_SCHEDULE.num_steps - 1
        keys = [sample_key(self.base_sha(base_id), z, t_start, steps, self.precision) for z in noise] \
            if use_cache else []
        found = self.cache.get_many(keys) if use_cache else [None] * n
        # a file with our key but another tensor (hand-made) is a miss like a corrupt one
        found = [z if z is not None and z.shape == noise.shape[1:] else None for z in found]
        missing = [i for i, z in enumerate(found) if z is None]
        if missing:
            den = ModelDenoiser(self.base(base_id), self.autocast_dtype)

            def store(start: int, images: torch.Tensor) -> None:
                for i, img in zip(missing[start : start + len(images)], images.cpu()):
                    found[i] = img
                if use_cache:
                    batch = missing[start : start + len(images)]
                    self.cache.put_many([keys[i] for i in batch], [found[i] for i in batch])

            try:
                sample_from_noise(den, noise[missing].to(self.device), steps=steps, batch_size=batch_size,
                                  progress=progress, cancel=cancel, on_batch=store)
            finally:
                self.sampling_calls += den.calls
        return torch.stack(found).to(self.device), n - len(missing)

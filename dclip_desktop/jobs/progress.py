"""Job progress: a phase name on top of the core's (step, total, preview) callback, and one overall
fraction over a job's phases for a single progress bar."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Optional

import torch

from ..core.cancel import Progress

# progress(phase, step, total, preview)
JobProgress = Callable[[str, int, int, Optional[torch.Tensor]], None]


def phase(progress: Optional[JobProgress], name: str) -> Optional[Progress]:
    if progress is None:
        return None
    return lambda step, total, preview=None: progress(name, step, total, preview)


class OverallProgress:
    """Maps a multi-phase job's (phase, step, total) onto one fraction 0..1 that never decreases.

    `phases` lists (name, weight) in the order the job runs them; a weight is the phase's share of the
    work in any unit. Each phase's own step count restarts at 0, so a bar fed those directly jumps back
    at every phase change; this one moves through each phase's slice instead. A phase the job skips
    counts as done once a later one starts; a phase it repeats (the demo inverts again to edit) or one
    not listed holds the bar where it is; the last phase, of weight 0 (a fine-tune's "saving"), ends at 1.
    """

    def __init__(self, phases: Sequence[tuple[str, float]]) -> None:
        whole = float(sum(max(0.0, w) for _, w in phases)) or 1.0
        self._slices: dict[str, tuple[float, float]] = {}
        done = 0.0
        for name, weight in phases:
            weight = max(0.0, weight)
            self._slices[name] = (done / whole, weight / whole)  # the last one starts at exactly 1
            done += weight
        self.fraction = 0.0

    def update(self, phase: str, step: int, total: int) -> float:
        if phase in self._slices:
            start, share = self._slices[phase]
            done = min(1.0, max(0.0, step / total)) if total > 0 else 0.0
            self.fraction = min(1.0, max(self.fraction, start + share * done))
        return self.fraction

    def percent(self) -> int:
        return int(self.fraction * 100)


# UNet passes per image and diffusion step: sampling and inverting run a forward, training a forward and
# a backward (about two more). On the bases that make a bar matter (256², compute-bound) phases take
# about this; on the 32² demo, batch-150 sampling costs less per pass and training more (red → blue by
# the default path on a 2-core CPU shared with other jobs: 33 % / 18 % / 49 % of the time against
# 69 / 11 / 20 % of the passes), so there the bar runs ahead while sampling, but still never back.
TRAIN_PASSES = 3


def finetune_phases(req) -> list[tuple[str, float]]:
    """run_finetune's phases for a FinetuneRequest, weighted by the UNet passes each makes."""
    from ..core.finetune import SAMPLE_STEPS

    cfg = req.config
    given = req.tensors if req.tensors is not None else req.images
    if given is not None:
        sampled, kept = 0, max(2, len(given))  # one photo is trained on and previewed: two images
    else:
        kept = req.sample_count + 1  # + the held-out preview image
        sampled = kept * req.oversample
    return [("sampling", sampled * SAMPLE_STEPS), ("inverting", kept * cfg.s_for),
            ("training", TRAIN_PASSES * cfg.epochs * (kept - 1) * cfg.s_gen), ("saving", 0)]


def translate_phases(req) -> list[tuple[str, float]]:
    """translate_tensor's phases for a TranslateRequest, weighted by their UNet passes (every phase runs
    the whole batch of seeds): K projection rounds of `project_steps`, then the inversion and the edit."""
    return [("projecting", req.rounds * req.project_steps), ("inverting", req.edit.s_for),
            ("generating", req.edit.s_gen)]

"""Job settings and the rules that check them, in pure Python: one home for each rule, shared by the
engine, the CLI and the GUI.

The GUI imports this on its own thread while the user types, so nothing here may pull in torch (a test
holds it so). It holds the fine-tune settings (FinetuneConfig, its choices, t0 and step counts), the
prompt a fine-tune learns from, the merge of a base's recipe into the settings, and the mixing weights
γ_i(t) of eq. 14 with the one tolerance their sum is checked against.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Optional

from ..errors import BadInput

T = 1000  # diffusion steps of every base's schedule (METHOD.md, "Notation")

MODES = ("efficient", "full_chain")  # Algorithm 2 (one step per DDIM step) or Algorithm 1 (whole chain)
LR_SCHEDULES = ("constant", "paper_ramp", "ref_x1.3")  # core.finetune.lr_factor
CLIP_LOSS_FORMS = ("neglog", "dir")  # −log((1+cos)/2), the reference's; 1 − cos, the paper's L_dir

# How a device is named in settings, on the command line and in the GUI (zoo.device.pick_device resolves it).
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(?::(\d+))?")

# Σ_i γ_i(t) = 1 (eq. 14) up to this much: weights typed as 0.333 + 0.333 + 0.333 pass, 0.3 + 0.3 do not.
WEIGHT_TOLERANCE = 1e-3


# --- timesteps ----------------------------------------------------------------------------------
def validate_t0(t0: int, num_steps: int = T) -> None:
    if not isinstance(t0, int) or not 1 <= t0 <= num_steps - 1:
        raise BadInput(f"t0 must be an integer in 1..{num_steps - 1}, got {t0!r}")


def validate_steps(n: int, name: str = "steps", num_steps: int = T) -> None:
    """DDIM step counts: at least 2, at most one per timestep (PNG metadata is held to the same range)."""
    if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= num_steps:
        raise BadInput(f"{name} must be an integer in 2..{num_steps}, got {n!r}")


# --- fine-tuning (section 3.1) ------------------------------------------------------------------
@dataclass
class FinetuneConfig:
    """Paper defaults; the per-attribute t0 comes from the preset."""

    t0: int = 400
    s_for: int = 40
    s_gen: int = 6
    lambda_clip: float = 3.0
    clip_loss_form: str = "neglog"  # the reference's −log((1+cos)/2); "dir" is 1 − cos
    lambda_l1: float = 0.3
    lambda_face: float = 0.0  # 0.3 for faces when the identity net is available
    lr: Optional[float] = None  # None: 4e-6 (paper) for full weights, 1e-3 for LoRA
    lr_schedule: str = "constant"
    epochs: int = 1
    mode: str = "efficient"
    checkpointing: bool = True  # full chain only: recompute each UNet pass in backward (memory ≈ one pass)
    # Efficient mode: recompute each UNet block in backward. None = on CUDA only: on an H100 at 256²,
    # batch 8 with it needs 7 GiB and runs faster per image than batch 4 without it (10 GiB); a CPU
    # has the RAM and would pay the recomputation.
    block_checkpointing: Optional[bool] = None
    lora_rank: Optional[int] = 8  # None trains all weights
    lora_alpha: Optional[float] = None
    batch_size: int = 8
    seed: int = 0

    def uses_block_checkpointing(self, device_type: str) -> bool:
        if self.mode != "efficient":
            return False  # full chain checkpoints whole UNet passes instead (`checkpointing`)
        return device_type == "cuda" if self.block_checkpointing is None else self.block_checkpointing

    def effective_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return 4e-6 if self.lora_rank is None else 1e-3

    def validate(self) -> None:
        validate_t0(self.t0)
        validate_steps(self.s_for, "S_for")
        validate_steps(self.s_gen, "S_gen")
        if self.mode not in MODES:
            raise BadInput(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise BadInput(f"lr schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.clip_loss_form not in CLIP_LOSS_FORMS:
            raise BadInput(f"CLIP loss form must be one of {CLIP_LOSS_FORMS}, got {self.clip_loss_form!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise BadInput("epochs and batch size must be ≥ 1")
        if not self.effective_lr() > 0:  # written so that NaN fails too
            raise BadInput(f"learning rate must be > 0, got {self.effective_lr()}")
        if self.lora_rank is not None and self.lora_rank < 1:
            raise BadInput(f"LoRA rank must be ≥ 1, got {self.lora_rank}")
        for name in ("lambda_clip", "lambda_l1", "lambda_face"):
            if not getattr(self, name) >= 0:
                raise BadInput(f"{name} must be ≥ 0")

    def to_dict(self) -> dict:
        return asdict(self)


def config_from_recipe(recipe: Mapping[str, Any], user: Optional[Mapping[str, Any]] = None) -> FinetuneConfig:
    """The settings a fine-tune runs with: what the user set, else the recipe's value (the zoo's
    `recipe_for(base, source, target)`), else FinetuneConfig's default.

    `user` holds only the fields the user set; a None in it is a choice (lr None is "auto"). Not
    validated: the GUI follows the recipe while the user is still typing."""
    return FinetuneConfig(**{**recipe, **(user or {})})


def check_prompt(source: str, target: str, name: str) -> None:
    """The text pair a fine-tune learns a direction from, and the name it is saved under."""
    if not source.strip() or not target.strip():
        raise BadInput("source and target text must not be empty")
    if source.strip() == target.strip():
        raise BadInput("source and target text are the same: there is no direction to learn")
    if not name.strip():
        raise BadInput("give the attribute a name")


# --- mixing weights γ_i(t) (eq. 14) -------------------------------------------------------------
def _shown(value) -> str:
    """`value` for an error message, cut short (an int too long for str() shows as its type)."""
    try:
        text = str(value)
    except ValueError:
        text = type(value).__name__
    return text if len(text) <= 40 else text[:39] + "…"


def _number(value, what: str) -> float:
    """`value` as a finite float; bools and text are refused (JSON `true` is not a weight)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise BadInput(f"{what} should be a number, not {type(value).__name__}")
    try:
        out = float(value)
    except OverflowError:  # an int beyond float range
        out = math.inf
    if not math.isfinite(out):
        raise BadInput(f"{what} is not a finite number")
    return out


def _rows(rows) -> tuple[tuple[int, tuple[float, ...]], ...]:
    """Schedule rows checked for shape: each (integer threshold in 0..T−1, sequence of finite weights).
    Rows come from the CLI, PNG metadata and the GUI, so a wrong shape is the user's BadInput, not a
    TypeError from deep inside."""
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence):
        raise BadInput(f"a mixing schedule is a list of [threshold, [weights…]] rows, not {type(rows).__name__}")
    out = []
    for k, row in enumerate(rows):
        if isinstance(row, (str, bytes)) or not isinstance(row, Sequence) or len(row) != 2:
            raise BadInput(f"schedule row {k + 1} is not [threshold, [weights…]]: {_shown(row)}")
        th, ws = row
        if isinstance(th, bool) or not isinstance(th, numbers.Integral) or not 0 <= th <= T - 1:
            raise BadInput(f"schedule row {k + 1}: the threshold must be an integer in 0..{T - 1}, got {_shown(th)}")
        if isinstance(ws, (str, bytes)) or not isinstance(ws, Sequence):
            raise BadInput(f"schedule row {k + 1}: the weights must be a list of numbers")
        out.append((int(th), tuple(_number(w, f"schedule row {k + 1}: a weight") for w in ws)))
    return tuple(out)


def check_weights(ws: Sequence[float], at: Optional[str] = None) -> None:
    """One set of mixing weights: finite, and summing to 1 within WEIGHT_TOLERANCE. `at` names the
    schedule row ("t≥500") where there is one."""
    if any(not math.isfinite(w) for w in ws):
        raise BadInput(f"row {at} has a non-finite weight: {list(ws)}" if at else "a weight is not a finite number")
    if abs(sum(ws) - 1.0) > WEIGHT_TOLERANCE:
        where = f"weights at {at}" if at else "weights"
        raise BadInput(f"{where} must sum to 1, they sum to {sum(ws):.4g}: {list(ws)}")


@dataclass(frozen=True)
class WeightSchedule:
    """Time-dependent mixing weights γ_i(t): rows of (threshold, weights), highest threshold first.

    Row k applies for t ≥ threshold_k (checked from the top); the last threshold must be 0 so every
    t has weights.
    """

    rows: tuple[tuple[int, tuple[float, ...]], ...]

    @classmethod
    def constant(cls, weights: Sequence[float]) -> WeightSchedule:
        return cls.of([(0, weights)])

    @classmethod
    def of(cls, rows: Sequence[tuple[int, Sequence[float]]]) -> WeightSchedule:
        """Rows normalised to (int, (float, …)); BadInput for a wrong shape (see `validate` for the rules)."""
        return cls(_rows(rows))

    @classmethod
    def by_t0(cls, t0s: Sequence[int], weights: Sequence[float]) -> WeightSchedule:
        """Coarse to fine: each step t goes to the attribute(s) with the smallest t0 ≥ t.

        An attribute only ever learned steps t ≤ its t0, and a large-t0 change (background, shape)
        is settled in the early, noisy steps while a small-t0 one (colour) acts late. Giving each
        band of steps wholly to one attribute applies each at full strength instead of the halved
        strength of constant weights. Attributes sharing a t0 share its band by their weights.
        """
        if len(t0s) != len(weights) or not t0s:
            raise ValueError(f"by_t0 needs one weight per attribute, got {len(t0s)} t0s and {len(weights)} weights")
        levels = sorted({int(t) for t in t0s}, reverse=True)
        rows = []
        for k, level in enumerate(levels):
            owners = [w if int(t) == level else 0.0 for t, w in zip(t0s, weights)]
            total = sum(owners)
            if not total > 0:
                raise BadInput(f"the attributes with t0 {level} have no positive weight")
            threshold = levels[k + 1] + 1 if k + 1 < len(levels) else 0
            rows.append((threshold, [w / total for w in owners]))
        return cls.of(rows)

    def validate(self, n_models: int) -> None:
        _rows(self.rows)  # the dataclass can be built directly, bypassing `of`
        if not self.rows:
            raise BadInput("the mixing schedule has no rows")
        thresholds = [th for th, _ in self.rows]
        if any(a <= b for a, b in zip(thresholds, thresholds[1:])):
            raise BadInput(f"schedule thresholds must be strictly decreasing, got {thresholds}")
        if thresholds[-1] != 0:
            raise BadInput(f"the last schedule threshold must be 0 so every t is covered, got {thresholds[-1]}")
        for th, ws in self.rows:
            if len(ws) != n_models:
                raise BadInput(f"row t≥{th} has {len(ws)} weights for {n_models} models")
            check_weights(ws, f"t≥{th}")

    def at(self, t: int) -> tuple[float, ...]:
        for th, ws in self.rows:
            if t >= th:
                return ws
        raise ValueError(f"no schedule row covers t={t}")


def validate_degree(degree: float) -> None:
    """γ in [0, 1], the range the CLI help, the GUI slider and the README give: the continuous
    transition interpolates between the original and the fine-tuned model. NaN, ±inf and bools are
    refused (a NaN γ would turn every pixel NaN)."""
    try:
        value = _number(degree, "γ")
    except BadInput:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise BadInput(f"the degree of change γ must be a number in [0, 1], got {_shown(degree)}")

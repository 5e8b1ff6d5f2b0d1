"""State of the attribute-mixing panel: which library attributes, their weights, the time-dependent
schedule γ_i(t), the degree of change γ, and the edit's sampling settings (t0, S_for, S_gen, η, the
sampler and its seed). Builds the engine's EditRequest arguments."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QObject, Signal

# The engine's own rules for a mix, pure Python: the panel refuses exactly what the edit job would.
from ...core.config import WeightSchedule, check_weights, validate_degree, validate_steps, validate_t0
from ...errors import BadInput
from ...zoo.registry import attribute_t0
from ..properties import Observable, Property


class AttrRow(Observable):
    """One library attribute in the mix: whether it is ticked and its weight are observable."""

    checked = Property(False, bool)
    weight = Property(1.0, float)

    def __init__(self, id: str, name: str, t0: int = 0, label: str = "", checked: bool = False,
                 weight: float = 1.0) -> None:
        super().__init__()
        self.id, self.name, self.t0, self.label = id, name, t0, label  # label: "source → target"
        self.checked, self.weight = checked, weight


class MixingModel(Observable):
    """The mix. Ticking a row shares the weights equally among the ticked rows (Equalize)."""

    degree = Property(1.0, float)  # γ
    use_schedule = Property(False, bool)
    schedule = Property([])  # [[threshold, [weights of the checked rows]], ...]; assign, never mutate
    # EditRequest's sampling settings (its defaults). t0 None: the largest t0 of the attributes used.
    t0 = Property(None)
    s_for = Property(40, int)
    s_gen = Property(40, int)
    eta = Property(0.0, float)  # of DDIM; the DDPM-ancestral sampler is η = 1 whatever this says
    ddpm = Property(False, bool)  # sampler "ddpm" rather than "ddim"
    seed = Property(0, int)  # where η > 0: image i draws its noise from seed + i
    changed = Signal()  # rows, weights, schedule or degree changed
    rows_changed = Signal()  # the list of attributes changed (rebuild widgets)
    message_changed = Signal(str)  # inline validation / engine error ("" clears)

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.rows: list[AttrRow] = []
        self.engine_message = ""
        self._share = True  # a tick shares the weights; off while settings are applied as a whole

    # --- attributes -------------------------------------------------------------------------
    def set_entries(self, entries) -> None:
        """`entries`: library entries of the current base (undamaged). Keeps check state by id."""
        old = {r.id: r for r in self.rows}
        rows = []
        for e in entries:
            prev = old.get(e.id)
            label = f"{e.source} → {e.target}" if e.source or e.target else ""
            row = AttrRow(e.id, e.name, attribute_t0(e.t0, e.base_id), label, prev.checked if prev else False,
                          prev.weight if prev else 1.0)
            row.checked_changed.connect(self._on_checked)
            row.weight_changed.connect(self._changed)
            rows.append(row)
        self.rows = rows
        self._schedule_fit()
        self.rows_changed.emit()
        self._changed()

    def row(self, name: str) -> AttrRow:
        for r in self.rows:
            if r.name == name or r.id == name:
                return r
        raise KeyError(name)

    def names(self) -> list[str]:
        return [r.name for r in self.rows]

    def checked(self) -> list[AttrRow]:
        return [r for r in self.rows if r.checked]

    def set_checked(self, name: str, on: bool, share: bool = True) -> None:
        """Tick or untick (a bound check box sets `row.checked`, which is the same with share)."""
        row, self._share = self.row(name), share
        try:
            row.checked = on
        finally:
            self._share = True

    def _on_checked(self, *_) -> None:
        if self._share:
            self.equalize()
        self._schedule_fit()
        self._changed()

    def set_weight(self, name: str, weight: float) -> None:
        self.row(name).weight = weight

    def equalize(self) -> None:
        rows = self.checked()
        for r in rows[:-1]:
            r.weight = round(1.0 / len(rows), 4)
        if rows:  # make the sum exact
            rows[-1].weight = round(1.0 - sum(r.weight for r in rows[:-1]), 4)
        self._changed()

    def set_degree(self, degree: float) -> None:
        self.degree = degree

    def apply_settings(self, meta: dict) -> None:
        """Tick, weigh, schedule and set γ as the output whose checked metadata (`jobs.images.read_metadata`)
        is `meta` was made."""
        weights = {a.get("name"): a["weight"] for a in meta.get("attributes") or []}
        self._share = False
        try:
            for row in self.rows:
                row.checked = row.name in weights
                row.weight = weights.get(row.name, row.weight)
        finally:
            self._share = True
        sched = meta.get("schedule") or []
        self.schedule = [[t, list(ws)] for t, ws in sched]
        self.use_schedule = len(sched) > 1
        degree = meta.get("degree")
        self.degree = 1.0 if degree is None else degree
        # as jobs.metadata.request_from_metadata reads them, so Apply redoes what `dclip edit --from` does
        self.t0 = meta.get("t0")
        self.s_for = meta.get("s_for") or 40
        self.s_gen = meta.get("s_gen") or 40
        self.ddpm = meta.get("sampler") == "ddpm"
        self.eta = meta.get("eta") or 0.0
        self.seed = meta.get("seed") or 0

    # --- schedule ---------------------------------------------------------------------------
    def set_use_schedule(self, on: bool) -> None:
        self.use_schedule = on
        if on and not self.schedule:  # already on, with no rows
            self.reset_schedule()

    def reset_schedule(self) -> None:
        w = [r.weight for r in self.checked()]
        self.schedule = [[500, list(w)], [0, list(w)]]

    def split_by_t0(self) -> None:
        """Coarse to fine: each band of steps to the ticked attribute with the smallest t0 above it."""
        rows = self.checked()
        if not rows:
            return
        try:
            sched = WeightSchedule.by_t0([r.t0 for r in rows], [r.weight for r in rows])
        except BadInput as exc:
            self.set_engine_message(str(exc))
            return
        self.schedule = [[th, list(ws)] for th, ws in sched.rows]
        self.use_schedule = True

    def add_schedule_row(self) -> None:
        n = len(self.checked())
        top = self.schedule[0][0] if self.schedule else 0
        self.schedule = [[min(999, top + 200), [1.0 / n] * n if n else []], *self._schedule_copy()]

    def remove_schedule_row(self, index: int) -> None:
        rows = self._schedule_copy()
        del rows[index]
        self.schedule = rows

    def set_schedule_cell(self, row: int, col: int, value: float) -> None:
        """col 0 is the threshold t; col k ≥ 1 the weight of the k-th checked attribute."""
        rows = self._schedule_copy()
        if col == 0:
            rows[row][0] = int(value)
        else:
            rows[row][1][col - 1] = float(value)
        self.schedule = rows

    def _schedule_copy(self) -> list[list]:
        return [[th, list(ws)] for th, ws in self.schedule]

    def _schedule_fit(self) -> None:
        n = len(self.checked())
        self.schedule = [[th, (list(ws) + [0.0] * n)[:n]] for th, ws in self.schedule]

    def _property_changed(self, name: str, value) -> None:
        if name == "use_schedule" and value and not self.schedule:
            self.reset_schedule()
        self._changed()

    # --- validation and the request ---------------------------------------------------------
    def validate(self) -> Optional[str]:
        """A user-facing reason the current mix cannot be applied, or None: the engine's rules and
        messages (core.config), checked before anything is submitted."""
        rows = self.checked()
        if not rows:
            return "Tick at least one attribute."
        try:
            validate_degree(self.degree)
            if self.t0 is not None:
                validate_t0(self.t0)
            validate_steps(self.s_for, "S_for")
            validate_steps(self.s_gen, "S_gen")
            if not 0.0 <= self.eta <= 1.0:
                return f"η must be in [0, 1] (0: deterministic), got {self.eta:g}"
            if self.use_schedule:
                WeightSchedule.of(self.schedule).validate(len(rows))
        except BadInput as exc:
            return str(exc)
        if not self.use_schedule:
            try:
                check_weights([r.weight for r in rows])
            except BadInput as exc:
                return f"{exc} (use Equalize)"
        return None

    def edit_kwargs(self) -> dict:
        """Keyword arguments of jobs.edit_job.EditRequest (attributes, schedule, degree, sampling)."""
        rows = self.checked()
        kw = {"attributes": [(r.name, r.weight) for r in rows], "degree": self.degree, "schedule": None,
              "t0": self.t0, "s_for": self.s_for, "s_gen": self.s_gen,
              # the ddpm sampler takes no η of its own (EditRequest.generation_eta is 1 for it)
              "eta": 0.0 if self.ddpm else self.eta, "sampler": "ddpm" if self.ddpm else "ddim", "seed": self.seed}
        if self.use_schedule and self.schedule:
            kw["schedule"] = [(int(th), [float(w) for w in ws]) for th, ws in self.schedule]
        return kw

    def set_engine_message(self, text: str) -> None:
        self.engine_message = text
        self.message_changed.emit(self.message())

    def message(self) -> str:
        return self.validate() or self.engine_message or ""

    def _changed(self, *_) -> None:
        self.engine_message = ""
        self.changed.emit()
        self.message_changed.emit(self.message())

"""Per-layer truncated-SVD storage of a full fine-tune's delta Δθ, and the choice of its ranks.

A full fine-tune changes every weight, and a dense fp16 Δθ is as large as half the model (227 MB at
DDPM-256). Each weight matrix's change, reshaped to (out, in·k·k), is stored as the best rank-r
approximation B·A (Eckart–Young) instead; 1-D changes (biases, norms) are small and stay dense.

How far a layer may be truncated is not known in weight space: a discarded direction may or may not
show in the image. So the ranks come from one knob, ε (each layer keeps the smallest rank whose
discarded energy Σ_{i>r} σ_i² is ≤ ε of its total ‖ΔW‖²_F), and the caller measures the edit itself
for each ε of a ladder from coarse to fine (`choose`), keeping the smallest file whose image stays
within PIXEL_TOLERANCE of the dense delta's.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from .lora import apply_delta, lora_delta

# Stored names: '<param>::A' (r, in, k, k) and '<param>::B' (out, r), so B·A has the parameter's
# shape (out, in, k, k) as a LoRA's factors do; "::" cannot occur in a PyTorch parameter name.
A_SUFFIX = "::A"
B_SUFFIX = "::B"
# ε from coarse to fine. Measured on a 3-epoch demo full fine-tune (edit: 1.5 levels mean, 17 max
# against the base): ε 0.5 keeps 11 % of the dense file with the preview 0.12 levels (mean) from the
# dense one's, ε 0.1 48 % at 0.01, ε 1e-3 93 % (most layers then stay dense). The finest step is
# where factors stop saving anything; a bigger edit (256², more epochs) settles further down.
ENERGY_LADDER = (0.5, 0.3, 0.1, 0.03, 0.01, 3e-3, 1e-3)
# The edit a low-rank attribute makes must match the dense delta's to this, in 8-bit levels over the
# preview image: a mean of 1 level is the size of the rounding to 8 bits itself, invisible side by
# side; a max of 8 levels (3 %) allows a faint local difference but not a changed detail or colour.
PIXEL_TOLERANCE = {"mean": 1.0, "max": 8.0}


@dataclass
class Spectrum:
    """One layer's change M (out, cols) seen from its smaller side: `basis` holds the orthonormal
    singular vectors of that side (columns, by falling singular value), `energy` the σ_i²."""

    basis: torch.Tensor  # (out, k) left vectors when out ≤ cols, else (cols, k) right vectors
    energy: torch.Tensor  # (k,) σ_i², descending
    left: bool  # basis spans the columns of M (left vectors) rather than its rows
    shape: torch.Size

    def rank_for(self, eps: float) -> int:
        """The smallest rank r ≥ 1 whose discarded energy Σ_{i>r} σ_i² is ≤ eps·Σ σ_i²."""
        total = float(self.energy.sum())
        if total <= 0:
            return 1
        tail = total - torch.cumsum(self.energy, 0)  # tail[r-1] = energy discarded at rank r
        ok = (tail <= eps * total).nonzero()
        return int(ok[0]) + 1 if len(ok) else len(self.energy)


def spectrum(delta: torch.Tensor) -> Spectrum:
    """The singular vectors and σ² of one ≥2-D change.

    Through the Gram matrix of the smaller side in float64 and `eigh`, not `torch.linalg.svd`:
    LAPACK's SVD takes 5–10 s for one 512×4608 DDPM-256 conv on a 2-core CPU (minutes for the whole
    model, at save time), the Gram route 0.25 s. Squaring loses precision only for σ below ~1e-8·σ_max,
    which no kept rank reaches."""
    m = delta.detach().reshape(delta.shape[0], -1).double()
    left = m.shape[0] <= m.shape[1]
    gram = m @ m.T if left else m.T @ m
    energy, vectors = torch.linalg.eigh(gram)  # ascending
    energy, vectors = energy.flip(0).clamp_min(0), vectors.flip(1)
    return Spectrum(vectors.float(), energy, left, delta.shape)


def spectra(delta: dict[str, torch.Tensor]) -> dict[str, Spectrum]:
    """A Spectrum for every ≥2-D change in `delta` (the ones that can be factored)."""
    return {name: spectrum(d) for name, d in delta.items() if d.dim() >= 2}


def factorize(delta: dict[str, torch.Tensor], specs: dict[str, Spectrum], eps: float) -> dict[str, torch.Tensor]:
    """The stored form at energy threshold `eps`: '<p>::A', '<p>::B' for each factored layer, '<p>'
    for the rest. A layer whose factors would hold no fewer numbers than ΔW itself stays dense.

    B·A is M's projection onto its top-r singular vectors (the best rank-r approximation); the
    orthonormal factor is the smaller side's, the other is M projected on it, so no σ is divided by."""
    out: dict[str, torch.Tensor] = {}
    for name, d in delta.items():
        sp = specs.get(name)
        if sp is None:
            out[name] = d
            continue
        m = d.detach().reshape(d.shape[0], -1).float()
        r = sp.rank_for(eps)
        if r * (m.shape[0] + m.shape[1]) >= m.numel():
            out[name] = d
            continue
        vecs = sp.basis[:, :r]
        b, a = (vecs, vecs.T @ m) if sp.left else (m @ vecs, vecs.T)
        out[name + A_SUFFIX] = a.reshape(r, *d.shape[1:]).contiguous()
        out[name + B_SUFFIX] = b.contiguous()
    return out


def expand(a: torch.Tensor, b: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """ΔW = scale·B·A in the parameter's shape (out, *A's trailing dims)."""
    return lora_delta(a, b, scale, torch.Size((b.shape[0], *a.shape[1:])))


def ranks(weights: dict[str, torch.Tensor]) -> dict[str, int]:
    """The rank of each factored layer of a stored form."""
    return {k[: -len(A_SUFFIX)]: int(v.shape[0]) for k, v in weights.items() if k.endswith(A_SUFFIX)}


def rank_summary(weights: dict[str, torch.Tensor]) -> dict:
    """What the manifest records of a stored form's ranks."""
    r = sorted(ranks(weights).values())
    factored = {k[: -len(A_SUFFIX)] for k in weights if k.endswith(A_SUFFIX)}
    dense = [k for k in weights if not k.endswith((A_SUFFIX, B_SUFFIX)) and k not in factored]
    summary: dict = {"factored_layers": len(r), "dense_tensors": len(dense)}
    if r:
        summary.update(rank_min=r[0], rank_median=r[len(r) // 2], rank_max=r[-1])
    return summary


def relative_error(dense: dict[str, torch.Tensor], approx: dict[str, torch.Tensor]) -> float:
    """‖Δ − Δ̂‖_F / ‖Δ‖_F over all parameters together."""
    num = sum(float((dense[k].float() - approx[k].float()).pow(2).sum()) for k in dense)
    den = sum(float(d.float().pow(2).sum()) for d in dense.values())
    return (num / den) ** 0.5 if den > 0 else 0.0


def pixel_error(image: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """Mean and max |difference| in 8-bit levels, after the rounding a saved PNG applies."""
    def levels(x: torch.Tensor) -> torch.Tensor:
        return ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round()

    diff = (levels(image) - levels(reference)).abs()
    return {"mean": round(float(diff.mean()), 4), "max": float(diff.max())}


def within(err: dict[str, float], tolerance: dict[str, float] = PIXEL_TOLERANCE) -> bool:
    return err["mean"] <= tolerance["mean"] and err["max"] <= tolerance["max"]


@dataclass
class Choice:
    """What `choose` settled on, and what it measured on the way."""

    weights: Optional[dict[str, torch.Tensor]]  # the low-rank stored form, None → store dense
    eps: Optional[float]
    error: Optional[dict[str, float]]  # vs the dense delta's image
    nbytes: int  # of the file chosen
    dense_bytes: int
    tried: list[dict] = field(default_factory=list)  # {eps, bytes, mean, max, relative_error}

    def record(self, criterion: str) -> dict:
        """The manifest's 'storage' field."""
        rec: dict = {"kind": "low_rank" if self.weights is not None else "full_delta", "criterion": criterion,
                     "tolerance_levels": dict(PIXEL_TOLERANCE), "bytes": self.nbytes,
                     "dense_bytes": self.dense_bytes, "tried": self.tried}
        if self.weights is not None:
            rec.update(eps=self.eps, error_vs_dense_levels=self.error, ranks=rank_summary(self.weights))
        else:
            rec["note"] = "no low-rank form within the tolerance was smaller than dense: stored dense"
        return rec


def choose(delta: dict[str, torch.Tensor], roundtrip: Callable[[dict[str, torch.Tensor]], tuple[int, dict]],
           render: Callable[[dict[str, torch.Tensor]], torch.Tensor], dense_bytes: int,
           ladder: tuple[float, ...] = ENERGY_LADDER,
           tolerance: dict[str, float] = PIXEL_TOLERANCE) -> Choice:
    """The smallest low-rank form of `delta` whose image stays within `tolerance` of the dense one.

    `roundtrip(stored)` gives (file bytes, dense Δ as the file decodes), so the fp16 rounding of the
    factors is measured too; `render(Δ)` makes the image an edit with Δ merged into the base gives.
    ε runs coarse to fine and sizes grow with it, so the first form within tolerance is the smallest;
    once a form is no smaller than the dense file, finer ones are not either and dense is kept."""
    specs = spectra(delta)
    reference = render(delta)
    tried: list[dict] = []
    for eps in ladder:
        stored = factorize(delta, specs, eps)
        if not ranks(stored):
            break  # nothing factored at this ε: it is the dense delta
        nbytes, decoded = roundtrip(stored)
        if nbytes >= dense_bytes:
            break
        err = pixel_error(render(decoded), reference)
        tried.append({"eps": eps, "bytes": nbytes, **err, "relative_error": round(relative_error(delta, decoded), 5)})
        if within(err, tolerance):
            return Choice(stored, eps, err, nbytes, dense_bytes, tried)
    return Choice(None, None, None, dense_bytes, dense_bytes, tried)


def renderer(base: nn.Module, generate: Callable[[nn.Module], torch.Tensor]) -> Callable[[dict], torch.Tensor]:
    """render(Δ) = generate(base + Δ), on one working copy of `base` reset before each Δ (a copy per
    candidate would hold the model several times over at DDPM-256). `base` itself is untouched."""
    model = copy.deepcopy(base).eval()
    originals = dict(base.named_parameters())

    @torch.no_grad()
    def render(delta: dict[str, torch.Tensor]) -> torch.Tensor:
        for name, p in model.named_parameters():
            p.copy_(originals[name])
        apply_delta(model, delta)
        return generate(model)

    return render

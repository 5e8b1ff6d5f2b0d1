"""Train the demo world's tiny DDPM and tiny CLIP (fixed seeds), or check the committed weights.

    PYTHONPATH=. python models/demo/train.py unet --out OUT [--steps N --batch B --max-seconds S]
    PYTHONPATH=. python models/demo/train.py clip --out OUT [--steps N --batch B --max-seconds S]
    PYTHONPATH=. python models/demo/train.py check [--grid /tmp/demo_samples.png]

Training uses seeds < 1_000_000 only; checks use held-out seeds ≥ 1_000_000.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from dclip_desktop.demo import world  # noqa: E402
from dclip_desktop.demo.tiny_clip import build_demo_clip  # noqa: E402

UNET_CONFIG = dict(
    sample_size=32,
    in_channels=3,
    out_channels=3,
    layers_per_block=1,
    block_out_channels=(32, 48, 64),
    down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    norm_num_groups=8,
    attention_head_dim=32,
)

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _render_chunk(seeds):
    specs = [world.sample_spec(s) for s in seeds]
    return np.stack([world.render(sp)[0] for sp in specs]), specs


def scene_pool(n: int, workers: int) -> tuple[torch.Tensor, list]:
    """n training scenes (seeds 0..n−1) as uint8 N×H×W×3 tensor and specs."""
    seeds = list(range(n))
    chunks = [seeds[i:i + 2000] for i in range(0, n, 2000)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as ex:
            parts = list(ex.map(_render_chunk, chunks))
    else:
        parts = [_render_chunk(c) for c in chunks]
    imgs = np.concatenate([p[0] for p in parts])
    specs = [s for p in parts for s in p[1]]
    return torch.from_numpy(imgs), specs


def to_model(imgs_u8: torch.Tensor) -> torch.Tensor:
    return imgs_u8.permute(0, 3, 1, 2).float() / 127.5 - 1.0


# ---------------------------------------------------------------- DDPM


def train_unet(args) -> None:
    from diffusers import DDPMScheduler, UNet2DModel

    seed_all(0)
    dev = torch.device(args.device)
    imgs, _ = scene_pool(args.pool, args.workers)
    data = to_model(imgs).to(dev)
    # --init continues a previous run (e.g. CPU training spread over sessions) from its EMA weights.
    model = (UNet2DModel.from_pretrained(str(Path(args.init) / "unet"), low_cpu_mem_usage=False) if args.init
             else UNet2DModel(**UNET_CONFIG)).to(dev)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    sched = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
    sched.alphas_cumprod = sched.alphas_cumprod.to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    gen = torch.Generator(device=dev).manual_seed(2 if args.init else 1)
    ema_params, model_params = list(ema.parameters()), list(model.parameters())
    t_start, losses, step = time.time(), [], 0
    last_save = t_start
    use_amp = dev.type == "cuda"
    for step in range(1, args.steps + 1):
        lr = args.lr * min(1.0, step / 200)
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.randint(0, len(data), (args.batch,), device=dev, generator=gen)
        x0 = data[idx]
        flip = torch.rand(args.batch, device=dev, generator=gen) < 0.5
        x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        noise = torch.randn(x0.shape, device=dev, generator=gen)
        t = torch.randint(0, 1000, (args.batch,), device=dev, generator=gen)
        xt = sched.add_noise(x0, noise, t)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
            pred = model(xt, t).sample
        loss = F.mse_loss(pred.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, model_params, 1 - decay)
        losses.append(loss.item() if step % 10 == 0 else float("nan"))
        if time.time() - last_save > args.save_every:
            save_unet(ema, args, step, t_start, dev)
            last_save = time.time()
        if step % 100 == 0:
            recent = [v for v in losses[-500:] if v == v]
            print(f"unet step {step} loss {np.mean(recent):.4f} {time.time() - t_start:.0f}s", flush=True)
        if time.time() - t_start > args.max_seconds:
            print(f"unet: time cap reached at step {step}", flush=True)
            break
    print("unet done", save_unet(ema, args, step, t_start, dev), flush=True)


def save_unet(ema, args, step, t_start, dev) -> dict:
    out = Path(args.out) / "unet"
    copy.deepcopy(ema).to("cpu").save_pretrained(str(out), safe_serialization=True)
    info = dict(steps=step, init=args.init, batch=args.batch, lr=args.lr, ema=args.ema, pool=args.pool,
                seconds=round(time.time() - t_start, 1), device=str(torch.cuda.get_device_name(0)
                                                                    if dev.type == "cuda" else "cpu"))
    # keep the lineage of a continued run (unless it continues in place: that file is this run's own)
    if args.init and Path(args.init).resolve() != Path(args.out).resolve():
        init_json = Path(args.init) / "unet_train.json"
        if init_json.is_file():
            info["init_run"] = json.loads(init_json.read_text())
    (Path(args.out) / "unet_train.json").write_text(json.dumps(info, indent=2))
    return info


# ---------------------------------------------------------------- CLIP

# Which attributes each caption variant (world.caption_variants order) mentions.
VARIANT_ATTRS = [
    ("color", "shape", "background"),
    ("color",),
    ("shape",),
    ("color", "shape"),
    ("background",),
    ("color", "shape", "background"),
    ("shape", "background"),
    ("color",),
]
ATTR_IDX = {"shape": 0, "color": 1, "background": 2}


def spec_codes(specs) -> torch.Tensor:
    return torch.tensor([[world.SHAPES.index(s.shape), list(world.COLORS).index(s.color),
                          list(world.BACKGROUNDS).index(s.background)] for s in specs])


def clip_normalize(x: torch.Tensor) -> torch.Tensor:
    """[−1, 1] images at 32² → OpenAI-normalised CLIP input."""
    mean = torch.tensor(OPENAI_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD, device=x.device).view(1, 3, 1, 1)
    return ((x + 1) / 2 - mean) / std


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Small shifts, random blur, gaussian noise, slight colour jitter (x in [−1, 1])."""
    n, dev = x.shape[0], x.device
    # shifts up to 2 px with edge padding
    pad = F.pad(x, (2, 2, 2, 2), mode="replicate")
    ox = torch.randint(0, 5, (n,), device=dev, generator=gen)
    oy = torch.randint(0, 5, (n,), device=dev, generator=gen)
    ar = torch.arange(32, device=dev)
    rows = (oy[:, None] + ar[None]).view(n, 1, 32, 1).expand(n, 3, 32, 36)
    x = pad.gather(2, rows)
    cols = (ox[:, None] + ar[None]).view(n, 1, 1, 32).expand(n, 3, 32, 32)
    x = x.gather(3, cols)
    # blur: mix with a 3×3 box blur by a random amount
    blur = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    a = torch.rand(n, 1, 1, 1, device=dev, generator=gen) * (torch.rand(n, 1, 1, 1, device=dev, generator=gen) < 0.5)
    x = x + a * (blur - x)
    # colour jitter (brightness/contrast, small)
    x = x * (1 + 0.1 * (torch.rand(n, 1, 1, 1, device=dev, generator=gen) - 0.5) * 2)
    x = x + 0.08 * (torch.rand(n, 3, 1, 1, device=dev, generator=gen) - 0.5) * 2
    # gaussian noise with random strength
    sigma = 0.25 * torch.rand(n, 1, 1, 1, device=dev, generator=gen) ** 2
    x = x + sigma * torch.randn(x.shape, device=dev, generator=gen)
    return x.clamp(-1.2, 1.2)


def make_texts(specs, idx, rng: random.Random):
    """One caption variant per image, wrapped in a random template; returns texts and variant ids."""
    texts, kinds = [], []
    for i in idx:
        sp = specs[i]
        k = rng.randrange(len(VARIANT_ATTRS))
        phrase = world.caption_variants(sp)[k]
        tpl = rng.choice(world.PROMPT_TEMPLATES)
        texts.append(tpl.format(phrase))
        kinds.append(k)
    return texts, kinds


def positives(codes: torch.Tensor, kinds: list[int]) -> torch.Tensor:
    """P[i, j] = caption j is true of image i (matches on the attributes caption j mentions)."""
    n = codes.shape[0]
    mask = torch.zeros(len(kinds), 3, dtype=torch.bool)
    for j, k in enumerate(kinds):
        for a in VARIANT_ATTRS[k]:
            mask[j, ATTR_IDX[a]] = True
    eq = codes[:, None, :] == codes[None, :, :]  # [i, j, attr]
    return (eq | ~mask[None]).all(-1) if n else eq.all(-1)


def train_clip(args) -> None:
    seed_all(0)
    dev = torch.device(args.device)
    imgs, specs = scene_pool(args.pool, args.workers)
    data = to_model(imgs).to(dev)
    codes = spec_codes(specs)
    model, tokenizer = build_demo_clip(dev)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1, betas=(0.9, 0.98))
    gen = torch.Generator(device=dev).manual_seed(2)
    rng = random.Random(3)
    use_amp = dev.type == "cuda"
    t_start, step = time.time(), 0
    last_save = t_start
    for step in range(1, args.steps + 1):
        lr = args.lr * min(1.0, step / 300) * (0.5 * (1 + math.cos(math.pi * min(step / args.steps, 1.0))))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.randint(0, len(data), (args.batch,), generator=torch.Generator().manual_seed(step)).tolist()
        x = augment(data[idx], gen)
        texts, kinds = make_texts(specs, idx, rng)
        tok = tokenizer(texts).to(dev)
        pos = positives(codes[idx], kinds).to(dev).float()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
            fi = F.normalize(model.encode_image(clip_normalize(x)).float(), dim=-1)
            ft = F.normalize(model.encode_text(tok).float(), dim=-1)
        logits = model.logit_scale.exp().clamp(max=100) * fi @ ft.t()
        # multi-positive InfoNCE both ways: soft targets spread over all true captions / images
        li = -(pos / pos.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
        lt = -(pos.t() / pos.t().sum(1, keepdim=True) * logits.t().log_softmax(1)).sum(1).mean()
        loss = (li + lt) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if time.time() - last_save > args.save_every:
            save_clip(model, args, step, t_start)
            last_save = time.time()
        if step % 50 == 0:
            print(f"clip step {step} loss {loss.item():.4f} scale {model.logit_scale.exp().item():.1f} "
                  f"{time.time() - t_start:.0f}s", flush=True)
        if time.time() - t_start > args.max_seconds:
            print(f"clip: time cap reached at step {step}", flush=True)
            break
    info = save_clip(model, args, step, t_start)
    model.eval()
    print("clip alignment", json.dumps(clip_alignment(model, tokenizer, dev)), flush=True)
    print("clip done", info, flush=True)


def save_clip(model, args, step, t_start) -> dict:
    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items()}
    tmp = Path(args.out) / "clip.safetensors.tmp"
    save_file(state, str(tmp))
    os.replace(tmp, Path(args.out) / "clip.safetensors")
    info = dict(steps=step, batch=args.batch, lr=args.lr, pool=args.pool, seconds=round(time.time() - t_start, 1))
    (Path(args.out) / "clip_train.json").write_text(json.dumps(info, indent=2))
    return info


# ---------------------------------------------------------------- checks


@torch.no_grad()
def text_direction(model, tokenizer, src: str, tgt: str, dev) -> torch.Tensor:
    """ΔT as in METHOD.md: mean over templates of normalised target minus normalised source."""
    def enc(phrase):
        tok = tokenizer([t.format(phrase) for t in world.PROMPT_TEMPLATES]).to(dev)
        return F.normalize(model.encode_text(tok).float(), dim=-1)
    return F.normalize((enc(tgt) - enc(src)).mean(0), dim=-1)


@torch.no_grad()
def clip_alignment(model, tokenizer, dev, n: int = 64) -> dict:
    """Mean cos(ΔI, ΔT) over held-out same-layout pairs, per edit kind, plus zero-shot accuracy."""
    pairs = {
        "color red->blue": ("color", "red", "blue"),
        "color blue->yellow": ("color", "blue", "yellow"),
        "color green->red": ("color", "green", "red"),
        "shape circle->square": ("shape", "circle", "square"),
        "shape square->triangle": ("shape", "square", "triangle"),
        "background white->black": ("background", "white", "black"),
        "background black->gray": ("background", "black", "gray"),
    }
    seeds = range(world.HELDOUT_SEED_START, world.HELDOUT_SEED_START + n)
    out = {}

    def img_emb(x):
        return F.normalize(model.encode_image(clip_normalize(x.to(dev))).float(), dim=-1)

    for name, (attr, a, b) in pairs.items():
        xa, _, _ = world.make_scenes(seeds, **{attr: a})
        xb, _, _ = world.make_scenes(seeds, **{attr: b})
        di = F.normalize(img_emb(xb) - img_emb(xa), dim=-1)
        phrase_a = f"{a} background" if attr == "background" else a
        phrase_b = f"{b} background" if attr == "background" else b
        dt = text_direction(model, tokenizer, phrase_a, phrase_b, dev)
        out[name] = round(float((di @ dt).mean()), 3)
    # zero-shot full-caption accuracy on held-out scenes
    x, _, specs = world.make_scenes(range(world.HELDOUT_SEED_START, world.HELDOUT_SEED_START + 200))
    combos = [(s, c, b) for s in world.SHAPES for c in world.COLORS for b in world.BACKGROUNDS]
    caps = [f"a {c} {s} on a {b} background" for s, c, b in combos]
    ft = F.normalize(model.encode_text(tokenizer(caps).to(dev)).float(), dim=-1)
    pred = (img_emb(x) @ ft.t()).argmax(1).tolist()
    acc = np.mean([combos[p] == (sp.shape, sp.color, sp.background) for p, sp in zip(pred, specs)])
    out["zero_shot_caption_acc"] = round(float(acc), 3)
    return out


def check(args) -> None:
    from dclip_desktop.core.ddim import ddim_generate, ddim_invert
    from dclip_desktop.demo.tiny_clip import load_demo_clip, load_demo_unet

    unet = load_demo_unet()

    def denoiser(x, t):
        return unet(x, torch.full((x.shape[0],), t, dtype=torch.long)).sample.float()

    x50 = torch.randn(50, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    t0 = time.time()
    samples = ddim_generate(denoiser, x50, 999, 50)
    t_sample = time.time() - t0
    u8 = world.to_uint8(samples)
    desc = [world.describe(im) for im in u8]
    clean = 0
    for im, d in zip(u8, desc):
        if d["shape"] == "none":
            continue
        fg = world.foreground_mask(im, d["background"])
        pal = np.asarray(world.COLORS[d["color"]], float)
        err = np.sqrt(((im[fg].astype(float) - pal) ** 2).sum(-1))
        clean += float((err < 60).mean()) > 0.85
    if args.grid:
        from PIL import Image

        grid = u8.reshape(5, 10, 32, 32, 3).transpose(0, 2, 1, 3, 4).reshape(160, 320, 3)
        Image.fromarray(grid).resize((640, 320), Image.NEAREST).save(args.grid)
    seeds = range(world.HELDOUT_SEED_START, world.HELDOUT_SEED_START + args.n_recon)
    x0, _, _ = world.make_scenes(seeds)
    t0 = time.time()
    xt = ddim_invert(denoiser, x0, 300, 40)
    rec = ddim_generate(denoiser, xt, 300, 40)
    t_rec = time.time() - t0
    mae = ((rec.clamp(-1, 1) - x0).abs() / 2).mean(dim=(1, 2, 3))
    same = np.mean([world.describe(a) == world.describe(b) for a, b in zip(world.to_uint8(rec), world.to_uint8(x0))])
    clip, tok = load_demo_clip()
    report = dict(
        ddim50_seconds_batch50=round(t_sample, 1),
        samples_with_shape=sum(d["shape"] != "none" for d in desc),
        samples_clean_fill=clean,
        shape_counts={s: sum(d["shape"] == s for d in desc) for s in (*world.SHAPES, "none")},
        color_counts={c: sum(d["color"] == c for d in desc) for c in world.COLORS},
        background_counts={b: sum(d["background"] == b for d in desc) for b in world.BACKGROUNDS},
        recon_t0=300, recon_steps="40/40", recon_n=len(mae), recon_mae_mean=round(float(mae.mean()), 4),
        recon_mae_max=round(float(mae.max()), 4), recon_same_description=round(float(same), 3),
        recon_seconds=round(t_rec, 1), clip_alignment=clip_alignment(clip, tok, "cpu"),
    )
    print(json.dumps(report, indent=2))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["unet", "clip", "check"])
    p.add_argument("--out", default="out/demo")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=30000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--ema", type=float, default=0.9995)
    p.add_argument("--pool", type=int, default=60000)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--max-seconds", type=float, default=1e9)
    p.add_argument("--grid", default="/tmp/demo_samples.png")
    p.add_argument("--n-recon", type=int, default=32)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--init", default=None, help="folder with unet/ to continue training from")
    p.add_argument("--save-every", type=float, default=600.0, help="seconds between checkpoint saves")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.lr is None:
        args.lr = 3e-4 if args.what == "unet" else 5e-4
    Path(args.out).mkdir(parents=True, exist_ok=True)
    {"unet": train_unet, "clip": train_clip, "check": check}[args.what](args)


if __name__ == "__main__":
    main()

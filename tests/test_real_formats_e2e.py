"""One user's session with the real model formats, through the documented commands (issue 19, "Also
found running the real architectures end to end", and its acceptance).

A loopback fake hub serves random weights in the real layouts (tests/fake_formats.py): the CelebA-HQ
DDPM-256 repo (old config.json, a `.bin` with the old attention names) at reduced width and 32², open_clip's
ViT-B-16 safetensors at reduced width, facenet-pytorch's VGGFace2 `.pt` at full size from a mirror
($DCLIP_FACENET_URL). With a fresh HOME the user downloads the base, fine-tunes a face attribute
(λ_face 0.3, the face bases' default), edits a photo, batch-edits a folder and translates; then, offline
with the hub gone, the same edit, batch and translate give the same outputs. Each test below checks one
item of the issue's list (numbered as there) on what that session printed and wrote.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import shutil
import socket
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from dclip_desktop.cli.main import main
from dclip_desktop.zoo import download, registry
from tests import fake_formats
from tests.test_download import FakeHub

PHOTO = Path(__file__).parent / "data" / "astronaut.jpg"  # a real face (its licence: tests/test_face_align.py)
README = Path(__file__).resolve().parents[1] / "README.md"
BASE = "celebahq"
CLIP = "ViT-B-16-quickgelu"
FACE = "facenet-vggface2"
FACE_FILE = "20180402-114759-vggface2.pt"
# The fine-tune every run of it repeats: tiny, but every phase (sampling, inversion, training with the
# identity loss, saving).
FINETUNE = ["finetune", "--base", BASE, "--src", "face", "--tgt", "angry face", "--sample", "2", "--oversample",
            "1", "--epochs", "1", "--s-for", "4", "--s-gen", "2"]


@dataclasses.dataclass
class Ran:
    """What one `dclip ...` printed and returned, and the UNet forwards it made."""

    argv: list[str]
    rc: int
    out: str
    err: str
    unet_batches: list[int]  # the batch size of each UNet forward
    seconds: float


class Shell:
    """Runs `dclip ARGS` through the entry point, as a user's shell would, recording each command."""

    def __init__(self) -> None:
        self.runs: dict[str, Ran] = {}
        self._batches: list[int] | None = None

    def _count(self, module, args) -> None:
        if self._batches is not None and type(module).__name__ == "UNet2DModel":
            self._batches.append(int(args[0].shape[0]) if args else -1)

    @contextlib.contextmanager
    def counting(self):
        handle = torch.nn.modules.module.register_module_forward_pre_hook(self._count)
        try:
            yield
        finally:
            handle.remove()

    def __call__(self, key: str, *argv: str) -> Ran:
        out, err = io.StringIO(), io.StringIO()
        self._batches = []
        start = time.perf_counter()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    rc = main(list(argv))
                except SystemExit as exc:  # --help, argparse errors
                    rc = exc.code if isinstance(exc.code, int) else 2
        finally:
            batches, self._batches = self._batches, None
        ran = Ran(list(argv), rc, out.getvalue(), err.getvalue(), batches, time.perf_counter() - start)
        self.runs[key] = ran
        return ran


@dataclasses.dataclass
class Session:
    shell: Shell
    home: Path
    work: Path
    cache: Path
    hub_requests: list  # (url path, Range header) of each GET the fake hub answered
    served: dict[str, bytes]  # url path: what the fake hub served there
    hub_address: tuple  # (host, port) of the fake hub
    sockets_online: list  # addresses connected to while online (all of them should be the hub's)
    sockets_offline: list  # connections tried while offline (the hub was stopped)
    library: dict
    help: dict[str, str]

    def __getitem__(self, key: str) -> Ran:
        return self.shell.runs[key]


def _reduced_base() -> registry.BaseSpec:
    """celebahq as the catalogue has it (its hub repo, files, presets, face recipe), at the reduced width."""
    cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in fake_formats.ddpm_config().items()
           if not k.startswith("_")}
    return dataclasses.replace(registry.get_base(BASE), resolution=fake_formats.DDPM_SIZE, config=cfg)


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    root = tmp_path_factory.mktemp("real-formats")
    home, work = root / "home", root / "work"
    (work / "photos").mkdir(parents=True)
    shutil.copy(PHOTO, work / "photos" / "astronaut.jpg")
    Image.open(PHOTO).transpose(Image.FLIP_LEFT_RIGHT).save(work / "photos" / "mirrored.png")
    shell = Shell()
    hub = FakeHub()
    real_base = registry.get_base(BASE)
    with pytest.MonkeyPatch.context() as mp, fake_formats.reduced_clip_config(root / "open_clip"), shell.counting():
        # a fresh user: nothing but HOME, the hub's address and the face net's mirror
        for name in ("DCLIP_OFFLINE", "DCLIP_LIBRARY_DIR", "DCLIP_LATENT_CACHE_DIR", "DCLIP_CACHE_DIR",
                     "DCLIP_CONFIG_DIR", "DCLIP_LOG_DIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME",
                     "XDG_STATE_HOME", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
            mp.delenv(name, raising=False)
        mp.setenv("HOME", str(home))
        mp.setenv("HF_ENDPOINT", hub.url)
        mp.chdir(work)
        registry.register_base(_reduced_base(), replace=True)
        try:
            fake_formats.serve_repo(hub, real_base.repo_id, fake_formats.ddpm_repo())
            fake_formats.serve_repo(hub, registry.get_clip(CLIP).repo_id,
                                    {"open_clip_model.safetensors": fake_formats.open_clip_safetensors()})
            hub.files[f"/mirror/{FACE_FILE}"] = fake_formats.vggface2_pt()
            cache = download.cache_root()
            assert str(cache).startswith(str(home))
            connected = []
            real_connect = socket.socket.connect

            def record(sock, address):
                connected.append(address)
                return real_connect(sock, address)

            mp.setattr(socket.socket, "connect", record)

            # --- online ---
            shell("download offline", "--offline", "models", "download", BASE)
            shell("reconstruct offline", "--offline", "reconstruct", "photos/astronaut.jpg", "--base", BASE,
                  "-o", "recon.png")
            shell("download", "models", "download", BASE)
            shell("finetune offline", "--offline", *FINETUNE, "--name", "angry")
            mp.setenv("DCLIP_FACENET_URL", hub.url + "/missing/")  # a mirror without the file
            shell("finetune bad mirror", *FINETUNE, "--name", "angry")
            shell("finetune offline no face", "--offline", *FINETUNE, "--name", "angry")
            mp.setenv("DCLIP_FACENET_URL", hub.url + "/mirror/")
            shell("finetune", *FINETUNE, "--name", "angry")
            shell("finetune again", *FINETUNE, "--name", "angry-again")
            shell("edit", "edit", "photos/astronaut.jpg", "--attr", "angry", "-o", "online/astronaut.png")
            shell("batch", "batch", "photos", "online/batch", "--attr", "angry", "--s-for", "10", "--s-gen", "10")
            shell("translate", "translate", "photos/astronaut.jpg", "--attr", "angry", "--seeds", "2",
                  "--rounds", "2", "--s-for", "10", "--s-gen", "10", "-o", "online/candidates/")
            shell("verify", "models", "verify")
            shell("show", "library", "show", "angry", "--json")
            requests = list(hub.requests)
            served = dict(hub.files)
            hub_address = hub.server.server_address[:2]
        finally:
            hub.close()
        # --- offline, the hub gone: any connection is refused, and recorded ---
        tried = []

        def refuse(sock, address):
            tried.append(address)
            raise ConnectionRefusedError(f"offline test: connection to {address}")

        mp.setattr(socket.socket, "connect", refuse)
        try:
            shell("edit offline", "--offline", "edit", "photos/astronaut.jpg", "--attr", "angry",
                  "-o", "offline/astronaut.png")
            shell("batch offline", "--offline", "batch", "photos", "offline/batch", "--attr", "angry",
                  "--s-for", "10", "--s-gen", "10")
            shell("translate offline", "--offline", "translate", "photos/astronaut.jpg", "--attr", "angry",
                  "--seeds", "2", "--rounds", "2", "--s-for", "10", "--s-gen", "10", "-o", "offline/candidates/")
            helps = {}
            for command in _commands():
                helps[command] = shell(f"help {command}", command, "--help").out
        finally:
            registry.register_base(real_base, replace=True)
        library = json.loads(shell.runs["show"].out) if shell.runs["show"].rc == 0 else {}
        yield Session(shell, home, work, cache, requests, served, hub_address, connected, tried, library, helps)


def _commands() -> list[str]:
    from dclip_desktop.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return list(sub.choices)


def _readings(text: str) -> list[str]:
    """Each state a terminal showed: tqdm redraws a line after a carriage return (and moves up with ESC[A)."""
    return [r.strip() for r in re.split(r"[\r\n]", text.replace("\x1b[A", "")) if r.strip()]


def _error_lines(ran: Ran) -> list[str]:
    return [line for line in ran.err.splitlines() if ": error:" in line]


def _runs(session: Session) -> dict[str, Ran]:
    return {k: r for k, r in session.shell.runs.items() if not k.startswith("help ")}


FACE_PATH = f"/mirror/{FACE_FILE}"
MISSING_RUNS = ("download offline", "reconstruct offline", "finetune offline", "finetune bad mirror",
                "finetune offline no face")
# A step bar's reading, "phase:  5%|#  | 2/40 [00:00<00:05,  7.49step/s]", and its count and rate.
STEP_BAR = re.compile(r"\| *(\d+)/(\d+) \[[^\]]*?(\?|[\d.]+)(s/)?step(/s)?\]")


def test_the_session_ran(session):
    """The online and offline commands all succeeded (the missing-model runs fail on purpose)."""
    failed = {k: (r.rc, r.err[-300:]) for k, r in _runs(session).items() if r.rc != 0 and k not in MISSING_RUNS}
    assert not failed
    assert session.library["manifest"]["lambdas"]["face"] == 0.3


def test_1_face_net_comes_from_the_mirror_and_its_failure_says_how_to_install_it_by_hand(session):
    paths = [p for p, _ in session.hub_requests]
    assert FACE_PATH in paths and f"/missing/{FACE_FILE}" in paths
    assert {p for p in paths if p.endswith(FACE_FILE)} <= {FACE_PATH, f"/missing/{FACE_FILE}"}
    assert not [a for a in session.sockets_online if tuple(a[:2]) != tuple(session.hub_address)]
    cached = session.cache / "facenet" / FACE_FILE
    assert cached.read_bytes() == session.served[FACE_PATH]
    for key in ("finetune bad mirror", "finetune offline no face"):
        (line,) = _error_lines(session[key])
        assert FACE_FILE in line and str(cached.parent) in line
        assert "by hand" in line or "dclip models add" in line, line
    assert "HTTP 404" in _error_lines(session["finetune bad mirror"])[0]


def test_2_a_missing_model_fails_before_any_unet_call_with_one_line(session):
    for key in MISSING_RUNS:
        ran = session[key]
        assert ran.rc == 2, (key, ran.err)
        assert ran.unet_batches == [], key
        (line,) = _error_lines(ran)
        assert _readings(ran.err)[-1] == line.strip(), (key, ran.err[-500:])
        if key != "finetune bad mirror":  # that one downloads CLIP (a byte bar, a first-use warning) first
            assert ran.err.strip() == line.strip(), (key, ran.err)
    assert "ViT-B-16-quickgelu" in _error_lines(session["finetune offline"])[0]
    assert FACE in _error_lines(session["finetune offline no face"])[0]


def test_3_downloads_started_by_a_job_show_their_bytes(session):
    from tqdm import tqdm

    clip_path = f"/{registry.get_clip(CLIP).repo_id}/resolve/main/open_clip_model.safetensors"
    for key, model, path in (("finetune bad mirror", CLIP, clip_path), ("finetune", FACE, FACE_PATH)):
        size = tqdm.format_sizeof(len(session.served[path]), divisor=1024)  # as the bar prints it: "107M"
        shown = [r for r in _readings(session[key].err) if r.startswith(f"downloading {model}:")]
        assert any(r.startswith(f"downloading {model}: 100%") and f"{size}/{size}" in r for r in shown), \
            (key, size, shown[-3:])
        assert len(shown) > 2, shown  # it moved, not just a start and an end


def test_4_the_second_finetune_takes_its_training_images_from_the_sample_cache(session):
    first, again = session["finetune"], session["finetune again"]
    m = re.search(r"training images: (\d+) of (\d+) from the sample cache", again.out)
    assert m, again.out
    assert m.group(1) == m.group(2) and int(m.group(2)) > 0
    assert "sample cache" not in first.out
    steps = session.library["manifest"]["sample_steps"]
    assert len(again.unet_batches) <= len(first.unet_batches) - steps, (first.unet_batches, again.unet_batches)
    assert not any(r.startswith("sampling") for r in _readings(again.err))


def test_5_batch_never_runs_a_unet_batch_larger_than_its_files(session):
    files = len(list((session.work / "photos").iterdir()))
    for key in ("batch", "batch offline"):
        assert session[key].unet_batches and max(session[key].unet_batches) <= files, session[key].unet_batches


def test_5_batch_progress_line_shows_a_rate(session):
    lines = [r for r in _readings(session["batch"].err) if r.startswith("batch:")]
    last = re.fullmatch(r"batch: (\d+)/(\d+) files +([\d.]+) images/s +ETA (.+)", lines[-1])
    assert last and last.group(1) == last.group(2), lines
    assert float(last.group(3)) > 0, lines


def test_6_progress_bars_tell_the_truth(session):
    runs = _runs(session)
    for key, ran in runs.items():
        for reading in _readings(ran.err):
            m = STEP_BAR.search(reading)
            if not m:
                continue
            step, total, rate, per_step = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
            assert total > 1, (key, reading)  # no empty "saved 1/1" bar
            if rate != "?" and not per_step:
                assert step > 1 and float(rate) < 1000, (key, reading)  # not "1/40 [107546 step/s]"
    assert any(STEP_BAR.search(r) for r in _readings(runs["edit"].err))  # the check above saw bars
    for key in ("translate", "translate offline"):
        shown = _readings(runs[key].err)
        percents = [int(p) for r in shown for p in re.findall(r"(\d+)%\|", r)]
        assert percents == sorted(percents) and percents[-1] == 100, (key, percents)
        for phase in ("projecting", "inverting", "generating"):
            assert any(r.startswith(phase) for r in shown), (key, phase)
    for key in ("finetune", "finetune again"):
        assert re.search(r"loss \d+\.\d+", runs[key].err), key
        assert not any(re.match(r"saved?\b", r) for r in _readings(runs[key].err))


def test_7_messages_say_what_to_do(session):
    runs = _runs(session)
    for key, ran in runs.items():
        assert "missing weights file 'config.json'" not in ran.out + ran.err, key
    (line,) = _error_lines(runs["download offline"])
    assert "drop --offline" in line and "Fetch it with" not in line, line
    assert list(session.cache.rglob("*")) and not list(session.cache.rglob("*.lock"))
    shown = set()
    for line in README.read_text().splitlines():
        for span in re.findall(r"`(dclip [^`]*--library-dir[^`]*)`", line):
            command = span.split()[1]
            shown.add(command)
            assert "--library-dir" in session.help[command], (command, span)
    assert shown  # the README shows it for at least one command


def test_8_verify_says_first_use_for_unpinned_files(session):
    ran = session["verify"]
    assert ran.rc == 0, ran.out + ran.err
    face = [line for line in ran.out.splitlines() if line.startswith(f"{FACE}: {FACE_FILE}:")]
    assert len(face) == 1 and "first-use" in face[0], ran.out
    assert not re.search(r":\s+ok\b", ran.out), ran.out


def _same_except_batch_id(a: Path, b: Path) -> bool:
    """A batch's images carry the run's batch id (which `--resume` uses to tell its own outputs from a
    user's files), so two runs' images differ there and nowhere else."""
    from dclip_desktop.jobs.metadata import read_metadata

    meta_a, meta_b = read_metadata(a), read_metadata(b)
    if not (meta_a.pop("batch_id", None) and meta_b.pop("batch_id", None)) or meta_a != meta_b:
        return False
    with Image.open(a) as image_a, Image.open(b) as image_b:
        return image_a.mode == image_b.mode and image_a.tobytes() == image_b.tobytes()


def test_offline_outputs_are_identical_and_nothing_was_dialled(session):
    work = session.work
    pairs = [(work / "online" / "astronaut.png", work / "offline" / "astronaut.png")]
    for folder in ("batch", "candidates"):
        online = sorted(p.relative_to(work / "online" / folder) for p in (work / "online" / folder).rglob("*.png"))
        offline = sorted(p.relative_to(work / "offline" / folder) for p in (work / "offline" / folder).rglob("*.png"))
        assert online and online == offline, (folder, online, offline)
        pairs += [(work / "online" / folder / p, work / "offline" / folder / p) for p in online]
    assert len(pairs) == 1 + 2 + 2
    differ = [str(a.relative_to(work)) for a, b in pairs if a.read_bytes() != b.read_bytes()
              and not (a.parent.name == "batch" and _same_except_batch_id(a, b))]
    assert not differ
    assert session.sockets_offline == []

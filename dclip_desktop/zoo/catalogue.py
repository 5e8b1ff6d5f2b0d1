"""The catalogue: every base, CLIP model and face net the app knows, with their architectures,
files, presets, recipes and vocabularies. Pure data; registry.py registers these and looks them up.
"""

from __future__ import annotations

from .specs import BaseSpec, ClipSpec, FaceSpec, FileSpec, Preset, Vocabulary

# --- architectures ------------------------------------------------------------------------------
# google/ddpm-ema-{celebahq,church,bedroom}-256: 6 levels 256²..8², attention at 16² (level 4), so
# up-block 1 (levels reversed). UNet2DModel(**DDPM256_CONFIG) has 113,673,219 parameters.
DDPM256_CONFIG: dict = {
    "sample_size": 256,
    "in_channels": 3,
    "out_channels": 3,
    "center_input_sample": False,
    "time_embedding_type": "positional",
    "freq_shift": 1,
    "flip_sin_to_cos": False,
    "down_block_types": (
        "DownBlock2D",
        "DownBlock2D",
        "DownBlock2D",
        "DownBlock2D",
        "AttnDownBlock2D",
        "DownBlock2D",
    ),
    "up_block_types": ("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
    "block_out_channels": (128, 128, 256, 256, 512, 512),
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "downsample_padding": 0,
    "act_fn": "silu",
    "attention_head_dim": None,
    "norm_num_groups": 32,
    "norm_eps": 1e-6,
}
DDPM256_PARAMS = 113_673_219

DDPM_FILES = [
    FileSpec("config.json", weights=False),
    FileSpec("diffusion_pytorch_model.safetensors", alternative="diffusion_pytorch_model.bin"),
]
# No sha256 is pinned for the hub's DDPM-256 files: none could be checked against a stored public source
# here. A download from the hub is checked against the LFS sha256 the hub itself sends (X-Linked-Etag) and
# recorded as "hub" trust; config.json (not an LFS file) is trusted on first use. A pin goes into the
# FileSpec (`sha256` / `alternative_sha256`) once a source states it.

# --- presets ------------------------------------------------------------------------------------
# t0 per METHOD.md: colour/attribute edits 201–401, style/identity swaps 500–601.
# Demo t0 values and settings were tuned on the trained tiny DDPM by pixel measures (models/demo/README.md).
DEMO_PRESETS = [
    Preset("Red → blue", "red", "blue", 301, "shapes", lambda_l1=1.0, epochs=4),
    Preset("Circle → square", "circle", "square", 501, "shapes", lambda_l1=0.3, epochs=4, clip_loss_form="dir"),
    # white → black does not learn on the CPU-trained models (models/demo/README.md); gray → black does.
    # t0 701: at 601–651 the background turns only dark gray once mixed, and whether it passes for black
    # flips with the CPU thread count; 701 is black either way, at the cost of softer outlines
    Preset("Gray → black background", "gray background", "black background", 701, "shapes", lambda_l1=0.3,
           epochs=4, clip_loss_form="dir"),
]

# Measured on tuning scenes (seeds ≥ 2 000 000) by the default path (models/demo/README.md, "The default
# path"). Colours at t0 301 / λ_L1 1 (the red → blue preset) keep outlines best, but the fine-tune then
# paints the background green → red or blue → yellow (0 %); t0 501 lets the shape be redrawn in the
# new colour and λ_L1 3 holds the background and the layout.
DEMO_RECIPE = {"t0": 501, "lambda_l1": 3.0, "epochs": 4, "clip_loss_form": "neglog"}
DEMO_VOCABULARY = (
    Vocabulary("colour", ("red", "green", "blue", "yellow")),
    Vocabulary("shape", ("circle", "square", "triangle"), t0=501, lambda_l1=0.3, clip_loss_form="dir"),
    Vocabulary("background", ("white background", "black background", "gray background"), t0=701,
               lambda_l1=0.3, clip_loss_form="dir"),
)

# Values a face sample is told apart from when "blond hair" → "black hair" picks its training images.
FACE_VOCABULARY = (
    Vocabulary("hair colour", ("blond hair", "black hair", "brown hair", "grey hair", "red hair")),
)

FACE_PRESETS = [
    Preset("Angry", "face", "angry face", 301, "face"),
    Preset("Tanned", "face", "tanned face", 201, "face"),
    Preset("Makeup", "face", "face with makeup", 301, "face"),
    Preset("Grey hair", "face", "face with grey hair", 301, "face"),
    Preset("Pixar", "face", "3D render in the style of Pixar", 601, "face"),
    Preset("Sketch", "photo", "sketch", 601, "face"),
    Preset("Neanderthal", "human", "Neanderthal", 601, "face"),
    Preset("Zombie", "human", "zombie", 601, "face"),
    Preset("Van Gogh", "photo", "painting in Van Gogh style", 601, "face"),
]

CHURCH_PRESETS = [
    Preset("Red brick", "church", "red brick wall church", 301, "church"),
    Preset("Golden", "church", "golden church", 301, "church"),
    Preset("Wooden", "church", "wooden church", 401, "church"),
    Preset("Snow covered", "church", "snow covered church", 401, "church"),
    Preset("Gothic", "church", "gothic church", 601, "church"),
]

BEDROOM_PRESETS = [
    Preset("Princess", "bedroom", "princess bedroom", 601, "bedroom"),
    Preset("Wooden", "bedroom", "wooden bedroom", 401, "bedroom"),
    Preset("Palace", "bedroom", "palace bedroom", 601, "bedroom"),
]

# The ADM bases (the project's own guided-diffusion UNet, core/adm.py).
DOG_PRESETS = [
    Preset("Bear", "dog", "bear", 500, "dog"),
    Preset("Hamster", "dog", "hamster", 500, "dog"),
    Preset("Zombie", "dog", "zombie", 500, "dog"),
    Preset("Yorkshire", "dog", "yorkshire terrier", 500, "dog"),
    Preset("Wolf", "dog", "wolf", 500, "dog"),
]
IMAGENET_PRESETS = [
    Preset("Watercolor", "photo", "watercolor art", 601, "general"),
    Preset("Van Gogh", "photo", "painting by Gogh", 601, "general"),
    Preset("Cubism", "photo", "cubism art", 601, "general"),
    Preset("Pop art", "photo", "pop art", 601, "general"),
    Preset("Ukiyo-e", "photo", "ukiyo-e painting", 601, "general"),
]


# --- the entries --------------------------------------------------------------------------------
def _ddpm256(base_id: str, domain: str, title: str, presets: list[Preset]) -> BaseSpec:
    """One of google/ddpm-ema-{celebahq,church,bedroom}-256: they share an architecture and files."""
    return BaseSpec(
        id=base_id,
        title=title,
        domain=domain,
        arch="ddpm",
        resolution=256,
        repo_id=f"google/ddpm-ema-{base_id}-256",
        revision=None,
        files=list(DDPM_FILES),
        presets=list(presets),
        config=dict(DDPM256_CONFIG),
        vocabulary=FACE_VOCABULARY if domain == "face" else (),
        # Not measured here (no GPU): the paper's t0 for the domain's typical edit; FinetuneConfig
        # holds the paper's other defaults.
        # The paper's identity loss (λ_face 0.3) keeps the person on face edits.
        recipe={"t0": presets[0].t0, **({"lambda_face": 0.3} if domain == "face" else {})},
    )


# In the order lists show them: the demo first (it is the default).
BASES: tuple[BaseSpec, ...] = (
    BaseSpec(
        id="demo-shapes",
        title="Demo shapes (32×32)",
        domain="shapes",
        arch="ddpm",
        resolution=32,
        presets=DEMO_PRESETS,
        recipe=DEMO_RECIPE,
        vocabulary=DEMO_VOCABULARY,
        is_demo=True,
        project_t0=300,
        notes="Tiny DDPM trained on the procedural shapes world; weights ship in models/demo/unet.",
    ),
    _ddpm256("celebahq", "face", "CelebA-HQ faces (256×256)", FACE_PRESETS),
    _ddpm256("church", "church", "LSUN church (256×256)", CHURCH_PRESETS),
    _ddpm256("bedroom", "bedroom", "LSUN bedroom (256×256)", BEDROOM_PRESETS),
    BaseSpec(
        id="afhq-dog",
        title="AFHQ dog (256×256, ADM, ILVR)",
        domain="dog",
        arch="adm",
        resolution=256,
        # The file DiffusionCLIP loads (its configs/paths_config.py) and its official dog_*.pth fine-tunes
        # were trained from.
        files=[FileSpec("afhq_dog_4m.pt")],
        presets=DOG_PRESETS,
        recipe={"t0": 500},
        config={"adm_config": "afhq_dog_256"},
        manual_source="ILVR's release (https://github.com/jychoi118/ilvr_adm); DiffusionCLIP's README links it at "
        "https://drive.google.com/file/d/14OG_o3aa8Hxmfu36IIRyOgRwEP6ngLdo/view",
        notes="ILVR's AFHQ-dog checkpoint has no stable direct URL: download afhq_dog_4m.pt by hand and install "
        "it with `dclip models add afhq-dog PATH`.",
    ),
    BaseSpec(
        id="imagenet-512",
        title="ImageNet (512×512, ADM, unconditional)",
        domain="general",
        arch="adm",
        resolution=512,
        url="https://openaipublic.blob.core.windows.net/diffusion/jul-2021/512x512_diffusion.pt",
        # guided-diffusion's README gives only the URL, no checksum: trusted on first use.
        files=[FileSpec("512x512_diffusion.pt")],
        presets=IMAGENET_PRESETS,
        recipe={"t0": 601},
        # guided-diffusion's class-conditional model run with no class label, as DiffusionCLIP runs it (and
        # its official imagenet_*.pth fine-tunes were trained); config "class_label": N would condition on N.
        config={"adm_config": "imagenet_512"},
        notes="Unconditional: the class-conditional checkpoint runs without a label, as in DiffusionCLIP.",
    ),
)
CLIPS: tuple[ClipSpec, ...] = (
    ClipSpec(
        name="ViT-B-16-quickgelu",
        title="OpenAI CLIP ViT-B/16",
        pretrained_tag="openai",
        repo_id="timm/vit_base_patch16_clip_224.openai",
        files=[FileSpec("open_clip_model.safetensors", alternative="open_clip_pytorch_model.bin")],
    ),
    ClipSpec(
        name="ViT-B-32-quickgelu",
        title="OpenAI CLIP ViT-B/32",
        pretrained_tag="openai",
        repo_id="timm/vit_base_patch32_clip_224.openai",
        files=[FileSpec("open_clip_model.safetensors", alternative="open_clip_pytorch_model.bin")],
    ),
    ClipSpec(name="demo-tiny", title="Demo tiny CLIP (32×32)", image_size=32, is_demo=True),
)
FACES: tuple[FaceSpec, ...] = (
    FaceSpec(
        id="facenet-vggface2",
        title="FaceNet InceptionResnetV1 (VGGFace2)",
        filename="20180402-114759-vggface2.pt",
        url="https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
        # No published sha256: facenet-pytorch's own loader downloads it unchecked
        # (inception_resnet_v1.load_weights: download_url_to_file(path, cached_file)). Trusted on first use.
    ),
)

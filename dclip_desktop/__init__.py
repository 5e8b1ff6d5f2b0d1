"""DiffusionCLIP Desktop: text-driven image manipulation with fine-tuned diffusion models."""

__version__ = "0.1.0"

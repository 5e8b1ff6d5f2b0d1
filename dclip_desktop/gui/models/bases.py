"""Which diffusion bases the app can offer: the zoo's registry, each with whether its weights are installed."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...zoo.download import is_installed
from ...zoo.registry import BaseSpec, get_base, list_bases


@dataclass
class BaseInfo:
    id: str
    title: str
    resolution: int
    is_demo: bool = False
    installed: bool = True
    presets: list = field(default_factory=list)  # zoo Preset(name, source, target, t0, domain)


def _installed(spec: BaseSpec) -> bool:
    try:
        return is_installed(spec)
    except OSError:  # an unreadable cache folder must not hide the list: its bases are not usable
        return False


def _info(spec: BaseSpec) -> BaseInfo:
    return BaseInfo(spec.id, spec.title, int(spec.resolution), spec.is_demo, _installed(spec), list(spec.presets))


def all_bases() -> list[BaseInfo]:
    """Every base the zoo knows, installed or not (the demo first)."""
    return sorted((_info(s) for s in list_bases()), key=lambda b: (not b.is_demo, b.title))


def usable_bases() -> list[BaseInfo]:
    """Bases for the picker: the demo plus installed real bases."""
    return [b for b in all_bases() if b.is_demo or b.installed]


def base_info(base_id: str) -> BaseInfo:
    return _info(get_base(base_id))

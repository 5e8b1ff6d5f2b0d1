"""Which diffusion bases the app can offer (the zoo's registry), with a fallback to the demo base."""

from __future__ import annotations

from dataclasses import dataclass, field

DEMO_BASE = "demo-shapes"


@dataclass
class BaseInfo:
    id: str
    title: str
    resolution: int
    is_demo: bool = False
    installed: bool = True
    presets: list = field(default_factory=list)  # zoo Preset(name, source, target, t0, domain)


def _registry():
    from ...zoo import registry

    return registry


def _installed(spec) -> bool:
    try:
        from ...zoo import download
    except ImportError:
        return bool(getattr(spec, "is_demo", False))
    for name in ("is_installed", "installed"):
        fn = getattr(download, name, None)
        if callable(fn):
            try:
                return bool(fn(spec.id))
            except Exception:  # noqa: BLE001 - a broken cache must not hide the list
                return False
    return bool(getattr(spec, "is_demo", False))


def _info(spec) -> BaseInfo:
    return BaseInfo(spec.id, getattr(spec, "title", spec.id), int(getattr(spec, "resolution", 256)),
                    bool(getattr(spec, "is_demo", False)), _installed(spec), list(getattr(spec, "presets", [])))


def all_bases() -> list[BaseInfo]:
    """Every base the zoo knows, installed or not (the demo first)."""
    try:
        reg = _registry()
    except ImportError:
        return [BaseInfo(DEMO_BASE, "Demo shapes (32×32)", 32, True, True)]
    specs = None
    for name in ("list_bases", "all_bases", "bases"):
        obj = getattr(reg, name, None)
        if callable(obj):
            specs = list(obj())
            break
        if isinstance(obj, dict):
            specs = list(obj.values())
            break
    if specs is None:
        specs = [reg.get_base(DEMO_BASE)]
    infos = [_info(s) for s in specs]
    infos.sort(key=lambda b: (not b.is_demo, b.title))
    return infos


def usable_bases() -> list[BaseInfo]:
    """Bases for the picker: the demo plus installed real bases."""
    return [b for b in all_bases() if b.is_demo or b.installed]


def base_info(base_id: str) -> BaseInfo:
    try:
        return _info(_registry().get_base(base_id))
    except ImportError:
        return BaseInfo(DEMO_BASE, "Demo shapes (32×32)", 32, True, True)

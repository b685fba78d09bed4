"""Engine registry: built-ins register here the same way a plugin would
(entry point group `ragtune.engines`)."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from server.engines.base import Delta, Engine, EngineOverloaded, SamplingParams

if TYPE_CHECKING:
    from server.settings import Settings

__all__ = ["Delta", "Engine", "EngineOverloaded", "SamplingParams", "create_engine", "register_engine"]

# name -> (factory "module:function", availability check)
_REGISTRY: dict[str, tuple[str, Callable[[], bool]]] = {}


def register_engine(name: str, factory: str, available: Callable[[], bool] = lambda: True) -> None:
    """Register `factory` ("module:callable(settings, model_path) -> Engine") under `name`."""
    _REGISTRY[name] = (factory, available)


def _load_plugins() -> None:
    for ep in entry_points(group="ragtune.engines"):
        register_engine(ep.name, ep.value)


def _has_vllm_and_gpu() -> bool:
    if not _has_vllm():
        return False
    import torch

    return torch.cuda.is_available()


def _has_vllm() -> bool:
    return importlib.util.find_spec("vllm") is not None


register_engine("transformers", "server.engines.transformers_engine:from_settings")
register_engine("vllm", "server.engines.vllm_engine:from_settings", _has_vllm)


def resolve_engine_name(requested: str) -> str:
    _load_plugins()
    if requested == "auto":
        return "vllm" if "vllm" in _REGISTRY and _has_vllm_and_gpu() else "transformers"
    if requested not in _REGISTRY:
        raise ValueError(
            f"engine {requested!r} is not available here (known: {', '.join(sorted(_REGISTRY))})"
        )
    factory, available = _REGISTRY[requested]
    if not available():
        raise ValueError(f"engine {requested!r} is registered but its package is not installed")
    return requested


def create_engine(settings: Settings, model_path: str) -> Engine:
    name = resolve_engine_name(settings.engine)
    module_name, _, attr = _REGISTRY[name][0].partition(":")
    factory = getattr(importlib.import_module(module_name), attr)
    return factory(settings, model_path)

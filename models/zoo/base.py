"""The zoo's registry: `register_model` for the architecture modules, `create_model` and the checks for callers.

Kept apart from `models/zoo/__init__.py`, which imports every architecture module: those modules import
`register_model` from here, so the package and its modules never import each other."""

from __future__ import annotations

import importlib
import json
import math
import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ticketbench.registry import Registry

MODELS: Registry = Registry("model")
INPUT_SIZES: dict[str, int] = {}  # model name → expected input height = width (pixels)


def register_model(name: str, input_size: int | None = None) -> Callable:
    """Register a factory `fn(num_classes, in_channels, **kw) -> nn.Module` under `name`."""

    def deco(fn: Callable) -> Callable:
        MODELS.register(name)(fn)
        if input_size is not None:
            INPUT_SIZES[name] = input_size
        return fn

    return deco


def create_model(name: str, num_classes: int = 10, in_channels: int = 3, **kw) -> nn.Module:
    """Build a registered model; `num_classes`/`in_channels` follow the data set.

    A `package.module:factory` name is the user's own code: `factory(**kw)` builds it (see `user_factory`)."""
    if ":" in name:
        return user_factory(name)(**kw)
    return MODELS.get(name)(num_classes=num_classes, in_channels=in_channels, **kw)


# `package.module:factory` references the user named in this process (`bench import --model`), plus those listed in
# $TICKETBENCH_MODEL_CODE (comma-separated): a ticket naming user code never imports it by itself.
_ALLOWED_CODE: set[str] = set()


def allow_model_code(ref: str) -> None:
    """The user named `ref` (e.g. on the command line): `create_model(ref)` may import it in this process."""
    _ALLOWED_CODE.add(ref)


def user_factory(ref: str) -> Callable[..., nn.Module]:
    """Import `package.module:factory` only when the user named it; ValueError says how to name it."""
    module, sep, attr = ref.partition(":")
    if not sep or not module or not attr.isidentifier():
        raise ValueError(f"model {ref!r}: expected a zoo name or package.module:factory")
    allowed = _ALLOWED_CODE | {r.strip() for r in os.environ.get("TICKETBENCH_MODEL_CODE", "").split(",") if r.strip()}
    if ref not in allowed:
        raise ValueError(f"model {ref!r} is user code: name it to allow importing it (TICKETBENCH_MODEL_CODE={ref})")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"model {ref!r}: cannot import ({type(exc).__name__}: {exc})") from exc
    if not callable(fn):
        raise ValueError(f"model {ref!r}: {attr} is not callable")
    return fn


MAX_PARAMS = 2**31  # 8 GiB of float32 weights: no ticket of ours comes near; a larger build is a typo'd width
_BUILDS: dict[str, str | None] = {}  # (name, kwargs) as JSON → why it does not build, or None: one build per setting


def model_kwargs_problem(name: str, kwargs: Mapping[str, Any]) -> str | None:
    """Why `create_model(name, **kwargs)` (a suite's `model_kwargs`, `bench ticket --width`) would fail or build
    nonsense, or None. A `width` must be a finite number > 0 (the zoo clamps channel counts to ≥ 1, so -2 would
    silently build a 1-channel model); then a zoo model is built on the meta device (no memory, milliseconds) so
    an unknown keyword, a wrong type or a layer with no channels is found when the suite loads, not after
    training. User code (`package.module:factory`) is not imported for this: only `width` is checked."""
    width = kwargs.get("width")
    if "width" in kwargs and (
        isinstance(width, bool) or not isinstance(width, int | float) or not math.isfinite(width) or width <= 0
    ):
        return f"width must be a finite number > 0, got {_shown(width)}"
    if ":" in name or name not in MODELS:
        return None
    key = json.dumps([name, kwargs], sort_keys=True, default=repr)
    if key not in _BUILDS:
        _BUILDS[key] = _build_problem(name, kwargs)
    return _BUILDS[key]


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _build_problem(name: str, kwargs: Mapping[str, Any]) -> str | None:
    try:
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")  # "initializing zero-element tensors is a no-op": reported below
            model = create_model(name, **kwargs)
    except Exception as exc:  # TypeError (unknown keyword, a float channel count), RuntimeError (negative size)
        why = " ".join(str(exc).split())[:160] or type(exc).__name__
        return f"{name} does not build with model_kwargs {_shown(dict(kwargs))} ({type(exc).__name__}: {why})"
    sizes = [(n, p.numel()) for n, p in model.named_parameters()]
    empty = [n for n, size in sizes if size == 0]
    if empty:
        return f"{name} with model_kwargs {_shown(dict(kwargs))} builds layers with no channels ({empty[0]})"
    if sum(size for _, size in sizes) > MAX_PARAMS:
        return f"{name} with model_kwargs {_shown(dict(kwargs))} builds over {MAX_PARAMS} parameters"
    return None


def model_names() -> list[str]:
    return MODELS.names()


def input_size(name: str) -> int | None:
    """Expected input height/width (pixels) of a registered model, or None when any size works."""
    MODELS.get(name)  # raises a clear KeyError for unknown names
    return INPUT_SIZES.get(name)

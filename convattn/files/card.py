"""Model cards: a network written outside convattn, opened as convattn opens its own.

A card is a TOML file the user writes beside their code::

    factory = "my_nets.py:build"     # a Python file (relative to the card) or an
                                     # importable module, ':', a callable -> nn.Module
    weights = "my_nets.pt"           # a state_dict, or a dict holding one under
                                     # "state_dict" or "model"; loaded weights-only
    classes = ["cat", "dog", "fox"]  # or the path of a text file, one class a line
    image_size = 64                  # or [H, W]
    mean = [0.5, 0.5, 0.5]           # one value for a grey network, three for RGB
    std = [0.25, 0.25, 0.25]
    kwargs = { width = 64 }          # optional: keyword arguments of the factory

``open_model(card)`` returns the model in eval mode and the same ``CheckpointInfo`` that
convattn's checkpoints give (arch ``"card:<factory>"``), so ``info.prepare`` turns images
into the model's input. A grey network (one value in ``mean``) takes RGB images, made grey
as PIL's ``convert("L")`` makes them. Weights saved from ``DataParallel`` or
``DistributedDataParallel`` (keys prefixed ``module.``) or from ``torch.compile``
(``_orig_mod.``) load as they are; loading is strict.

Security: a card runs the user's own code (the factory) on their own machine, as a local
``torch.hub.load`` does; only the weights file is loaded weights-only. Open only cards you
would run as scripts. The app never takes a card from the browser.

Anything wrong with a card raises ``CardError`` with one sentence naming the key or the
file at fault.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from convattn.files.info import CheckpointInfo

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

REQUIRED = ("factory", "weights", "classes", "image_size", "mean", "std")
OPTIONAL = ("kwargs",)
PREFIXES = ("module.", "_orig_mod.")  # DataParallel / DDP, torch.compile
SHOWN = 3  # keys named in a state-dict mismatch


class CardError(ValueError):
    """A model card that cannot be opened; the message is one sentence naming the key or
    the file at fault."""


def open_model(card_path: str | Path) -> tuple[nn.Module, CheckpointInfo]:
    """Open the model card at ``card_path``: (the model in eval mode, its info).

    Runs the card's factory (the user's own code, see the module's docstring) and loads
    its weights strictly. Raises ``CardError`` with one sentence."""
    card = Path(card_path)
    fields = _read(card)
    folder = card.resolve().parent
    classes = _classes(card, folder, fields["classes"])
    size = _image_size(card, fields["image_size"])
    mean, std = _norm(card, fields["mean"], "mean"), _norm(card, fields["std"], "std")
    if len(std) != len(mean):
        raise CardError(f"{card}: std has {len(std)} values but mean has {len(mean)}; give "
                        f"one per input channel.")
    if any(v <= 0 for v in std):
        raise CardError(f"{card}: std must be positive, not {list(std)}.")
    kwargs = fields.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise CardError(f"{card}: kwargs must be a table (kwargs = {{ name = value }}), "
                        f"not {_kind(kwargs)}.")
    factory = fields["factory"]
    model = _build(card, folder, factory, kwargs)
    _load_weights(card, model, _path(card, folder, fields["weights"], "weights"))
    model.eval()
    _check_outputs(card, model, len(classes), len(mean), size)
    info = CheckpointInfo(arch=f"card:{factory}", model_config=dict(kwargs), classes=classes,
                          mean=mean, std=std, path=str(card), image_size=size,
                          extra={"card": str(card)})
    return model, info


def card_files(card_path: str | Path) -> list[Path]:
    """The files a card's model is made from that exist: the card, then its weights, its
    factory file and its classes file where it names them. Their modification times tell a
    cache when the model must be opened again. Raises ``CardError`` for an unreadable card."""
    card = Path(card_path)
    fields = _read(card)
    folder = card.resolve().parent
    named = [fields["weights"], fields["factory"].rpartition(":")[0]]
    if isinstance(fields["classes"], str):
        named.append(fields["classes"])
    found = [card]
    for value in named:
        path = Path(value).expanduser()
        path = path if path.is_absolute() else folder / path
        if value and path.is_file():
            found.append(path)
    return found


def _read(card: Path) -> dict[str, Any]:
    if not card.exists():
        raise CardError(f"{card} does not exist: give the path of a model card (.toml).")
    if not card.is_file():
        raise CardError(f"{card} is a folder, not a model card (.toml).")
    try:
        fields = tomllib.loads(card.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise CardError(f"{card} is not a TOML model card ({e}).") from None
    missing = [k for k in REQUIRED if k not in fields]
    if missing:
        raise CardError(f"{card}: the key {missing[0]!r} is missing (a card needs "
                        f"{', '.join(REQUIRED)}).")
    unknown = sorted(set(fields) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise CardError(f"{card}: unknown key {unknown[0]!r} (a card holds "
                        f"{', '.join(REQUIRED + OPTIONAL)}).")
    for key in ("factory", "weights"):
        if not isinstance(fields[key], str) or not fields[key].strip():
            raise CardError(f"{card}: {key} must be a string, not {_kind(fields[key])}.")
    return fields


def _kind(value: object) -> str:
    return {str: "a string", int: "a number", float: "a number", bool: "true/false",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)


def _path(card: Path, folder: Path, value: str, key: str) -> Path:
    path = Path(value).expanduser()
    path = path if path.is_absolute() else folder / path
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise CardError(f"{card}: the {key} file {path} {what}.")
    return path


def _classes(card: Path, folder: Path, value: Any) -> list[str]:
    if isinstance(value, str):
        path = _path(card, folder, value, "classes")
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        names = [n for n in names if n]
        if not names:
            raise CardError(f"{card}: the classes file {path} holds no class names.")
        return names
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise CardError(f"{card}: classes must be a list of names or the path of a text "
                        f"file, one class a line; not {_kind(value)}.")
    if not value:
        raise CardError(f"{card}: classes is empty; name at least one class.")
    return list(value)


def _image_size(card: Path, value: Any) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                       for v in value)):
        raise CardError(f"{card}: image_size must be a positive number of pixels or [H, W], "
                        f"not {value!r}.")
    return value[0], value[1]


def _norm(card: Path, value: Any, key: str) -> tuple[float, ...]:
    if (not isinstance(value, list) or len(value) not in (1, 3)
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                       for v in value)):
        raise CardError(f"{card}: {key} must be a list of 1 (grey) or 3 (RGB) numbers, "
                        f"not {value!r}.")
    return tuple(float(v) for v in value)


def _build(card: Path, folder: Path, factory: str, kwargs: dict[str, Any]) -> nn.Module:
    """Import the factory with the card's folder importable, and call it."""
    source, sep, attr = factory.rpartition(":")
    if not sep or not source or not attr:
        raise CardError(f"{card}: factory must be 'file.py:callable' or 'module:callable', "
                        f"not {factory!r}.")
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        module = _import(card, folder, source)
        fn: Any = module
        for part in attr.split("."):
            if not hasattr(fn, part):
                raise CardError(f"{card}: the factory {factory!r} names {attr!r}, which "
                                f"{source} does not define.")
            fn = getattr(fn, part)
        if not callable(fn):
            raise CardError(f"{card}: the factory {factory!r} is not callable (it is "
                            f"{type(fn).__name__}).")
        model = _call(card, factory, fn, kwargs)
    finally:
        try:
            sys.path.remove(entry)
        except ValueError:  # the factory took it out itself
            pass
    if not isinstance(model, nn.Module):
        raise CardError(f"{card}: the factory {factory!r} returned {type(model).__name__}, "
                        f"not a torch nn.Module.")
    return model


def _import(card: Path, folder: Path, source: str) -> Any:
    if source.endswith(".py") or "/" in source or "\\" in source:
        path = _path(card, folder, source, "factory")
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
        name = f"convattn_card_{path.stem}_{digest}"  # unique: two cards' net.py differ
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise CardError(f"{card}: the factory file {path} cannot be imported.")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling look their module up
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            del sys.modules[name]
            raise CardError(f"{card}: importing the factory file {path} raised "
                            f"{type(e).__name__}: {_short(e)}.") from e
        return module
    try:
        return importlib.import_module(source)
    except Exception as e:
        raise CardError(f"{card}: importing the factory module {source!r} raised "
                        f"{type(e).__name__}: {_short(e)}.") from e


def _call(card: Path, factory: str, fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    try:
        return fn(**kwargs)
    except Exception as e:
        raise CardError(f"{card}: the factory {factory!r} raised {type(e).__name__}: "
                        f"{_short(e)}.") from e


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0].rstrip(".") if text else "no message"


def _load_weights(card: Path, model: nn.Module, path: Path) -> None:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CardError(f"{card}: the weights file {path} could not be loaded weights-only "
                        f"({type(e).__name__}: {_short(e)}).") from None
    state = _state_dict(obj)
    if state is None:
        raise CardError(f"{card}: the weights file {path} holds no state dict (a dict of "
                        f"tensors, or one under 'state_dict' or 'model').")
    state = _strip(state)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        parts = [f"{what} {_few(keys)}" for what, keys in (
            ("missing", missing), ("unexpected", unexpected), ("of another shape", wrong))
            if keys]
        raise CardError(f"{card}: the weights in {path} do not fit the factory's model: "
                        f"{'; '.join(parts)}.")
    model.load_state_dict(state, strict=True)


def _state_dict(obj: Any) -> dict[str, Tensor] | None:
    for candidate in (obj, *(obj.get(k) for k in ("state_dict", "model")
                             if isinstance(obj, Mapping))):
        if (isinstance(candidate, Mapping) and candidate
                and all(isinstance(k, str) for k in candidate)
                and all(isinstance(v, Tensor) for v in candidate.values())):
            return dict(candidate)
    return None


def _strip(state: dict[str, Tensor]) -> dict[str, Tensor]:
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _few(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN])
    return shown + (f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else "")


def _check_outputs(card: Path, model: nn.Module, classes: int, channels: int,
                   size: tuple[int, int]) -> None:
    """One forward pass on a blank image: the model must give one logit per class."""
    shape = (1, channels, *size)
    try:
        with torch.no_grad():
            out = model(torch.zeros(shape))
    except Exception as e:
        raise CardError(f"{card}: the model failed on an input of shape {shape} (from "
                        f"mean and image_size): {type(e).__name__}: {_short(e)}.") from None
    if not isinstance(out, Tensor) or out.dim() != 2:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise CardError(f"{card}: the model must return logits (B, classes), not {got}.")
    if out.shape[1] != classes:
        raise CardError(f"{card}: the model gives {out.shape[1]} outputs but classes names "
                        f"{classes}.")

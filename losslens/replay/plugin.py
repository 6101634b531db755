"""Load and validate a replay plug-in: the user's model, optimizer, checkpoints and data.

A plug-in is a Python module (a file path or an importable module name) with these names:

    build_model(device) -> torch.nn.Module
    build_optimizer(model) -> torch.optim.Optimizer          optional: dynamic replay, Adam probes
    checkpoints() -> list[int]                               iterations saved
    load_checkpoint(step, model, optimizer=None) -> None     weights, optimizer and RNG state
    get_batch(step) -> batch                                 the batch iteration `step` consumed
    loss_fn(model, batch) -> Tensor[n]                       per-sample losses
    autocast_dtype                                           optional: torch.dtype | None, or a
                                                             function returning it (run precision)

and, optionally, what replay's training step needs to match the trainer's:

    lr_at(step) -> float                                     learning rate of iteration `step`
    grad_clip                                                max grad norm (float | None | function)
    sample_ids(step) -> list                                 dataset ids of batch `step`'s rows
    select(batch, indices) -> batch                          rows of a batch (per-sample probes)
    attention_logit_modules(model) -> list[str]              modules whose output is attention logits
    batch_loss(losses, batch) -> Tensor[]                    the loss backpropagated (default: mean)
    logged_rows(step, n) -> list[int]                        rows whose loss the log prints
                                                             (nanoGPT: the last micro-batch)
    grad_accum = k                                           micro-batches per step (each its
                                                             own forward/backward, loss / k)
    log_loss = "mean" | "step"                               how the log reduces its interval
    lr_log_offset = 0 | 1                                    logged LR at s is iteration s+offset's

A module may instead export `plugin = <object with those attributes>` — what the adapters of
`losslens.replay.adapters` build from a run folder (HF Trainer, nanoGPT, plain PyTorch).
docs/replay.md documents all of it.

Steps are the trainer's own iteration numbers: checkpoint N holds the state after N iterations,
and `get_batch(N + 1)` is the first batch trained on after restarting from it. Loading a
checkpoint is the plug-in's job; for torch files use `load_torch_file` (weights_only=True).
For models larger than one GPU, the plug-in builds them under torchrun (replay calls it on every
rank; its own process group setup stays in `build_model`).
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from ..errors import LossLensError

#: name -> (the call shape shown in messages, number of positional arguments it must take)
REQUIRED = {
    "build_model": ("build_model(device)", 1),
    "checkpoints": ("checkpoints()", 0),
    "load_checkpoint": ("load_checkpoint(step, model, optimizer=None)", 3),
    "get_batch": ("get_batch(step)", 1),
    "loss_fn": ("loss_fn(model, batch)", 2),
}
OPTIONAL_CALLS = {
    "build_optimizer": ("build_optimizer(model)", 1),
    "lr_at": ("lr_at(step)", 1),
    "sample_ids": ("sample_ids(step)", 1),
    "select": ("select(batch, indices)", 2),
    "attention_logit_modules": ("attention_logit_modules(model)", 1),
    "batch_loss": ("batch_loss(losses, batch)", 2),
    "logged_rows": ("logged_rows(step, n)", 2),
}


class PluginError(LossLensError):
    """The replay plug-in is missing, malformed, or one of its functions failed."""


@dataclass
class Plugin:
    """A validated plug-in; `call` wraps its functions so failures become one-line errors."""

    name: str
    module: Any  # the module, or the adapter object it exports as `plugin`

    def has(self, attr: str) -> bool:
        return getattr(self.module, attr, None) is not None

    def call(self, attr: str, *args: Any) -> Any:
        fn = getattr(self.module, attr)
        try:
            return fn(*args)
        except LossLensError:
            raise
        except (Exception, SystemExit) as exc:  # the user's code: any failure (a sys.exit
            shown = ", ".join(_short(a) for a in args)  # too) becomes a one-line error
            raise PluginError(f"plugin {self.name}: {attr}({shown}) raised "
                              f"{type(exc).__name__}: {_one_line(exc)}") from exc

    def value(self, attr: str, default: Any = None) -> Any:
        """An optional setting given as a value or as a function returning it."""
        v = getattr(self.module, attr, default)
        return self.call(attr) if callable(v) and not _is_dtype(v) else v


def _is_dtype(v: Any) -> bool:
    return type(v).__name__ == "dtype"


def _short(arg: Any) -> str:
    if isinstance(arg, (int, float, str)) or arg is None:
        return repr(arg)
    return type(arg).__name__


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] if text else "(no message)"


def load_plugin(spec: str) -> Plugin:
    """Import `spec` (a .py path, or a module name) and check it has what replay needs."""
    module = _import(spec)
    target = getattr(module, "plugin", None)
    if target is not None and not isinstance(target, ModuleType) and hasattr(target,
                                                                              "build_model"):
        module = target  # an adapter object the module built
    validate(module, spec)
    return Plugin(spec, module)


def _import(spec: str) -> ModuleType:
    path = Path(spec)
    looks_like_path = spec.endswith(".py") or "/" in spec or "\\" in spec
    if looks_like_path:
        if not path.is_file():
            raise PluginError(f"plugin {spec}: file not found")
        name = f"losslens_plugin_{abs(hash(str(path.resolve())))}"
        mod_spec = importlib.util.spec_from_file_location(name, path)
        if mod_spec is None or mod_spec.loader is None:
            raise PluginError(f"plugin {spec}: cannot be imported as a Python file")
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[name] = module
        # the plug-in's own folder first, so it can import its sibling modules
        sys.path.insert(0, str(path.resolve().parent))
        try:
            mod_spec.loader.exec_module(module)
        except (Exception, SystemExit) as exc:  # (a training script's argparse / sys.exit)
            sys.modules.pop(name, None)
            raise PluginError(f"plugin {spec}: import failed: {_failure(exc)}") from exc
        finally:
            if str(path.resolve().parent) in sys.path:
                sys.path.remove(str(path.resolve().parent))
        return module
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        if exc.name and spec.startswith(exc.name):
            raise PluginError(f"plugin {spec}: no such module (give a .py path or an "
                              f"importable module name)") from exc
        raise PluginError(f"plugin {spec}: import failed: {_one_line(exc)}") from exc
    except (Exception, SystemExit) as exc:
        raise PluginError(f"plugin {spec}: import failed: {_failure(exc)}") from exc


def _failure(exc: BaseException) -> str:
    """What an import raised; a `sys.exit` (exit 1 would read as `check`'s "findings")
    says so: a training script that parses its arguments or exits at import is no plug-in."""
    if isinstance(exc, SystemExit):
        return (f"it exited (sys.exit({exc.code!r})) while imported: a plug-in must not run "
                "its script at import (see docs/replay.md)")
    return f"{type(exc).__name__}: {_one_line(exc)}"


def validate(module: Any, spec: str) -> None:
    """One-line PluginError naming every missing or ill-shaped function."""
    missing = [shape for attr, (shape, _) in REQUIRED.items()
               if not callable(getattr(module, attr, None))]
    if missing:
        raise PluginError(f"plugin {spec}: missing {', '.join(missing)} (see docs/replay.md)")
    bad = []
    for table in (REQUIRED, OPTIONAL_CALLS):
        for attr, (shape, nargs) in table.items():
            fn = getattr(module, attr, None)
            if fn is None:
                continue
            if not callable(fn) or not _accepts(fn, nargs):
                bad.append(shape)
    if bad:
        raise PluginError(f"plugin {spec}: these must be functions taking "
                          f"{'; '.join(bad)}")


def _accepts(fn: Callable, nargs: int) -> bool:
    try:
        inspect.signature(fn).bind(*([None] * nargs))
        return True
    except TypeError:
        return False
    except ValueError:  # builtins without a signature
        return True


def load_torch_file(path: str | Path, map_location: Any = "cpu") -> Any:
    """A helper for plug-ins: `torch.load` restricted to tensors and plain containers."""
    import torch

    return torch.load(path, map_location=map_location, weights_only=True)

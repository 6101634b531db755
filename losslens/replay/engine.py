"""The torch side of replay: device and determinism, the training step, hooks, snapshots.

Replay's training step is the standard loop and must match the trainer's for the replay to be
faithful: per-sample losses from `loss_fn` (under autocast when the plug-in declares the run's
precision), their mean, backward, `clip_grad_norm_` to `grad_clip`, the learning rate from
`lr_at(step)`, `optimizer.step()`, and — like fp16 loss scalers and Megatron — no update when
the loss or the gradient is not finite. Trainers that do more (gradient accumulation over
micro-batches, loss scaling with real overflow, schedulers with state) are matched only as far
as the plug-in's functions express them.

Everything here imports torch; nothing outside losslens/replay/ imports this module.
"""
from __future__ import annotations

import math
import os
import time
import warnings
from collections import OrderedDict
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from .plugin import Plugin, PluginError

#: |g| above this many times sqrt(v_hat) (Adam's second moment) counts as "far above".
ADAM_OUTLIER_FACTOR = 10.0
#: Module names (last component) taken as attention-logit hook points by default.
ATTN_NAMES = ("attn_logits", "attn_scores", "attention_logits", "attention_scores")
#: Batches kept in memory by `Session.batch`.
BATCH_CACHE = 48


def resolve_device(name: str) -> torch.device:
    """auto → cuda when available, else cpu; cuda asked for and absent is an error."""
    from ..errors import InvalidParameterError

    if name not in ("auto", "cpu", "cuda") and not name.startswith("cuda:"):
        raise InvalidParameterError(f"--device must be auto, cpu or cuda, got {name!r}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InvalidParameterError("--device cuda: no CUDA device is available here "
                                        f"(torch {torch.__version__})")
        # cuBLAS reads this when its first handle is made: before the model touches the GPU
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return torch.device(name)


@contextmanager
def deterministic(device: torch.device) -> Iterator[dict[str, Any]]:
    """Deterministic algorithms on (warn-only), restored afterwards; yields what was set and
    which ops warned that they have no deterministic implementation."""
    info: dict[str, Any] = {"deterministic_algorithms": True, "nondeterministic_ops": []}
    prev = (torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled())
    prev_cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if device.type == "cuda":
        info["cublas_workspace_config"] = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield info
    finally:
        torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = prev_cudnn
        for w in caught:
            if "determinis" in str(w.message):
                msg = str(w.message).split("\n")[0][:200]
                if msg not in info["nondeterministic_ops"]:
                    info["nondeterministic_ops"].append(msg)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


@dataclass
class StepRecord:
    """What one replayed iteration measured."""

    step: int
    batch: int  # the step whose batch was used (differs from `step` in counterfactuals)
    loss: float
    grad_norm: float
    skipped: bool = False
    update_rms_over_lr: float | None = None
    adam_outlier_share: float | None = None
    attn_logit_absmax: float | None = None
    act_absmax: float | None = None
    act_absmax_module: str | None = None
    first_nonfinite_module: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Watch:
    """Forward hooks on every leaf module and attention-logit hook point: abs-max of outputs,
    and the first module (in execution order) whose output held inf/NaN. No host sync inside
    the hooks: one per pass, in `summary()`."""

    def __init__(self, model: torch.nn.Module, attn_names: set[str]) -> None:
        self.active, self.records = False, []
        self.attn_names = attn_names
        self.handles = []
        for name, mod in model.named_modules():
            leaf = not any(True for _ in mod.children())
            if name and (leaf or name in attn_names):
                self.handles.append(mod.register_forward_hook(self._hook(name)))

    def _hook(self, name: str):
        def hook(_mod, _inp, out):
            if not self.active:
                return
            t = out[0] if isinstance(out, (tuple, list)) and out else out
            if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel():
                d = t.detach()
                self.records.append((name, d.abs().amax().float(), torch.isfinite(d).all()))
        return hook

    @contextmanager
    def on(self) -> Iterator[None]:
        self.active, self.records = True, []
        try:
            yield
        finally:
            self.active = False

    def summary(self) -> dict[str, Any]:
        if not self.records:
            return {}
        names = [r[0] for r in self.records]
        amax = torch.stack([r[1] for r in self.records]).cpu().tolist()
        fin = torch.stack([r[2] for r in self.records]).cpu().tolist()
        self.records = []
        out: dict[str, Any] = {}
        bad = [i for i, ok in enumerate(fin) if not ok]
        out["first_nonfinite_module"] = names[bad[0]] if bad else None
        finite_amax = [(a, n) for a, n, ok in zip(amax, names, fin) if ok and math.isfinite(a)]
        if finite_amax:
            a, n = max(finite_amax)
            out["act_absmax"], out["act_absmax_module"] = a, n
        attn = [a for a, n in zip(amax, names) if n in self.attn_names]
        if attn:
            out["attn_logit_absmax"] = max(attn)
        return out

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def attention_names(plugin: Plugin, model: torch.nn.Module) -> set[str]:
    if plugin.has("attention_logit_modules"):
        return set(plugin.call("attention_logit_modules", model))
    return {n for n, _ in model.named_modules() if n.rsplit(".", 1)[-1] in ATTN_NAMES}


class Session:
    """The plug-in's model and optimizer on one device, with replay's training step."""

    def __init__(self, plugin: Plugin, device: torch.device) -> None:
        self.plugin, self.device = plugin, device
        self.model = plugin.call("build_model", device)
        if not isinstance(self.model, torch.nn.Module):
            raise PluginError(f"plugin {plugin.name}: build_model(device) returned "
                              f"{type(self.model).__name__}, not a torch.nn.Module")
        self.optimizer = (plugin.call("build_optimizer", self.model)
                          if plugin.has("build_optimizer") else None)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.clip = plugin.value("grad_clip")
        self.dtype = plugin.value("autocast_dtype")
        if self.dtype is not None and not isinstance(self.dtype, torch.dtype):
            raise PluginError(f"plugin {plugin.name}: autocast_dtype must be a torch.dtype or "
                              f"None, got {self.dtype!r}")
        self.watch = Watch(self.model, attention_names(plugin, self.model))
        self._batches: OrderedDict[int, Any] = OrderedDict()

    # ---- plug-in access

    def load(self, step: int) -> None:
        self.plugin.call("load_checkpoint", step, self.model, self.optimizer)

    def batch(self, step: int) -> Any:
        """get_batch(step), with the most recent BATCH_CACHE batches kept (the neighbours and
        the flagged batches are used by every run of an event)."""
        if step in self._batches:
            self._batches.move_to_end(step)
        else:
            self._batches[step] = self.plugin.call("get_batch", step)
            while len(self._batches) > BATCH_CACHE:
                self._batches.popitem(last=False)
        return self._batches[step]

    def losses(self, batch: Any, precision: bool = True) -> torch.Tensor:
        """Per-sample losses, Tensor[n], under the run's autocast when `precision`."""
        with self.autocast() if precision else nullcontext():
            out = self.plugin.call("loss_fn", self.model, batch)
        if not isinstance(out, torch.Tensor) or out.dim() != 1:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise PluginError(f"plugin {self.plugin.name}: loss_fn(model, batch) must return "
                              f"per-sample losses, Tensor[n]; got {shape}")
        return out

    def autocast(self):
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    # ---- the training step

    def set_lr(self, step: int) -> list[float]:
        if self.optimizer is None:
            return []
        if self.plugin.has("lr_at"):
            lr = self.plugin.call("lr_at", step)
            lrs = list(lr) if isinstance(lr, (list, tuple)) else [lr] * len(
                self.optimizer.param_groups)
            for group, value in zip(self.optimizer.param_groups, lrs):
                group["lr"] = float(value)
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def grad_norm(self) -> torch.Tensor:
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return torch.zeros((), device=self.device)
        if self.clip:
            return torch.nn.utils.clip_grad_norm_(self.params, float(self.clip))
        return torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(g.detach().float()) for g in grads]))

    def train_step(self, step: int, batch_step: int | None = None, precision: bool = True,
                   update: bool = True) -> StepRecord:
        """Iteration `step` on batch `batch_step` (default: its own): measure, then update."""
        t0 = time.perf_counter()
        batch_step = step if batch_step is None else batch_step
        batch = self.batch(batch_step)
        lrs = self.set_lr(step)
        self.model.train()
        with self.watch.on():
            losses = self.losses(batch, precision)
        loss = losses.mean()
        loss.backward()
        gnorm = self.grad_norm()
        rec = StepRecord(step, batch_step, float(loss.detach()), float(gnorm), **self.watch.summary())
        rec.skipped = not (math.isfinite(rec.loss) and math.isfinite(rec.grad_norm))
        if self.optimizer is not None and update and not rec.skipped:
            rec.adam_outlier_share = adam_outlier_share(self.optimizer)
            before = [p.detach().clone() for p in self.params]
            self.optimizer.step()
            rec.update_rms_over_lr = update_rms_over_lr(self.optimizer, self.params, before, lrs)
        self.zero_grad()
        rec.seconds = time.perf_counter() - t0
        return rec

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def evaluate(self, steps: list[int], precision: bool = True) -> list[tuple[float, float]]:
        """(loss, grad norm) of batches at the current weights, no update, in training mode
        (RNG and buffers such as BatchNorm statistics are restored afterwards)."""
        out = []
        buffers = {k: v.detach().clone() for k, v in self.model.named_buffers()}
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            self.model.train()
            for s in steps:
                losses = self.losses(self.batch(s), precision)
                loss = losses.mean()
                loss.backward()
                norm = torch.linalg.vector_norm(torch.stack(
                    [torch.linalg.vector_norm(p.grad.detach().float())
                     for p in self.params if p.grad is not None] or [loss.new_zeros(())]))
                out.append((float(loss.detach()), float(norm)))
                self.zero_grad()
        with torch.no_grad():
            for k, v in self.model.named_buffers():
                v.copy_(buffers[k])
        return out

    # ---- snapshots (in memory, on the device)

    def snapshot(self) -> dict[str, Any]:
        import copy

        snap = {"model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
                "rng": torch.get_rng_state()}
        if self.device.type == "cuda":
            snap["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        if self.optimizer is not None:
            snap["optimizer"] = copy.deepcopy(self.optimizer.state_dict())
        return snap

    def restore(self, snap: dict[str, Any]) -> None:
        self.model.load_state_dict(snap["model"])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(snap["optimizer"])
        torch.set_rng_state(snap["rng"])
        if "cuda_rng" in snap:
            torch.cuda.set_rng_state(snap["cuda_rng"], self.device)

    def close(self) -> None:
        self.watch.remove()


def adam_outlier_share(optimizer: torch.optim.Optimizer,
                       factor: float = ADAM_OUTLIER_FACTOR) -> float | None:
    """Share of coordinates whose gradient is > factor × (sqrt(v̂) + eps), v̂ being Adam's
    bias-corrected exp_avg_sq before this step; None for optimizers without it."""
    far, total = None, 0
    for group in optimizer.param_groups:
        betas, eps = group.get("betas"), float(group.get("eps", 0.0))
        for p in group["params"]:
            st = optimizer.state.get(p, {})
            v, t = st.get("exp_avg_sq"), st.get("step")
            if p.grad is None or v is None or betas is None or t is None or float(t) == 0:
                continue
            vhat = v / (1 - betas[1] ** float(t))
            n = (p.grad.detach().abs() > factor * (vhat.sqrt() + eps)).sum()
            far = n if far is None else far + n
            total += p.grad.numel()
    return None if far is None or not total else float(far) / total


def update_rms_over_lr(optimizer: torch.optim.Optimizer, params: list[torch.Tensor],
                       before: list[torch.Tensor], lrs: list[float]) -> float | None:
    """RMS of the parameter update divided by the learning rate (≈ |m̂/√v̂| for Adam: about 1
    when every coordinate moves a full step — the sign-like update of an instability)."""
    group_of = {id(p): i for i, g in enumerate(optimizer.param_groups) for p in g["params"]}
    total, n = 0.0, 0
    for p, b in zip(params, before):
        lr = lrs[group_of.get(id(p), 0)] if lrs else 0.0
        if lr <= 0:
            continue
        total += float(((p.detach().float() - b.float()) ** 2).sum()) / lr ** 2
        n += p.numel()
    return math.sqrt(total / n) if n else None

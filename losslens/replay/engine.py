"""The torch side of replay: device and determinism, the training step, hooks, snapshots.

Replay's training step is the standard loop and must match the trainer's for the replay to be
faithful: per-sample losses from `loss_fn` (under autocast when the plug-in declares the run's
precision), their mean, backward, `clip_grad_norm_` to `grad_clip`, the learning rate from
`lr_at(step)`, `optimizer.step()`, and — like fp16 loss scalers and Megatron — no update when
the loss or the gradient is not finite. Trainers that do more are matched as far as the plug-in's functions express
them: `batch_loss(losses, batch)` for a loss that is not the mean of the per-sample losses (HF's
token-weighted `num_items_in_batch`), `logged_rows(step, n)` for a log that prints only some rows'
loss (nanoGPT's last micro-batch, rank 0), `lr_at(step)` for the schedule.

Memory: no step keeps a copy of every parameter. The update RMS/lr is measured on a strided
sample of at most SAMPLED coordinates per tensor, the preflight compares a bitwise checksum and
the same sample, and the one snapshot per event (for fp32 and re-runs) lives in host memory.

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
#: Coordinates per parameter tensor sampled for the update RMS and the preflight comparison.
SAMPLED = 4096


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
def deterministic(device: torch.device, on: bool | None = None) -> Iterator[dict[str, Any]]:
    """Deterministic algorithms on (warn-only), restored afterwards; yields what was set and
    which ops warned that they have no deterministic implementation. `on=None`: on for CUDA,
    off for CPU — CPU kernels repeat bitwise at a fixed thread count (the preflight checks it),
    and torch's deterministic variants of some CPU ops are slower (a 2-layer transformer's
    forward+backward: 85 → 123 ms on one thread)."""
    on = device.type == "cuda" if on is None else on
    info: dict[str, Any] = {"deterministic_algorithms": on, "nondeterministic_ops": []}
    prev = (torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled())
    prev_cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if device.type == "cuda":
        info["cublas_workspace_config"] = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
        torch.backends.cudnn.deterministic = on
        torch.backends.cudnn.benchmark = False if on else prev_cudnn[1]
    if on:
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


def threads() -> int:
    return torch.get_num_threads()


def pick_threads(session: "Session", step: int, repeats: int = 2) -> dict[str, Any]:
    """On CPU, torch's thread count that runs a forward+backward of batch `step` faster:
    its default or 1. A tiny model on a busy machine is ~10× slower with more threads than
    cores are free (a 2-layer transformer: 2.1 s per replayed step at 2 threads, 0.2 s at 1)."""
    default = torch.get_num_threads()
    if default <= 1:
        return {"threads": default, "chosen": "torch's default"}
    times = {}
    try:
        for n in (default, 1):
            torch.set_num_threads(n)
            session.evaluate([step])  # warm-up
            t0 = time.perf_counter()
            for _ in range(repeats):
                session.evaluate([step])
            times[n] = (time.perf_counter() - t0) / repeats
    except PluginError:  # the probes will say what is wrong with that batch
        torch.set_num_threads(default)
        return {"threads": default, "chosen": "torch's default"}
    best = min(times, key=times.get)
    torch.set_num_threads(best)
    return {"threads": best, "chosen": "the faster forward+backward (--threads to set it)",
            "forward_backward_s": {str(k): v for k, v in times.items()}}


@dataclass
class StepRecord:
    """What one replayed iteration measured."""

    step: int
    batch: int  # the step whose batch was used (differs from `step` in counterfactuals)
    loss: float
    grad_norm: float
    skipped: bool = False
    lr: float | None = None  # the first param group's learning rate at this step
    log_loss: float | None = None  # what the log prints for it (the logged rows' mean)
    momentum_cosine: float | None = None
    update_rms_over_lr: float | None = None
    adam_outlier_share: float | None = None
    attn_logit_absmax: float | None = None
    act_absmax: float | None = None
    act_absmax_module: str | None = None
    first_nonfinite_module: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def batch_rows(batch: Any) -> int | None:
    """The number of rows of a batch: dim 0 of its first tensor (nested tuples, lists, dicts)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else None
    items = batch.values() if isinstance(batch, dict) else \
        batch if isinstance(batch, (list, tuple)) else ()
    for x in items:
        n = batch_rows(x)
        if n is not None:
            return n
    return None


def row_dims(batch: Any, n: int) -> Any:
    """The vmap in_dims tree: 0 for tensors with n rows, None for everything else."""
    if isinstance(batch, torch.Tensor):
        return 0 if batch.dim() and batch.shape[0] == n else None
    if isinstance(batch, (list, tuple)):
        return type(batch)(row_dims(x, n) for x in batch)
    if isinstance(batch, dict):
        return {k: row_dims(v, n) for k, v in batch.items()}
    return None


def map_rows(batch: Any, dims: Any, fn: Any) -> Any:
    """`fn` applied to the tensors of `batch` whose `dims` entry is 0; the rest unchanged."""
    if isinstance(batch, (list, tuple)):
        return type(batch)(map_rows(x, d, fn) for x, d in zip(batch, dims))
    if isinstance(batch, dict):
        return {k: map_rows(v, dims[k], fn) for k, v in batch.items()}
    return fn(batch) if dims == 0 else batch


def rows(plugin: Plugin, batch: Any, indices: list[int], n: int) -> Any:
    """Rows `indices` of a batch of n rows: the plug-in's `select`, or dim 0 of its tensors."""
    if plugin.has("select"):
        return plugin.call("select", batch, indices)
    idx = torch.as_tensor(indices, dtype=torch.long)
    return map_rows(batch, row_dims(batch, n), lambda t: t[idx.to(t.device)])


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
        # (j, r): lr_at(step) / r from iteration j on (the schedule without a jump of ×r at j)
        self.lr_divide: tuple[int, float] | None = None

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
            if self.lr_divide is not None and step >= self.lr_divide[0]:
                lrs = [float(v) / self.lr_divide[1] for v in lrs]
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

    def batch_loss(self, losses: torch.Tensor, batch: Any) -> torch.Tensor:
        """The loss the trainer backpropagates: `batch_loss(losses, batch)` or the mean."""
        if self.plugin.has("batch_loss"):
            return self.plugin.call("batch_loss", losses, batch)
        return losses.mean()

    def micro_batches(self, batch: Any) -> list[Any]:
        """The step's micro-batches: `grad_accum` = k splits the batch's rows into k equal,
        consecutive parts (a forward and backward each, as a trainer accumulating gradients
        does: under bf16/fp16 one forward of the whole batch rounds differently)."""
        k = self.plugin.value("grad_accum") if self.plugin.has("grad_accum") else None
        if k is None:
            return [batch]
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise PluginError(f"plugin {self.plugin.name}: grad_accum must be a positive int "
                              f"(micro-batches per step), got {k!r}")
        if k == 1:
            return [batch]
        n = batch_rows(batch)
        if n is None or n % k:
            raise PluginError(f"plugin {self.plugin.name}: grad_accum = {k} needs a batch whose "
                              f"tensors have a multiple of {k} rows (got {n}); or give "
                              "select(batch, indices)")
        m = n // k
        return [rows(self.plugin, batch, list(range(i * m, (i + 1) * m)), n) for i in range(k)]

    def log_loss(self, step: int, losses: torch.Tensor, loss: torch.Tensor) -> float:
        """What the log prints for this step: the mean of `logged_rows(step, n)`, or the loss."""
        if self.plugin.has("logged_rows"):
            rows = list(self.plugin.call("logged_rows", step, int(losses.shape[0])))
            if rows:
                idx = torch.as_tensor(rows, dtype=torch.long, device=losses.device)
                return float(losses.detach().float()[idx].mean())
        return float(loss.detach())

    def train_step(self, step: int, batch_step: int | None = None, precision: bool = True,
                   update: bool = True) -> StepRecord:
        """Iteration `step` on batch `batch_step` (default: its own): measure, then update."""
        t0 = time.perf_counter()
        batch_step = step if batch_step is None else batch_step
        batch = self.batch(batch_step)
        lrs = self.set_lr(step)
        self.model.train()
        parts = self.micro_batches(batch)
        with self.watch.on():
            if len(parts) == 1:
                losses = self.losses(batch, precision)
                loss = self.batch_loss(losses, batch)
                loss.backward()
            else:  # gradient accumulation: each micro-batch on its own, loss / k, as trainers do
                per, total = [], None
                for part in parts:
                    part_losses = self.losses(part, precision)
                    part_loss = self.batch_loss(part_losses, part) / len(parts)
                    part_loss.backward()
                    per.append(part_losses.detach())
                    total = part_loss.detach() if total is None else total + part_loss.detach()
                losses, loss = torch.cat(per), total
        gnorm = self.grad_norm()
        rec = StepRecord(step, batch_step, float(loss.detach()), float(gnorm), **self.watch.summary())
        rec.lr = lrs[0] if lrs else None
        rec.log_loss = self.log_loss(step, losses, loss)
        rec.skipped = not (math.isfinite(rec.loss) and math.isfinite(rec.grad_norm))
        if self.optimizer is not None and update and not rec.skipped:
            rec.adam_outlier_share = adam_outlier_share(self.optimizer)
            rec.momentum_cosine = momentum_cosine(self.optimizer)
            before = [sample(p).clone() for p in self.params]
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
                b = self.batch(s)
                losses = self.losses(b, precision)
                loss = self.batch_loss(losses, b)
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
        """Model, optimizer and RNG state, copied to host memory (one per event)."""
        snap = {"model": {k: v.detach().to("cpu", copy=True)
                          for k, v in self.model.state_dict().items()},
                "rng": torch.get_rng_state()}
        if self.device.type == "cuda":
            snap["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        if self.optimizer is not None:
            snap["optimizer"] = _to_host(self.optimizer.state_dict())
        return snap

    def restore(self, snap: dict[str, Any]) -> None:
        self.model.load_state_dict(snap["model"])
        if self.optimizer is not None:
            # a copy: Optimizer.load_state_dict keeps a tensor that already has the parameter's
            # device and dtype (CPU), and the next step would update the snapshot in place
            self.optimizer.load_state_dict(_to_host(snap["optimizer"]))
        torch.set_rng_state(snap["rng"])
        if "cuda_rng" in snap:
            torch.cuda.set_rng_state(snap["cuda_rng"], self.device)

    def checksum(self) -> list[int]:
        """A bitwise checksum per parameter (the integer sum of its bit patterns)."""
        return checksum(self.params)

    def digest(self, step: int) -> str:
        """A hash of batch `step`'s tensors (to tell batches apart)."""
        return batch_digest(self.batch(step))

    def close(self) -> None:
        self.watch.remove()


def adam_outlier_share(optimizer: torch.optim.Optimizer,
                       factor: float = ADAM_OUTLIER_FACTOR) -> float | None:
    """Share of coordinates whose gradient is > factor × (sqrt(v̂) + eps), v̂ being the second
    moment before this step: Adam/AdamW's bias-corrected exp_avg_sq, or Adafactor's factored
    row_var ⊗ col_var / mean(row_var) (or its `variance` for vectors). None for optimizers
    without a second moment (SGD, Lion, Muon: see `momentum_cosine`)."""
    far, total = None, 0
    for group in optimizer.param_groups:
        betas, eps = group.get("betas"), group.get("eps", 0.0)
        eps = float((eps[0] if isinstance(eps, (tuple, list)) else eps) or 0.0)
        for p in group["params"]:
            st = optimizer.state.get(p, {})
            t = st.get("step")
            if p.grad is None or t is None or float(t) == 0:
                continue
            if st.get("exp_avg_sq") is not None and betas is not None:
                vhat = st["exp_avg_sq"] / (1 - betas[1] ** float(t))
            elif st.get("row_var") is not None and st.get("col_var") is not None:
                row, col = st["row_var"], st["col_var"]
                vhat = (row @ col) / row.mean(dim=-2, keepdim=True).clamp_min(1e-30)
            elif st.get("variance") is not None:
                vhat = st["variance"]
            else:
                continue
            n = (p.grad.detach().abs() > factor * (vhat.sqrt() + eps)).sum()
            far = n if far is None else far + n
            total += p.grad.numel()
    return None if far is None or not total else float(far) / total


def sample(p: torch.Tensor, k: int = SAMPLED) -> torch.Tensor:
    """At most k coordinates of `p`, strided over it (all of them for small tensors); a view."""
    flat = p.detach().reshape(-1)
    stride = max(1, flat.numel() // k)
    return flat[::stride][:k]


def update_rms_over_lr(optimizer: torch.optim.Optimizer, params: list[torch.Tensor],
                       before: list[torch.Tensor], lrs: list[float]) -> float | None:
    """RMS of the parameter update divided by the learning rate (≈ |m̂/√v̂| for Adam: about 1
    when every coordinate moves a full step — the sign-like update of an instability), on the
    coordinates `sample` picks (`before` holds the same sample taken before the step)."""
    group_of = {id(p): i for i, g in enumerate(optimizer.param_groups) for p in g["params"]}
    total, n = 0.0, 0
    for p, b in zip(params, before):
        lr = lrs[group_of.get(id(p), 0)] if lrs else 0.0
        if lr <= 0:
            continue
        a = sample(p) if b.numel() != p.numel() else p.detach().reshape(-1)
        total += float(((a.float() - b.reshape(-1).float()) ** 2).sum()) / lr ** 2
        n += b.numel()
    return math.sqrt(total / n) if n else None


def momentum_cosine(optimizer: torch.optim.Optimizer) -> float | None:
    """Cosine between the gradient and the optimizer's momentum (Adam's exp_avg, Lion's, SGD's
    and Muon's momentum_buffer) over all parameters, before this step: near -1 when the
    gradient turns against the direction the optimizer has been moving in."""
    dot = nm = ng = None
    for group in optimizer.param_groups:
        for p in group["params"]:
            st = optimizer.state.get(p, {})
            m = st.get("exp_avg", st.get("momentum_buffer"))
            if p.grad is None or not isinstance(m, torch.Tensor) or m.shape != p.grad.shape:
                continue
            g, mf = p.grad.detach().float(), m.detach().float()
            terms = ((g * mf).sum(), (mf * mf).sum(), (g * g).sum())
            dot, nm, ng = terms if dot is None else (dot + terms[0], nm + terms[1], ng + terms[2])
    if dot is None:
        return None
    denom = float(nm.sqrt() * ng.sqrt())
    return float(dot) / denom if denom > 0 else None


def checksum(params: list[torch.Tensor]) -> list[int]:
    """The integer sum of each tensor's bit patterns: equal for bitwise-equal tensors."""
    ints = {8: torch.int64, 4: torch.int32, 2: torch.int16, 1: torch.int8}
    sums = []
    for p in params:
        d = p.detach()
        sums.append(d.contiguous().view(ints[d.element_size()]).sum(dtype=torch.int64))
    return torch.stack(sums).cpu().tolist() if sums else []


def batch_digest(batch: Any, tensors_only: bool = False) -> str:
    """sha1 of a batch's tensors (shapes, dtypes, bytes) and other leaves (repr; left out with
    `tensors_only`: an object's repr may hold its address)."""
    import hashlib

    h = hashlib.sha1()

    def walk(x: Any) -> None:
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            h.update(f"{tuple(t.shape)}{t.dtype}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(x, dict):
            for k in sorted(x, key=str):
                h.update(repr(k).encode())
                walk(x[k])
        elif isinstance(x, (list, tuple)):
            h.update(b"[")
            for y in x:
                walk(y)
            h.update(b"]")
        elif not tensors_only:
            h.update(repr(x).encode())
    walk(batch)
    return h.hexdigest()


def _to_host(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_host(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_host(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_to_host(v) for v in obj)
    return obj

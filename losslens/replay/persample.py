"""Per-sample loss and gradient norm of one batch at the current weights (no update).

The fast path is torch.func: `vmap(grad(f))` over the samples, where f calls the plug-in's
`loss_fn` on a batch of one through `functional_call` (a wrapper module makes the user's model
a submodule, so `loss_fn(model, batch)` runs unchanged with swapped-in parameters). It is
chunked to keep the per-sample gradients under a memory budget. When vmap cannot trace the
user's code (data-dependent control flow, `.item()`, in-place ops on inputs, ...) a loop of
one backward per sample does the same, slower. Runs in eval mode and fp32: it compares data,
so dropout and the run's precision stay out of it.

Samples are rows of the batch: every tensor whose first dimension is n (the length of the
per-sample loss vector) is sliced; other leaves pass through. A plug-in with another batch
layout provides `select(batch, indices)`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from .engine import Session, map_rows, row_dims, rows

#: Bytes of per-sample gradients vmap may hold at once.
VMAP_BUDGET = 512 * 2 ** 20


@dataclass
class PerSample:
    losses: list[float]
    grad_norms: list[float] | None
    batch_loss: float
    batch_grad_norm: float
    method: str  # "vmap", "loop" or "none"
    note: str | None = None


class _LossModule(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, loss_fn: Callable) -> None:
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, batch: Any) -> torch.Tensor:
        return self.loss_fn(self.model, batch)


def _any_batched(dims: Any) -> bool:
    if isinstance(dims, (list, tuple)):
        return any(_any_batched(d) for d in dims)
    if isinstance(dims, dict):
        return any(_any_batched(d) for d in dims.values())
    return dims == 0


def select(session: Session, batch: Any, indices: list[int], n: int) -> Any:
    return rows(session.plugin, batch, indices, n)


def per_sample(session: Session, batch: Any) -> PerSample:
    """Per-sample losses and gradient norms of `batch`, and the batch's own loss and grad norm."""
    model = session.model
    model.eval()
    losses = session.losses(batch, precision=False)
    loss = losses.float().mean()
    loss.backward()
    bnorm = _norm([p.grad for p in session.params if p.grad is not None])
    session.zero_grad()
    values = [float(x) for x in losses.detach().float().cpu()]
    n = len(values)
    dims = row_dims(batch, n)
    if not session.plugin.has("select") and not _any_batched(dims):
        return PerSample(values, None, float(loss.detach()), bnorm, "none",
                         f"no tensor in the batch has {n} rows (one per loss): per-sample "
                         "gradient norms need a select(batch, indices) hook in the plug-in")
    note = None
    if not session.plugin.has("select"):
        try:
            norms = _vmap_norms(session, batch, dims, n)
            return PerSample(values, norms, float(loss.detach()), bnorm, "vmap")
        except Exception as exc:  # torch.func cannot trace some user code: loop instead
            note = f"vmap fell back to a loop: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    norms = _loop_norms(session, batch, n)
    return PerSample(values, norms, float(loss.detach()), bnorm, "loop", note)


def _norm(grads: list[torch.Tensor]) -> float:
    if not grads:
        return 0.0
    return float(torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(g.detach().float()) for g in grads])))


def _vmap_norms(session: Session, batch: Any, dims: Any, n: int) -> list[float]:
    from torch.func import functional_call, grad, vmap

    wrapper = _LossModule(session.model, session.plugin.module.loss_fn)
    params = {f"model.{k}": v.detach() for k, v in session.model.named_parameters()
              if v.requires_grad}
    frozen = {f"model.{k}": v.detach() for k, v in session.model.named_parameters()
              if not v.requires_grad}
    frozen.update({f"model.{k}": v for k, v in session.model.named_buffers()})

    def one(p: dict, sample: Any) -> torch.Tensor:
        b1 = map_rows(sample, dims, lambda t: t.unsqueeze(0))
        return functional_call(wrapper, (p, frozen), (b1,)).float().sum()

    size = sum(v.numel() for v in params.values()) * 4
    chunk = max(1, min(n, VMAP_BUDGET // max(1, size)))
    grads = vmap(grad(one), in_dims=(None, dims), chunk_size=chunk)(params, batch)
    sq = sum(g.detach().float().flatten(1).pow(2).sum(1) for g in grads.values())
    return [math.sqrt(float(x)) for x in sq.cpu()]


def _loop_norms(session: Session, batch: Any, n: int) -> list[float]:
    out = []
    for i in range(n):
        sub = select(session, batch, [i], n)
        session.losses(sub, precision=False).float().sum().backward()
        out.append(_norm([p.grad for p in session.params if p.grad is not None]))
        session.zero_grad()
    return out

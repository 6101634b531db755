"""Series roles: what a tag *is* (train loss, validation loss, grad norm, ...), from its name.

Detectors pick series by role, so this table decides what gets analysed. Rules are tried in
order; the first match wins. Users override with `--role ROLE=TAG` (parse_overrides).
Several tags may share a role (per-dataset losses stay separate tags).
"""
from __future__ import annotations

import re
from typing import Iterable

from .errors import InvalidParameterError

ROLES = ("train_loss", "val_loss", "grad_norm", "lr", "loss_scale", "train_acc", "val_acc",
         "skipped", "other")

_V = r"(?:val|valid|validation|eval|evaluation|test|dev|tel)\d*"
# Ordered: the first regex that matches (case-insensitive, search) gives the role.
_RULES: tuple[tuple[str, str], ...] = (
    # things that contain "loss" but are not losses
    (r"loss[ _-]?scale|scaler/scale|loss_scale|lossscale", "loss_scale"),
    # statistics kept about a series, not the series (Levanter's skip-step guard: its
    # loss/grad-norm running std and threshold, and its copy of the loss)
    (r"[_ /](std|threshold)$|(^|/)skip_step/", "other"),
    # how long something took, not what it measured: `loss_computation_time`, `loss_ms`
    (r"[/_ -](time|timing|duration|seconds|secs|ms)$", "other"),
    # the gap between test and train loss (a grokking study's `generalization_loss`)
    (r"generali[sz]ation[ _-]?(loss|gap)", "other"),
    (r"^grad/norm/total$", "grad_norm"),  # Levanter's watch callback: the global grad norm
    (r"num[ _]zeros", "other"),
    (r"skipped|nan[ _]iterations|overflow", "skipped"),
    (r"\bppl\b|perplexity|_ppl$|/ppl$|\bppl", "other"),
    (r"(^|[/_ -])(lr|learning[ _-]?rate)([/_ -]|$)|^lr-|learning-rate|optim/lr", "lr"),
    (r"grad[ _-]?norm|gnorm|grad_l2|gradient[ _-]norm|total[ _]grad[ _]norm|(^|/)norm$|^grad$|"
     r"^l2_norm/grad[_/]global$",
     "grad_norm"),
    (r"param(s|eter)?s?[ _-]?norm|weight[ _-]?norm", "other"),
    (r"(^|[/_ -])(balanc|aux|load_balancing|router|lb_loss)|z[ _-]?loss|^ewm|best[ _]loss|_best_",
     "other"),
    (rf"(^|/){_V}/downstream/|hellaswag|^eval$", "val_acc"),
    # GAN losses (pix2pix / CycleGAN): reconstruction terms behave like a training loss;
    # adversarial terms (G_GAN, G_A, D_*) oscillate by design and are not watched
    (r"^(G_\w*L1|cycle_\w+|idt_\w+)$", "train_loss"),
    # a GAN's generator and discriminator losses themselves (`g_loss`, `D_loss`: as `loss_G`,
    # `gen_loss`, `train/d_loss`) are train losses, parts of one objective
    # (`analysis.loss_parts`); their sub-terms (`d_loss_real`, `G_GAN`) stay unwatched
    (r"^[GD][ _-]?loss$", "train_loss"),
    (r"^(G|D)(_\w+)?$", "other"),
    # YOLOv10's results.csv: its one-to-many (`_om`) and one-to-one (`_oo`) heads' loss terms
    (r"^val/(box|cls|dfl)_o[mo]$", "val_loss"),
    (r"^train/(box|cls|dfl)_o[mo]$", "train_loss"),
    (rf"(^|[/_ -]){_V}([/_ -]|$).*acc|acc.*[/_ -]{_V}([/_ -]|$)", "val_acc"),
    # validation losses: "lm loss validation", "valid/c4_loss", "eval_loss", "val loss", "tel"
    (rf"(^|[/_ -]){_V}([/_ -]|$).*(loss|nll|ce\b|crossentropy)|"
     rf"(loss|nll|crossentropy).*([/_ -]){_V}([/_ -]|$)|^{_V}_?loss|^tel$", "val_loss"),
    (rf"^{_V}_?acc", "val_acc"),  # ValAcc, valacc (a script's own names)
    (r"acc(uracy)?", "train_acc"),
    (r"(^|[/_ -])(lm[ _-]?loss|loss|trl|train[ _/-]?loss|nll|ce[ _-]?loss|"
     r"crossentropyloss|ce loss|cross[ _-]?entropy)([/_ -]|$)|loss$|^loss", "train_loss"),
)
_COMPILED = tuple((re.compile(p, re.IGNORECASE), role) for p, role in _RULES)

# Tags that are bookkeeping, never metrics worth a role even if they match a rule above.
_OTHER_EXACT = re.compile(
    r"^(epoch|step|_step|_runtime|_timestamp|global_step|iteration|consumed[ _]samples|"
    r"tokens|samples|time|elapsed.*|throughput.*|tps|mfu|memory.*|"
    r".*\bvs (?:samples|tokens|gigaflos|steps)$|"
    r"train_runtime|train_samples_per_second|train_steps_per_second|total_flos|"
    r".*_runtime|.*_per_second)$", re.IGNORECASE)


def infer_role(tag: str) -> str:
    """The role a tag name implies; "other" when nothing matches."""
    name = tag.strip()
    if _OTHER_EXACT.match(name):
        return "other"
    for rx, role in _COMPILED:
        if rx.search(name):
            return role
    return "other"


#: Step axes other than the trainer's iteration, by tag suffix: Megatron writes every scalar a
#: second time as `<tag> vs samples` (step = consumed samples), Megatron-DeepSpeed also
#: `vs tokens` and `vs gigaflos`.
_AXIS = re.compile(r"\bvs (samples|tokens|gigaflos)$", re.IGNORECASE)
#: Keras' TensorBoard callback writes `epoch_loss`, `epoch_accuracy`... at the epoch (its
#: per-batch tags are `batch_loss`..., at the global batch).
_EPOCH_AXIS = re.compile(r"(^|/)epoch_\w")


def infer_axis(tag: str) -> str:
    """What a tag's step counts: "iteration" (the trainer's step), "samples", "tokens",
    "gigaflos" for Megatron's `... vs samples` family, "epoch" for Keras' `epoch_*` tags."""
    name = tag.strip()
    m = _AXIS.search(name)
    if m:
        return m.group(1).lower()
    return "epoch" if _EPOCH_AXIS.search(name) else "iteration"


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    """Parse `ROLE=TAG` items (as given to `--role`) into a tag → role mapping."""
    out: dict[str, str] = {}
    for item in items:
        role, sep, tag = item.partition("=")
        role, tag = role.strip(), tag.strip()
        if not sep or not tag:
            raise InvalidParameterError(f"`roles` expects ROLE=TAG, got {item!r}")
        if role not in ROLES:
            raise InvalidParameterError(
                f"--role: unknown role {role!r}; known roles: {', '.join(ROLES)}")
        out[tag] = role
    return out

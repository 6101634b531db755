"""Diagnosis: rules over the events of all series of a run plus its metadata → Findings.

Each rule reads the events of one run (every series) and the run's metadata, and returns at
most one Finding with a severity, an explanation, advice and the playbook entries it rests on
(docs/playbook.md). Advice wording lives here, in data, so reporters only format. Rules are an
explicit ordered tuple (`RULES`); each is a small function.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Callable, Mapping, Sequence

from .events import Event, Finding, severity_rank
from .playbook import CITES
from .records import RunMeta

Rule = Callable[[Sequence[Event], RunMeta, "int | Mapping[str, int] | None"], "Finding | None"]


def _ids(events: Sequence[Event]) -> tuple[str, ...]:
    return tuple(e.id for e in events)


def _of(events: Sequence[Event], kind: str) -> list[Event]:
    return [e for e in events if e.kind == kind]


def _steps(events: Sequence[Event], limit: int = 6) -> str:  # each step once
    steps = list(dict.fromkeys(str(e.start_step) for e in events))
    more = f" and {len(steps) - limit} more" if len(steps) > limit else ""
    return ", ".join(steps[:limit]) + more


def _init_std_note(meta: RunMeta) -> str | None:
    if meta.hidden_size and meta.init_method_std:
        rec = math.sqrt(1.0 / (3.0 * meta.hidden_size))
        if meta.init_method_std > rec * 1.05:
            return (f"init_method_std {meta.init_method_std:g} is larger than "
                    f"sqrt(1/(3*{meta.hidden_size})) = {rec:.5f}")
    return None


def _skips(events: Sequence[Event]) -> list[Event]:
    """fp16 overflow skips: a few isolated NaN/inf grad norms (the detector's `overflow_skip`)
    over steps where no other series (the loss) is non-finite too."""
    nf = _of(events, "nonfinite")
    hard = [e for e in nf if not e.details.get("overflow_skip")]
    return [e for e in nf if e.details.get("overflow_skip") and not any(
        h.start_step <= (e.end_step or e.start_step) and e.start_step <= (h.end_step or
                                                                         h.start_step)
        for h in hard)]


def _nonfinite(events: Sequence[Event]) -> list[Event]:
    """Non-finite events other than fp16 overflow skips and validation losses that were not
    computed (`mark_not_computed`)."""
    skips = {id(e) for e in _skips(events)}
    return [e for e in _of(events, "nonfinite") if id(e) not in skips
            and not e.details.get("not_computed")]


def mark_not_computed(events: Sequence[Event], train_tags: "set[str] | frozenset[str]",
                      first: "Mapping[str, int]") -> tuple[Event, ...]:
    """Mark (`details.not_computed`) a validation loss that is NaN/inf from its series' first
    point while the run has a training loss and no training loss is non-finite there or
    after (nor NaN to its own end, when it ends before): the trainer wrote NaN where it did not compute the validation loss (YOLO fills
    its `val/*_loss` columns with nan when they were not computed), not arithmetic that
    blew up — a model whose weights went NaN gives a NaN training loss too. A validation
    loss that turns NaN after being finite, and any NaN training loss, stay as they are."""
    train_nan = [e for e in _of(events, "nonfinite") if e.tag in train_tags]
    out = []
    for e in events:
        if (e.kind == "nonfinite" and train_tags and e.details.get("role") == "val_loss"
                and e.details.get("source") == "value" and from_start(e, first)
                and not any((t.end_step if t.end_step is not None else t.start_step)
                            >= e.start_step or not t.details.get("finite_after", True)
                            for t in train_nan)):
            e = replace(e, details={**e.details, "not_computed": True})
        out.append(e)
    return tuple(out)


def rule_val_not_computed(events: Sequence[Event], meta: RunMeta,
        first: "int | Mapping[str, int] | None" = None) -> Finding | None:
    found = [e for e in _of(events, "nonfinite") if e.details.get("not_computed")]
    if not found:
        return None
    tags = ", ".join(sorted({e.tag for e in found}))
    span = ", ".join(sorted({f"{e.start_step}-{e.end_step}" if e.end_step not in
                             (None, e.start_step) else str(e.start_step) for e in found}))
    return Finding(
        "info", f"The validation loss was not computed (NaN) at steps {span} ({tags})",
        f"{tags} is NaN/inf from its first evaluation while the training loss stayed finite: "
        "the trainer wrote NaN where it did not compute the validation loss (validation "
        "off, skipped for those epochs, or its loss not evaluated); training is not "
        "affected, but nothing can be said of overfitting there.",
        "Nothing to restart; if you meant to validate, check that validation runs and "
        "computes its loss (e.g. YOLO's `val=True` and a validation split).",
        _ids(found), (CITES["spike_types"],))


def _what(found: Sequence[Event]) -> str:
    """What is non-finite: "loss" unless every event is on a grad norm."""
    return ("grad norm" if all(e.details.get("role") == "grad_norm" for e in found)
            else "loss")


def rule_nonfinite(events: Sequence[Event], meta: RunMeta,
        first: "int | Mapping[str, int] | None" = None) -> Finding | None:
    found = [e for e in _nonfinite(events) if not from_start(e, first)]
    if not found:
        return None
    tags = sorted({e.tag for e in found})
    return Finding(
        "critical", f"Non-finite {_what(found)} (NaN/inf) from step {found[0].start_step}",
        f"{', '.join(tags)} became NaN or inf at step(s) {_steps(found)}. An update with "
        "a non-finite value corrupts the weights; what follows is not training.",
        "Restart from the last checkpoint before the first non-finite value and skip the "
        "batches up to it (see the skip plan); check the loss scale / precision if it recurs.",
        _ids(found), (CITES["palm"], CITES["low_precision"]))


def rule_broken_from_start(events: Sequence[Event], meta: RunMeta,
                           first: "int | Mapping[str, int] | None" = None) -> Finding | None:
    found = [e for e in _nonfinite(events) if from_start(e, first)]
    if not found:
        return None
    return Finding(
        "critical",
        f"The {_what(found)} is NaN/inf from the first logged step ({found[0].start_step})",
        f"{', '.join(sorted({e.tag for e in found}))} never had a finite value"
        + (" after the start" if any(not e.details.get("finite_after", True) for e in found)
           else "") + ": this is not an instability a restart could fix but a broken "
        "setup.",
        "Check the initialisation (init std), the data (empty or corrupt shards, token ids "
        "out of range), the precision and loss scaling, and the kernels (a fused op "
        "returning NaN); run a few steps in fp32 to find the first NaN.",
        _ids(found), (CITES["init"], CITES["low_precision"]))


def from_start(event: Event, first: "int | Mapping[str, int] | None") -> bool:
    """True when a non-finite stretch starts at its series' first logged step (`first`: the
    run's first step, or a mapping tag → first step of that tag)."""
    if isinstance(first, Mapping):
        first = first.get(event.tag)
    return first is not None and event.kind == "nonfinite" and event.start_step <= first


def rule_early_divergence_init(events: Sequence[Event], meta: RunMeta,
        first: "int | Mapping[str, int] | None" = None) -> Finding | None:
    div = _divergences(events) + _nonfinite(events)
    note = _init_std_note(meta)
    early = [e for e in div if e.start_step <= 5000]
    if not (early and note):
        return None
    rec2 = math.sqrt(2.0 / (5.0 * meta.hidden_size))  # type: ignore[operator]
    return Finding(
        "critical", f"Early divergence with a too-large init std (step {early[0].start_step})",
        f"The run diverged in its first few thousand iterations and {note}. Too large an "
        "initialisation stops a run early (Megatron's default 0.02 was too large for 104B).",
        f"Re-initialise with init_method_std = {math.sqrt(1 / (3 * meta.hidden_size)):.5f} "  # type: ignore[operator]
        f"(sqrt(1/(3*hidden))) or {rec2:.5f} (sqrt(2/(5*hidden))).",
        _ids(early), (CITES["init"],))


def _divergences(events: Sequence[Event]) -> list[Event]:
    return [e for e in _of(events, "divergence") if not e.details.get("component")
            and not e.details.get("val_improving")]


def rule_divergence(events: Sequence[Event], meta: RunMeta,
        first: "int | Mapping[str, int] | None" = None) -> Finding | None:
    div = _divergences(events)
    if not div:
        return None
    after_spike = [e for e in div if e.details.get("preceded_by_spike")]
    pair = [e for e in div if e.details.get("train_tag")]  # the run stage: train + validation
    how = ("after a spike it did not recover from" if after_spike
           else "without a preceding spike (a slow, sustained rise)")
    said = (f"The training loss rises and does not come back, {how}."
            if len(pair) < len(div) else "")
    keep = ""
    for e in pair[:1]:
        d = e.details
        said += (" " if said else "") + (
            f"{d['train_tag']} rose {1 + d['train_change']:.2f}x over its level at the best "
            f"evaluation (step {d['best_step']}) and {e.tag} has been at least "
            f"{1 + d['val_change']:.2f}x that best at every evaluation since (up to "
            f"{e.magnitude:.2f}x): the run got worse on the data it trains on and on held-out "
            "data alike, which is divergence, not overfitting.")
        keep = f" Keep the checkpoint of the best evaluation (step {d['best_step']})."
    return Finding(
        "critical", f"Divergence from step {div[0].start_step}", said,
        "Restart from a checkpoint before the onset and skip the batches through it (PaLM); "
        "if it recurs at the same parameter state, lower the learning rate or look at the "
        "optimizer state (Adam epsilon) and numerics." + keep,
        _ids(div), (CITES["spike_types"], CITES["palm"]))


def rule_component_rise(events: Sequence[Event], meta: RunMeta,
        first: "int | Mapping[str, int] | None" = None) -> Finding | None:
    parts = [e for e in _of(events, "divergence") if e.details.get("component")
             and not e.details.get("objective")]
    parts += [e for e in _of(events, "spike") if e.details.get("negligible")]
    if not parts:
        return None
    tags = sorted({e.tag for e in parts})
    total = ", ".join(parts[0].details.get("total_tags", ()))
    return Finding(
        "info", f"A loss component rose while the total did not ({', '.join(tags)})",
        f"{', '.join(tags)} rose from step(s) {_steps(parts)} while the total loss ({total}) "
        "did not diverge (or stayed a thousand times larger): the parts of a multi-part loss "
        "trading off, not a diverging run.",
        "Nothing to restart; if that part matters on its own, reweight it.",
        _ids(parts), (CITES["spike_types"],))


def rule_objective_change(events: Sequence[Event], meta: RunMeta,
        first: "int | Mapping[str, int] | None" = None) -> Finding | None:
    rose = [e for e in _of(events, "divergence") if e.details.get("objective")]
    if not rose:
        return None
    flat = sorted({t for e in rose for t in e.details.get("flat_tags", ())})
    return Finding(
        "info", f"The total loss rose while its parts did not ({', '.join(sorted({e.tag for e in rose}))})",
        f"The total training loss rose from step(s) {_steps(rose)} while {', '.join(flat)} "
        "stayed flat: the objective changed (a term's weight on a schedule, such as KL "
        "annealing or a growing penalty), the model did not get worse.",
        "Nothing to restart; compare runs on the part that stayed comparable.",
        _ids(rose), (CITES["spike_types"],))


def rule_harder_task(events: Sequence[Event], meta: RunMeta,
        first: "int | Mapping[str, int] | None" = None) -> Finding | None:
    rose = [e for e in _of(events, "divergence") if e.details.get("val_improving")]
    if not rose:
        return None
    vals = ", ".join(sorted({t for e in rose for t in e.details.get("val_tags", ())}))
    return Finding(
        "info", f"The training loss rose while validation improved "
        f"({', '.join(sorted({e.tag for e in rose}))})",
        f"The training loss rose from step(s) {_steps(rose)} while {vals} kept falling over "
        "the same steps: a model that diverged does worse on held-out data too, so the "
        "training task got harder (a curriculum, rising augmentation or difficulty, a "
        "changed data mix), not the model worse.",
        "Nothing to restart; if the training objective was not meant to change, check the "
        "data pipeline and the schedule of what is trained on.",
        _ids(rose), (CITES["spike_types"],))


def rule_unrecovered_spikes(events: Sequence[Event], meta: RunMeta,
        first: "int | Mapping[str, int] | None" = None) -> Finding | None:
    bad = [e for e in _of(events, "spike") if e.recovery == "none"
           and not e.details.get("negligible")]
    if not bad:
        return None
    return Finding(
        "critical", f"{len(bad)} spike(s) that never recovered",
        f"The loss spiked at step(s) {_steps(bad)} and settled higher (or never came back "
        "before the end). PaLM saw such spikes at irregular intervals despite clipping: a bad "
        "batch together with a particular parameter state.",
        "Restart from a checkpoint ~100 steps before each spike and skip 200-500 batches "
        "(the skip plan gives the exact ranges and flags for your trainer); confirm with "
        "`losslens replay`.",
        _ids(bad), (CITES["palm"], CITES["spike_types"]))


def rule_slow_spikes(events: Sequence[Event], meta: RunMeta,
        first: "int | Mapping[str, int] | None" = None) -> Finding | None:
    slow = [e for e in _of(events, "spike") if e.recovery == "slow"]
    if not slow:
        return None
    return Finding(
        "warning", f"{len(slow)} slowly recovering spike(s)",
        f"The loss spiked at step(s) {_steps(slow)} and took long to get back to where it "
        "left off; each costs the steps it took to recover.",
        "Watch for recurrence; if they become frequent, apply the PaLM restart-and-skip "
        "before the next one and check the grad-norm series for growth before them.",
        _ids(slow), (CITES["spike_types"],))


def rule_last_point_spikes(events: Sequence[Event], meta: RunMeta,
        first: "int | Mapping[str, int] | None" = None) -> Finding | None:
    # below a doubling, one point at the end is no evidence worth a warning (it stays info)
    last = [e for e in _of(events, "spike") if e.recovery is None and e.end_step is None
            and not e.details.get("negligible") and not (
                e.details.get("magnitude_units") == "ratio" and e.magnitude < 2)]
    if not last:
        return None
    return Finding(
        "warning", f"{len(last)} spike(s) at the last point: recovery not known yet",
        f"The loss jumped at step(s) {_steps(last)}, the last point of its series: with "
        "nothing after it, one point cannot say whether the loss comes back.",
        "Look at the next points (`losslens watch` follows the run); if it stays up, treat it "
        "as a spike that never recovered. If the run stopped there, it ended blown up: resume "
        f"from a checkpoint before step {min(e.start_step for e in last)}, not from its last "
        "state.",
        _ids(last), (CITES["spike_types"],))


def _blowup(e: Event) -> bool:
    """A fast spike EXTREME_LOSS x its level or more (a blow-up, not a bad batch's bump)."""
    return e.recovery == "fast" and e.details.get("magnitude_units") == "ratio" \
        and (e.magnitude or 0.0) >= EXTREME_LOSS


def _came_back(events: Sequence[Event]) -> list[Event]:
    """Fast spikes, less those where a divergence starts: down from the peak, never back."""
    onsets = [d.start_step for d in _divergences(events)]
    return [e for e in _of(events, "spike") if e.recovery == "fast" and not any(
        e.start_step <= d <= (e.end_step or e.start_step) for d in onsets)]


def rule_fast_blowups(events: Sequence[Event], meta: RunMeta,
        first: "int | Mapping[str, int] | None" = None) -> Finding | None:
    """Fast spikes of EXTREME_LOSS x their level or more: back at once, but a loss orders of
    magnitude over its level is a numerical blow-up (an overflow, a corrupt batch), not noise;
    a storm of them is one finding."""
    big = [e for e in _came_back(events) if _blowup(e)]
    if not big:
        return None
    top = max(big, key=lambda e: e.magnitude or 0.0)
    return Finding(
        "warning", f"{len(big)} blow-up(s) of the loss that came back at once",
        f"The loss jumped to {EXTREME_LOSS:.0f}x its level or more at step(s) {_steps(big)} "
        f"(largest x{top.magnitude or 0:.3g} at step {top.start_step}) and was back at the "
        "next points: a value that far off is a numerical blow-up (an overflow in the loss, a "
        "corrupt or extreme batch), not the noise of training.",
        "Look at the batches of those steps and at how the loss is computed (log of 0, exp "
        "overflow, mixed precision); if they recur, guard the loss or skip those batches.",
        _ids(big), (CITES["spike_types"],))


#: A fast spike this many times its level is a blow-up worth a warning (as for grad norms).
EXTREME_LOSS = 1000.0


def rule_fast_spikes(events: Sequence[Event], meta: RunMeta,
        first: "int | Mapping[str, int] | None" = None) -> Finding | None:
    fast = [e for e in _came_back(events) if not _blowup(e)]
    if not fast:
        return None
    return Finding(
        "info", f"{len(fast)} fast-recovering spike(s)",
        f"Spikes at step(s) {_steps(fast)} came back to the pre-spike level quickly"
        + _period_note(fast) + ".",
        ("Usually harmless: no action needed." if not _period_note(fast) else
         "Spikes at a steady interval come from the data order (an epoch boundary, a "
         "recurring shard): harmless if they stay fast; shuffle across epochs to remove them."),
        _ids(fast), (CITES["spike_types"],))


def rule_adam_eps(events: Sequence[Event], meta: RunMeta,
        first: "int | Mapping[str, int] | None" = None) -> Finding | None:
    # "led": the grad norm rose before the loss did (lag > 0); a grad spike at the loss
    # spike's own step is the bad batch's gradient, not Adam's update running away
    led = [e for e in _of(events, "grad_spike")
           if e.details.get("loss_followed") and (e.details.get("lag_steps") or 0) > 0]
    if not led:
        return None
    eps = meta.adam_eps
    if eps is not None and eps < 1e-8:
        return None
    said = f"Adam epsilon is {eps:g}" if eps is not None else "Adam epsilon is not in the log"
    return Finding(
        "warning", f"Loss spikes led by grad-norm spikes ({len(led)})",
        f"The gradient norm spiked before the loss at step(s) {_steps(led)}; {said}. "
        "Divergent spikes come from time-domain correlation in Adam's update once gradient "
        "components become comparable to epsilon.",
        "Use a much smaller Adam epsilon (1e-12 or even 0 with a guarded division), or "
        "lower beta2.", _ids(led), (CITES["adam_eps"],))


def rule_fp16_overflow(events: Sequence[Event], meta: RunMeta,
        first: "int | Mapping[str, int] | None" = None) -> Finding | None:
    over = _of(events, "overflow")
    skips = _skips(events)
    if not (over or skips):
        return None
    severe = [e for e in over if e.severity != "info"]
    precision = meta.precision or "fp16 (loss scaling in use)"
    where = sorted(over + skips, key=lambda e: e.start_step)
    bursts = [f"{a}" if a == b else f"{a}-{b}" for e in skips
              for a, b in e.details.get("bursts", ())][:6]
    nan = (f" ({', '.join(sorted({e.tag for e in skips}))} NaN/inf only at step(s) "
           f"{', '.join(bursts)}, the loss finite: the scaler skipped those updates)"
           if skips else "")
    return Finding(
        "warning" if severe else "info",
        f"fp16 overflows / skipped iterations ({len(where)} burst(s))",
        f"The loss scale dropped or iterations were skipped at step(s) {_steps(where)}{nan} "
        f"(precision: {precision}). Loss-scale collapse and skipped iterations are fp16 "
        "symptoms; attention scores scaled after Q·K can overflow.",
        "Train in bf16 if the hardware allows (BLOOM's cure); otherwise scale Q and K by "
        "1/sqrt(sqrt(d)) each before the matmul and add an embedding layer-norm.",
        _ids(where), (CITES["low_precision"],))


def rule_resume(events: Sequence[Event], meta: RunMeta,
        first: "int | Mapping[str, int] | None" = None) -> Finding | None:
    spikes = _of(events, "resume_spike")
    if not spikes:
        return None
    every = any(e.details.get("every_resume") for e in spikes)
    return Finding(
        "warning", "Loss spike at every resume" if every else "Loss spike after a resume",
        f"The loss jumped right after resuming at step(s) {_steps(spikes)}"
        + (" — at every resume." if every else "."),
        "Save and restore the data sampler / dataloader state (and RNG state) with the "
        "checkpoint, so a resumed job sees the batches it would have seen.",
        _ids(spikes), (CITES["resume"],))


def rule_repeat_data(events: Sequence[Event], meta: RunMeta,
        first: "int | Mapping[str, int] | None" = None) -> Finding | None:
    rep = _of(events, "repeat_data")
    if not rep:
        return None
    return Finding(
        "warning", "Replayed data after a rollback",
        f"After resuming at step(s) {_steps(rep)} the loss ran below the first pass over the "
        "same steps, then jumped back up: the data stream restarted from data the model had "
        "already seen, so the loss was under-reported.",
        "Make the sampler resume from the checkpoint's position (consumed samples) instead "
        "of restarting from scratch.", _ids(rep), (CITES["resume"],))


def rule_rollback(events: Sequence[Event], meta: RunMeta,
        first: "int | Mapping[str, int] | None" = None) -> Finding | None:
    rb = _of(events, "rollback")
    if not rb:
        return None
    return Finding(
        "info", f"{len(rb)} resume(s)/rollback(s) stitched",
        f"The step counter went back at step(s) {_steps(rb)}; losslens kept the last write "
        "per step (W&B cannot plot a rollback; TensorBoard overlaps restarted runs).",
        "Nothing to do; see the raw view (`losslens series --raw`) for every segment.",
        _ids(rb), (CITES["resume"],))


def rule_grokking(events: Sequence[Event], meta: RunMeta,
        first: "int | Mapping[str, int] | None" = None) -> Finding | None:
    # a sudden drop at an LR step is the schedule, at an epoch's start the data seen again
    grok = _of(events, "grokking") + [e for e in _of(events, "sudden_drop")
                                      if not e.details.get("lr_drop")
                                      and e.details.get("epoch_boundary") is None]
    if _of(events, "overfitting"):  # memorisation is not grokking: a train-loss drop
        grok = _of(events, "grokking")  # while validation worsens is no reason to carry on
    if not grok:
        return None
    return Finding(
        "info", "Grokking / sudden improvement",
        f"A sudden improvement after a slow stretch at step(s) {_steps(grok)} (delayed "
        "generalisation, or the 'grokking moment' of pre-training).",
        "Nothing to fix; do not stop such a run early on a flat validation curve.",
        _ids(grok), (CITES["grokking"],))


def rule_epoch_drops(events: Sequence[Event], meta: RunMeta,
        first: "int | Mapping[str, int] | None" = None) -> Finding | None:
    """Sudden drops where a new epoch begins: the multi-epoch staircase, not grokking."""
    drops = [e for e in _of(events, "sudden_drop") if not e.details.get("lr_drop")
             and e.details.get("epoch_boundary") is not None]
    if not drops:
        return None
    at = ", ".join(str(e.details["epoch_boundary"]) for e in drops[:6])
    return Finding(
        "info", f"Loss drops at epoch boundaries ({len(drops)})",
        f"The training loss dropped sharply at step(s) {_steps(drops)}, where a new epoch "
        f"began (step(s) {at}): the model meets examples it has already seen, the usual "
        "staircase of a multi-epoch run (memorisation of repeated data), not grokking.",
        "Nothing to fix in the training loss; judge the run on its validation loss (a "
        "validation loss that rises from epoch to epoch is overfitting: fewer epochs).",
        _ids(drops), (CITES["grokking"],))


def rule_overfitting(events: Sequence[Event], meta: RunMeta,
        first: "int | Mapping[str, int] | None" = None) -> Finding | None:
    over = _of(events, "overfitting") + [e for e in _of(events, "changepoint")
                                         if e.details.get("pattern") == "overfitting"]
    if not over:
        return None
    e, n = over[0], over[0].details.get("evals_after")
    also = ", ".join(sorted({o.tag for o in over} - {e.tag}))
    how = (f" ({e.tag} up x{e.magnitude:.2f} over {n} evaluations"
           f"{'; also ' + also if also else ''})"
           if e.kind == "overfitting" and n and e.magnitude else "")
    clear = any(o.kind != "overfitting" or o.severity != "info" for o in over)  # info: a
    # drift within the evaluation noise (detectors/overfitting.py: CLEAR_Z)
    blind = all("train_tag" in o.details and o.details["train_tag"] is None for o in over)
    why = (", and the log has no training curve to compare with: a validation loss that rises "
           "while the training loss falls is overfitting (memorisation), one that rises with "
           "it is divergence" if blind else " while the training loss did not: memorisation "
           "without generalisation (not grokking)")
    return Finding(
        "warning" if clear else "info",
        f"{'Overfitting' if clear else 'Validation loss drifting up'} from step {e.start_step}",
        f"Validation loss has been getting worse since step(s) {_steps(over)}{how}{why}."
        + ("" if clear else " The rise is within a few times the run's evaluation-to-"
           "evaluation noise: a mild drift so far, not yet a clear overfit."),
        f"Keep the checkpoint nearest step {e.details.get('best_step', e.start_step)} (the best "
        "validation loss); add "
        "data or regularisation, or stop earlier.", _ids(over), (CITES["grokking"],))


def rule_grad_spikes(events: Sequence[Event], meta: RunMeta,
        first: "int | Mapping[str, int] | None" = None) -> Finding | None:
    """Grad-norm spikes the loss did not follow, summarised in one line (a storm of them is
    one finding); an extreme one (x1000 or more) is worth a look even so."""
    quiet = [e for e in _of(events, "grad_spike") if not e.details.get("loss_followed")]
    if not quiet:
        return None
    top = max(quiet, key=lambda e: e.magnitude or 0.0)
    big = (top.magnitude or 0.0) >= EXTREME_GRAD
    return Finding(
        "warning" if big else "info",
        f"{len(quiet)} grad-norm spike(s) the loss did not follow"
        + (f" (one x{top.magnitude:.0f})" if big else ""),
        f"The gradient norm jumped at step(s) {_steps(quiet)} (largest x{top.magnitude or 0:.3g} "
        f"at step {top.start_step}) and the loss did not react"
        + _period_note(quiet) + ": gradient clipping (or Adam's normalisation) absorbed it.",
        ("Look at the batch of the largest one: a norm that many times its level points at "
         "corrupt or extreme data." if big else "No action needed; if they grow in size or "
         "frequency, check the data and the learning rate."),
        _ids(quiet), (CITES["spike_types"],))


#: A grad-norm spike this many times its level is worth a warning even when the loss ignores it.
EXTREME_GRAD = 1000.0


def _period_note(events: Sequence[Event]) -> str:
    """", about every N steps" when the events recur at a steady interval (an epoch or data
    boundary), else ""."""
    if len(events) < 5:
        return ""
    gaps = [b.start_step - a.start_step for a, b in zip(events, events[1:])]
    mean = sum(gaps) / len(gaps)
    spread = (sum((g - mean) ** 2 for g in gaps) / len(gaps)) ** 0.5
    return f", about every {mean:.0f} steps" if mean > 0 and spread <= 0.25 * mean else ""


def rule_isolated_dataset_spikes(events: Sequence[Event], meta: RunMeta,
        first: "int | Mapping[str, int] | None" = None) -> Finding | None:
    alone = [e for e in _of(events, "spike") if e.details.get("isolated")]
    if not alone:
        return None
    tags = sorted({e.tag for e in alone})
    return Finding(
        "info", "Spikes in one dataset's loss only",
        f"{', '.join(tags)} spiked at step(s) {_steps(alone)} while the other losses did not: "
        "the cause is in that dataset's data, not in the optimizer state.",
        "Inspect that dataset's batches at those steps; consider filtering them.",
        _ids(alone), (CITES["spike_types"],))


RULES: tuple[Rule, ...] = (
    rule_broken_from_start, rule_early_divergence_init, rule_nonfinite, rule_divergence, rule_unrecovered_spikes,
    rule_slow_spikes, rule_last_point_spikes, rule_adam_eps, rule_fp16_overflow, rule_resume, rule_repeat_data,
    rule_overfitting, rule_isolated_dataset_spikes, rule_grokking, rule_epoch_drops,
    rule_fast_blowups, rule_fast_spikes,
    rule_grad_spikes, rule_component_rise, rule_objective_change, rule_rollback,
    rule_val_not_computed, rule_harder_task,
)

def no_loss(roles: "Mapping[str, str]") -> Finding | None:
    """A run without a train/val loss series (`roles`: tag → role): not "clean", unchecked."""
    if any(r in ("train_loss", "val_loss") for r in roles.values()):
        return None
    read = ", ".join(sorted(roles)[:6]) + (" and more" if len(roles) > 6 else "")
    return Finding(
        "info", "No loss series: the loss was not checked",
        (f"None of the series read ({read}) has a loss role" if roles else "The run has no "
         "series") + ": spikes, divergence and non-finite losses were not looked for.",
        "If one of these series is a loss, name it: --role train_loss=TAG (or val_loss=TAG).",
        (), (CITES["spike_types"],), "no_loss")


def rule_name(rule: Rule) -> str:
    """A rule's stable name: `rule_nonfinite` → "nonfinite" (check items, JSON `rule`)."""
    return rule.__name__.removeprefix("rule_")


def diagnose(events: Sequence[Event], meta: RunMeta,
             first_step: "int | Mapping[str, int] | None" = None,
             roles: "Mapping[str, str] | None" = None) -> list[Finding]:
    """Every finding the rules make of one run, most severe first (stable within a level).

    `first_step` is the run's first logged step, or tag → first step of each series: a
    loss that is broken from there on is a setup problem, not an instability. `roles` (tag
    → role): `no_loss` for a run without a loss."""
    found = [replace(f, rule=rule_name(rule)) for rule in RULES
             if (f := rule(events, meta, first_step)) is not None]
    if roles is not None and (f := no_loss(roles)) is not None:
        found.append(f)
    return sorted(found, key=lambda f: -severity_rank(f.severity))


def settle(events: Sequence[Event], findings: Sequence[Finding]) -> tuple[Event, ...]:
    """One severity policy for events and findings: an event is as severe as the most severe
    finding that cites it, and `info` when none does. So no warning event goes unexplained,
    and a rollback cannot be louder than the run's worst finding."""
    level: dict[str, str] = {}
    for f in findings:
        for i in f.event_ids:
            if severity_rank(f.severity) > severity_rank(level.get(i, "info")):
                level[i] = f.severity
    return tuple(e if e.severity == level.get(e.id, "info")
                 else replace(e, severity=level.get(e.id, "info")) for e in events)

"""Skip-list exporters: the PaLM skip plan in the exact form each trainer takes.

Where real users got bitten is how steps are counted, so every export says it. The plan's ranges
are the trainer's iteration numbers as logged, inclusive on both ends; a checkpoint saved at
iteration R holds the state after R iterations, so a run restarted from it executes R + 1 first.

Targets (what each trainer's source does with the value, checked against the source):

- ``megatron-deepspeed``: ``--skip-train-iteration-range A-B C-D`` (dash-separated, inclusive,
  1-based as logged; skipped iterations still advance the iteration counter, so later
  iterations keep their logged numbers). bigscience Megatron-DeepSpeed issue #230: a range
  that lies before the iteration the job starts from is ignored, so restart before them all.
- ``megatron-lm``: ``--iterations-to-skip N N N ...`` (``nargs='+'``, ``type=int``: one entry per
  iteration, no ranges). megatron/training/training.py tests ``(iteration + 1) in
  args.iterations_to_skip`` at the top of the loop, where ``iteration`` counts completed
  iterations: entries are 1-indexed, as logged. Forks that test ``iteration in ...`` are
  0-indexed: subtract 1 there.
- ``metaseq``: ``--skip-batches A-B,C-D`` (one comma-separated string; metaseq/cli/train.py
  ``get_skip_batches``). A range ``A-B`` is keyed by the update about to run
  (``num_updates + 1``, 1-based) and skips ``B - A + 1`` batches there; skipped batches do not
  advance ``num_updates``, so every later range is shifted down by the batches skipped before it.
- ``samples``: sample-index ranges ``first-last`` (0-based, inclusive): iteration i (1-based)
  consumes samples ``(i - 1) * GBS .. i * GBS - 1`` at a constant global batch size GBS.
- ``json`` and ``text``: documents with the plan, the flags above and the counting rules.

Where checkpoints come from is `losslens.checkpoints`; the plan is `pipeline.analyze`'s.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .errors import InvalidParameterError
from .events import SkipPlan
from .skipplan import SkipPolicy, restart_note
from .textsafe import line as one_line

SCHEMA = "losslens.skiplist/1"
FLAG_TARGETS = ("megatron-deepspeed", "megatron-lm", "metaseq", "samples", "gpt-neox", "hf")
TARGETS = FLAG_TARGETS + ("json", "text")

COUNTING = ("steps are the trainer's iteration numbers as logged (iteration N is the N-th "
            "optimizer step, 1-based); ranges are inclusive on both ends; a checkpoint saved at "
            "iteration R holds the state after R iterations, so the restarted run executes "
            "iteration R+1 first")


@dataclass(frozen=True)
class PlanContext:
    """A skip plan and what an export needs to say about it."""

    run: str
    source: str
    plan: SkipPlan
    checkpoints: tuple[int, ...] | None = None
    checkpoint_source: str = "none"
    policy: SkipPolicy = field(default_factory=SkipPolicy)
    global_batch_size: int | None = None
    rampup_batch_size: str | None = None
    first_step: int | None = None
    warnings: tuple[str, ...] = ()
    indexing: int = 1  # Megatron-LM: 1 (upstream: `(iteration + 1) in ...`) or 0 (forks)
    compact: bool = False  # Megatron-LM: `$(seq A B)` per range instead of every integer


@dataclass(frozen=True)
class Export:
    """What to print: `stdout` is paste-able; `notes` are comment lines for stderr."""

    stdout: str
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


# --------------------------------------------------------------------------- flag strings

def _ranges(plan: SkipPlan) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in plan.skip]


def megatron_deepspeed_flag(plan: SkipPlan) -> str:
    return "--skip-train-iteration-range " + " ".join(f"{a}-{b}" for a, b in _ranges(plan))


def megatron_lm_flag(plan: SkipPlan, indexing: int = 1, compact: bool = False) -> str:
    """`--iterations-to-skip N ...`: one entry per iteration, as logged (`indexing=1`,
    upstream) or minus one (`indexing=0`, forks that test `iteration in ...`); `compact`
    writes each range as `$(seq A B)` for a shell to expand."""
    if indexing not in (0, 1):
        raise InvalidParameterError(f"`indexing` must be 0 or 1, got {indexing}")
    shift = 1 - indexing
    ranges = [(a - shift, b - shift) for a, b in _ranges(plan)]
    if compact:
        return "--iterations-to-skip " + " ".join(
            str(a) if a == b else f"$(seq {a} {b})" for a, b in ranges)
    return "--iterations-to-skip " + " ".join(str(i) for a, b in ranges
                                              for i in range(a, b + 1))


def neox_line(plan: SkipPlan) -> str:
    """GPT-NeoX config entry (YAML, JSON-style as NeoX configs are written)."""
    return '"skip_train_iteration_ranges": ' + json.dumps([list(r) for r in _ranges(plan)])


def hf_document(ctx: "PlanContext") -> str:
    """What `losslens.skipdata` reads for an HF Trainer or a plain PyTorch loop."""
    return json.dumps({"schema": "losslens.skipdata/1", "run": ctx.run,
                       "restart_from_step": ctx.plan.restart_from_step,
                       "skip_steps": [list(r) for r in _ranges(ctx.plan)],
                       "step_counting": "optimizer steps, 1-based, inclusive"})


def metaseq_ranges(plan: SkipPlan) -> list[tuple[int, int]]:
    """metaseq's keys: each range shifted down by the batches skipped before it."""
    out, skipped = [], 0
    for a, b in _ranges(plan):
        out.append((a - skipped, b - skipped))
        skipped += b - a + 1
    return out


def metaseq_flag(plan: SkipPlan) -> str:
    return "--skip-batches " + ",".join(f"{a}-{b}" for a, b in metaseq_ranges(plan))


#: Formats whose trainer takes Megatron's skip flags, and fairseq's (metaseq's flag).
MEGATRON_FORMATS = ("megatron",)
FAIRSEQ_FORMATS = ("fairseq",)
#: Formats of trainers with no skip flag: the data side skips (`losslens.skipdata`).
LOOP_FORMATS = ("hf-trainer", "hf-trainer-state", "nanogpt", "modded-nanogpt", "llmc",
                "llmc-mainlog", "build-nanogpt", "build-nanogpt-log", "torchtitan", "olmo",
                "olmo-core", "torchtune", "composer", "lightning-csv", "levanter", "maxtext",
                "t5x", "fairseq2", "fairseq2-jsonl", "epoch-pipes", "step-pipes", "epoch-lines",
                "history-json", "pix2pix", "deepspeed")


def trainer_rows(plan: SkipPlan, fmt: str | None) -> list[tuple[str, str]]:
    """(trainer, what to pass it) for the reports' plan table: the forms of the trainer that
    wrote a log of format `fmt` (Megatron's flags for a Megatron log; `--target hf` and
    losslens.skipdata for an HF Trainer, nanoGPT or another loop with no skip flag), every
    form when the format does not say (TensorBoard, W&B, CSV, JSON lines)."""
    known = fmt in MEGATRON_FORMATS + FAIRSEQ_FORMATS + LOOP_FORMATS
    rows: list[tuple[str, str]] = []
    if fmt in MEGATRON_FORMATS or not known:
        rows.append(("Megatron-DeepSpeed", megatron_deepspeed_flag(plan)))
        rows.append(("Megatron-LM (1-indexed)", _short("megatron-lm", megatron_lm_flag(plan))))
    if fmt in FAIRSEQ_FORMATS or not known:
        rows.append(("metaseq", metaseq_flag(plan)))
    if fmt in LOOP_FORMATS or not known:
        rows.append(("HF Trainer / PyTorch loop", "losslens skiplist RUN --target hf > "
                     "plan.json, then losslens.skipdata (skipping_trainer / SkipBatches)"))
    return rows


def sample_ranges(ctx: PlanContext) -> list[tuple[int, int]]:
    if ctx.plan.samples is not None:
        return [(int(a), int(b)) for a, b in ctx.plan.samples]
    gbs = ctx.global_batch_size
    if not gbs:
        raise InvalidParameterError(
            f"the samples target needs the global batch size and the log of run {ctx.run} does "
            "not give it: pass --global-batch-size N")
    return [((a - 1) * gbs, b * gbs - 1) for a, b in _ranges(ctx.plan)]


def samples_line(ctx: PlanContext) -> str:
    return " ".join(f"{a}-{b}" for a, b in sample_ranges(ctx))


# --------------------------------------------------------------------------- notes

def _restart_note(ctx: PlanContext) -> str:
    return restart_note(ctx.plan.restart_from_step, ctx.checkpoints, ctx.checkpoint_source,
                        ctx.first_step, ctx.policy.before)


def _common_notes(ctx: PlanContext) -> list[str]:
    notes = [f"losslens skip plan for run {ctx.run} ({ctx.source})", _restart_note(ctx),
             COUNTING]
    if ctx.first_step == 0:
        notes.append("this log counts steps from 0 (its first logged step is 0): check that "
                     "your trainer numbers iterations the same way before pasting")
    notes.append(f"reason: {ctx.plan.reason}")
    return notes


def _rampup_warning(ctx: PlanContext) -> list[str]:
    if not ctx.rampup_batch_size:
        return []
    return [f"run {ctx.run} ramps the batch size up (rampup_batch_size {ctx.rampup_batch_size}): "
            "sample ranges computed as iteration x global batch size are too high by the "
            "samples the ramp-up did not consume; take the 'consumed samples' the log prints "
            "at those iterations instead"]


def _target_notes(target: str, ctx: PlanContext) -> list[str]:
    if target == "megatron-deepspeed":
        return ["Megatron-DeepSpeed --skip-train-iteration-range: dash-separated inclusive "
                "ranges, 1-based as logged; skipped iterations still advance the iteration "
                "counter, so later iterations keep their logged numbers",
                "every range must lie after the iteration you restart from (a range already "
                "passed is ignored; bigscience Megatron-DeepSpeed issue #230)"]
    if target == "megatron-lm":
        n = sum(b - a + 1 for a, b in _ranges(ctx.plan))
        notes = [f"Megatron-LM --iterations-to-skip takes one integer per iteration ({n} "
                 "here), no ranges" + ("; written as $(seq A B) for your shell to expand"
                                      if ctx.compact else "")]
        if ctx.indexing == 1:
            notes += ["1-indexed as logged (--indexing 1): upstream training.py skips when "
                      "(iteration + 1) is in the list, iteration counting completed iterations",
                      "releases and forks that test `iteration in args.iterations_to_skip` "
                      "are 0-indexed: use --indexing 0 there"]
        else:
            notes += ["0-indexed (--indexing 0): every entry is the logged iteration minus 1, "
                      "for releases and forks that test `iteration in args.iterations_to_skip`"]
        return notes
    if target == "gpt-neox":
        return ["GPT-NeoX config entry: paste into the config's top-level mapping; inclusive "
                "[first, last] iteration ranges, 1-based as logged, as Megatron-DeepSpeed's "
                "--skip-train-iteration-range (upstream GPT-NeoX does not have this key; it "
                "is the one NeoX forks carrying Megatron-DeepSpeed's skip feature read)"]
    if target == "hf":
        return ["for an HF Trainer or a plain PyTorch loop: save this JSON and wrap the "
                "training batches with losslens.skipdata (SkipBatches for a loop, "
                "skipping_trainer(Trainer, plan) for an HF Trainer); steps are optimizer "
                "steps, 1-based (HF's global_step after the update), inclusive; with "
                "gradient accumulation every micro-batch of a skipped step is skipped"]
    if target == "metaseq":
        shifted = metaseq_ranges(ctx.plan)
        notes = ["metaseq --skip-batches: comma-separated A-B ranges keyed by the update about "
                 "to run (num_updates + 1, 1-based); A-B skips B-A+1 batches before update A; "
                 "skipped batches do not advance num_updates"]
        if len(shifted) > 1:
            pairs = ", ".join(f"{a}-{b} -> {c}-{d}" for (a, b), (c, d)
                              in zip(_ranges(ctx.plan), shifted))
            notes.append("so each later range is shifted down by the batches skipped before "
                         f"it (logged iterations -> metaseq keys: {pairs})")
        return notes
    if target == "samples":
        gbs = ctx.global_batch_size
        return [f"sample indices, 0-based, inclusive: iteration i (1-based) consumes samples "
                f"(i-1)*GBS .. i*GBS-1 with GBS = {gbs if gbs else 'the global batch size'}; "
                "for trainers that skip by consumed samples"]
    return []


# --------------------------------------------------------------------------- documents

def flags(ctx: PlanContext) -> dict[str, str | None]:
    """Every flag target's string (samples: None when the batch size is unknown)."""
    out: dict[str, str | None] = {
        "megatron-deepspeed": megatron_deepspeed_flag(ctx.plan),
        "megatron-lm": megatron_lm_flag(ctx.plan, ctx.indexing),
        "metaseq": metaseq_flag(ctx.plan),
        "gpt-neox": neox_line(ctx.plan)}
    try:
        out["samples"] = samples_line(ctx)
    except InvalidParameterError:
        out["samples"] = None
    return out


def plan_document(ctx: PlanContext) -> dict:
    """One run's entry of the `losslens.skiplist/1` document."""
    p = ctx.plan
    samples = flags(ctx)["samples"]
    return {
        "run": ctx.run, "source": ctx.source,
        "restart_from_step": p.restart_from_step,
        "skip": [list(r) for r in _ranges(p)], "units": p.units,
        "samples": [list(r) for r in sample_ranges(ctx)] if samples else None,
        "global_batch_size": ctx.global_batch_size,
        "checkpoints": {"source": ctx.checkpoint_source,
                        "steps": list(ctx.checkpoints) if ctx.checkpoints is not None else None},
        "policy": {"before": ctx.policy.before, "min_skip": ctx.policy.min_skip,
                   "max_skip": ctx.policy.max_skip},
        "step_counting": COUNTING,
        "flags": flags(ctx),
        "reason": p.reason,
        "warnings": list(ctx.warnings) + _rampup_warning(ctx),
    }


def json_document(contexts: Sequence[PlanContext]) -> str:
    from . import __version__

    doc = {"schema": SCHEMA, "version": __version__,
           "runs": [plan_document(c) for c in contexts]}
    return json.dumps(doc, indent=2) + "\n"


def text_document(contexts: Sequence[PlanContext]) -> str:
    lines: list[str] = []
    for ctx in contexts:
        doc = plan_document(ctx)
        lines += [f"run: {ctx.run} ({ctx.source})",
                  f"restart: {_restart_note(ctx)}",
                  "skip iterations: " + " ".join(f"{a}-{b}" for a, b in doc["skip"])
                  + " (inclusive)"]
        if doc["samples"]:
            lines.append("skip samples: " + " ".join(f"{a}-{b}" for a, b in doc["samples"])
                         + f" (0-based, inclusive, GBS {ctx.global_batch_size})")
        lines.append(f"step counting: {COUNTING}")
        for name, flag in doc["flags"].items():
            if flag and name != "samples":
                lines.append(f"{name}: {_short(name, flag)}")
        lines.append(f"reason: {ctx.plan.reason}")
        lines += [f"warning: {w}" for w in doc["warnings"]]
        lines.append("")
    # run names, sources and warnings come from logs: each entry stays one inert line
    return "\n".join(one_line(text) for text in lines)


def _short(name: str, flag: str) -> str:
    """Megatron-LM's one-entry-per-iteration list, abbreviated for people when long."""
    parts = flag.split()
    if name != "megatron-lm" or len(parts) <= 41:
        return flag
    return (f"{parts[0]} {parts[1]} ... {parts[-1]} ({len(parts) - 1} entries; "
            "--target megatron-lm prints them all)")


_FLAG_FNS: dict[str, Callable[[PlanContext], str]] = {
    "megatron-deepspeed": lambda c: megatron_deepspeed_flag(c.plan),
    "megatron-lm": lambda c: megatron_lm_flag(c.plan, c.indexing, c.compact),
    "gpt-neox": lambda c: neox_line(c.plan),
    "hf": hf_document,
    "metaseq": lambda c: metaseq_flag(c.plan),
    "samples": samples_line,
}


def unknown_restart(ctx: PlanContext) -> str | None:
    """Why the plan's restart step is not a known checkpoint (None when it is one, or when
    the plan restarts from the start of training)."""
    r = ctx.plan.restart_from_step
    if r <= 0:
        return None
    if ctx.checkpoints is None:
        return (f"{ctx.source}: run {ctx.run}: the plan restarts from iteration {r}, and no "
                "checkpoint is known (none given, none in the log): pass `checkpoint_every`, "
                "`checkpoints` or `checkpoint_dir`, or `allow_no_checkpoint` to print the plan "
                "anyway")
    if r > 0 and r not in ctx.checkpoints:
        return (f"{ctx.source}: run {ctx.run}: the plan restarts from iteration {r}, which is "
                f"not one of the known checkpoints ({ctx.checkpoint_source}); "
                "`allow_no_checkpoint` prints the plan anyway")
    return None


def export(target: str, contexts: Sequence[PlanContext],
           allow_no_checkpoint: bool = False) -> Export:
    """The export of `contexts` (runs with a plan) for `target`.

    Flag targets take exactly one run: their stdout is one line to paste into a launch script,
    and the counting rules go to `notes` (stderr). json/text hold several runs and the rules.
    A plan that restarts from a step with no known checkpoint is refused (an
    `InvalidParameterError`) unless `allow_no_checkpoint`.
    """
    if target not in TARGETS:
        raise InvalidParameterError(
            f"unknown target {target!r}: choose one of {', '.join(TARGETS)}")
    if target in FLAG_TARGETS and len(contexts) != 1:
        raise InvalidParameterError(
            f"the {target} target prints one run's flags, and {len(contexts)} runs need a "
            f"restart ({', '.join(c.run for c in contexts)}): choose one with --run")
    if not allow_no_checkpoint:
        problems = [p for p in (unknown_restart(c) for c in contexts) if p]
        if problems:
            raise InvalidParameterError("; ".join(problems))
    warns = tuple(w for c in contexts for w in c.warnings)
    if target == "json":
        return Export(json_document(contexts), (), warns)
    if target == "text":
        return Export(text_document(contexts), (), warns)
    if len(contexts) != 1:
        raise InvalidParameterError(
            f"the {target} target prints one run's flags, and {len(contexts)} runs need a "
            f"restart ({', '.join(c.run for c in contexts)}): choose one with --run")
    ctx = contexts[0]
    line = _FLAG_FNS[target](ctx)
    notes = _common_notes(ctx) + _target_notes(target, ctx)
    extra = tuple(_rampup_warning(ctx)) if target == "samples" else ()
    return Export(line + "\n", tuple(notes), warns + extra)


def plan_contexts(analysis, run: str | None = None) -> list[PlanContext]:
    """A PlanContext for every run of a `pipeline.Analysis` that needs a restart (its
    checkpoints, policy and batch size are the analysis' own)."""
    runs = analysis.runs
    if run is not None:
        runs = tuple(ra for ra in runs if ra.info.run == run)
        if not runs:
            names = ", ".join(ra.info.run for ra in analysis.runs)
            raise InvalidParameterError(f"`run` {run}: no such run (runs read: {names})")
    options = analysis.options
    out = []
    for ra in runs:
        if ra.skip_plan is None:
            continue
        first = min((s.first_step for s in ra.info.series if s.first_step is not None),
                    default=None)
        meta = ra.info.metadata
        out.append(PlanContext(
            run=ra.info.run, source=ra.info.source, plan=ra.skip_plan,
            checkpoints=ra.checkpoints, checkpoint_source=ra.checkpoint_source,
            policy=options.policy,
            global_batch_size=options.global_batch_size or meta.global_batch_size,
            rampup_batch_size=meta.rampup_batch_size, first_step=first,
            warnings=tuple(ra.plan_warnings)))
    return out


def nothing_to_skip(analysis, run: str | None = None) -> str:
    """The message for stderr when no run needs a restart."""
    runs = [ra for ra in analysis.runs if run is None or ra.info.run == run]
    n = sum(len(ra.events) for ra in runs)
    names = ", ".join(ra.info.run for ra in runs)
    why = [w for ra in runs for w in ra.plan_warnings]  # e.g. NaN from the first step: no plan
    if why:
        return f"Nothing to skip in {names}: " + "; ".join(one_line(w) for w in why)
    return (f"Nothing to skip: no event in {names} needs a restart ({n} event(s) found; a "
            "restart is planned for spikes that never recover, divergence and non-finite "
            "losses)")

"""Run layouts: folders that trainers fill with several units which are one run.

A folder walk reads units (a TensorBoard folder, a log file) one by one; some trainers spread
one run over several of them. `combine` puts them back together:

- **Keras / TF2 summary writers**: `logs/train/` and `logs/validation/` (or `eval/`) beside each
  other are one run; the validation folder's tags get a `validation/` prefix
  (`validation/epoch_loss`, role val_loss) so that both `epoch_loss` tags survive. t5x's
  summary writers (CLU) do the same with `model_dir/train/` and one folder per evaluation task,
  `training_eval/<task>/` (and `inference_eval/<task>/`): their tags get the folder as prefix
  (`training_eval/c4/loss`, role val_loss).
- **Lightning** `lightning_logs/version_N`: a version whose steps continue the previous one
  (its first step lies after that version's first and no later than just past its last) is the
  same training resumed: stitched as a resume segment. A version that starts again from the
  first step is another run and stays apart.
- **HF Trainer output folder**: `out/checkpoint-N/trainer_state.json` (the walk reads the
  newest) and `out/runs/<date_host>/` TensorBoard folders hold the same run: the TensorBoard
  points are kept (they run to the end; a checkpoint's log_history stops at its save), several
  `runs/` folders (one per launch) stitched in name order, with the trainer state's metadata
  and checkpoints.
- **fairseq2 output folder**: `JsonlMetricRecorder` writes one file per category under
  `out/metrics/` (`train.jsonl`, `valid.jsonl`, `valid/<unit>.jsonl`); their tags already carry
  the category (`train/Loss`, `valid/Loss`), so the files are one run side by side, named
  `out/metrics`. Its `TensorBoardRecorder` writes one folder per category under `out/tb/`
  (`train/`, `valid/`, `valid/<unit>/`) with the display names as tags: one run too, `out/tb`,
  each folder's tags prefixed with its category (`valid/Loss`, role val_loss, not a second
  run's train loss). (Both hold what `logs/rank_0.log` holds; each stays its own run.)
"""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..records import RunRecords, code_dtype, concat_records

_VALIDATION_DIRS = ("validation", "eval")
_T5X_EVAL_DIRS = ("training_eval", "inference_eval")
_VERSION = re.compile(r"^version_(\d+)$")


def combine(records: list[RunRecords]) -> list[RunRecords]:
    """The runs after putting the units of one run back together (order kept otherwise)."""
    records = _fairseq2_tb(records)
    records = _keras(records)
    records = _lightning(records)
    records = _fairseq2(records)
    return _hf_output(records)


# ------------------------------------------------------------------------------ Keras

def _keras(records: list[RunRecords]) -> list[RunRecords]:
    tb = {Path(r.source): r for r in records if r.format == "tensorboard"}
    pairs: dict[int, RunRecords] = {}  # id(train record) -> merged
    absorbed: set[int] = set()
    for path, rec in tb.items():
        if path.name != "train":
            continue
        val = next((tb[path.parent / d] for d in _VALIDATION_DIRS if path.parent / d in tb), None)
        parts = [("", rec)] + ([("validation/", val)] if val is not None else [])
        # t5x (CLU summary writers): train/ beside training_eval/<task>/, inference_eval/<task>/
        parts += sorted(((f"{p.parent.name}/{p.name}/", r) for p, r in tb.items()
                         if p.parent.parent == path.parent and p.parent.name in _T5X_EVAL_DIRS),
                        key=lambda part: part[0])
        if len(parts) == 1:
            continue
        run = rec.run.rsplit("/", 1)[0] if "/" in rec.run else path.parent.name
        pairs[id(rec)] = side_by_side(parts, run, str(path.parent))
        absorbed.update(id(r) for _, r in parts[1:])
    return [pairs.get(id(r), r) for r in records if id(r) not in absorbed]


def side_by_side(parts: list[tuple[str, RunRecords]], run: str, source: str) -> RunRecords:
    """One run from units written at the same time (tags prefixed per part, points in order
    of wall time where known, else part after part)."""
    tags: dict[str, int] = {}
    cols: list[tuple[np.ndarray, ...]] = []
    for prefix, part in parts:
        remap = np.asarray([tags.setdefault(prefix + t, len(tags)) for t in part.tags] or [0],
                           np.int64)
        cols.append((remap[part.tag_code] if len(part) else np.empty(0, np.int64), part.step,
                     part.value, part.wall_time))
    code, step, value, wall = (np.concatenate([c[k] for c in cols]) for k in range(4))
    # write order: by wall time when every point has one, else part after part
    order = (np.argsort(np.argsort(wall, kind="stable"), kind="stable")
             if np.isfinite(wall).all() else np.arange(code.shape[0]))
    first = parts[0][1]
    extra = dict(first.metadata.extra)
    extra["combined_from"] = ", ".join(p.source for _, p in parts)
    return RunRecords(
        run=run, source=source, format=first.format, tags=tuple(tags),
        tag_code=code.astype(code_dtype(len(tags))), step=step, value=value, wall_time=wall,
        order=order.astype(np.int64), headers=(), metadata=replace(first.metadata, extra=extra),
        skipped=tuple(s for _, p in parts for s in p.skipped),
        skipped_count=sum(p.skipped_count for _, p in parts),
        warnings=tuple(w for _, p in parts for w in p.warnings))


# ------------------------------------------------------------------------------ fairseq2

def _metrics_root(path: Path) -> Path | None:
    return next((p for p in path.parents if p.name == "metrics"), None)


def _fairseq2(records: list[RunRecords]) -> list[RunRecords]:
    groups: dict[Path, list[RunRecords]] = {}
    for rec in records:
        root = _metrics_root(Path(rec.source)) if rec.format == "fairseq2-jsonl" else None
        if root is not None:
            groups.setdefault(root, []).append(rec)
    merged: dict[int, RunRecords] = {}
    absorbed: set[int] = set()
    for root, parts in groups.items():
        if len(parts) < 2:
            continue
        parts.sort(key=lambda r: (Path(r.source).stem != "train", r.source))
        first = parts[0]
        run = first.run.rsplit("/metrics/", 1)[0] + "/metrics" if "/metrics/" in first.run \
            else f"{root.parent.name}/metrics"
        merged[id(first)] = side_by_side([("", r) for r in parts], run, str(root.parent))
        absorbed.update(id(r) for r in parts[1:])
    return [merged.get(id(r), r) for r in records if id(r) not in absorbed]


def _fairseq2_tb(records: list[RunRecords]) -> list[RunRecords]:
    tb = {Path(r.source): r for r in records if r.format == "tensorboard"}
    # `tb/train/` beside `tb/valid/` (a Keras `tb/` log dir has `validation/`: Keras's layout)
    roots = {p.parent for p in tb if p.name == "train" and p.parent.name == "tb"
             and any(q.parent == p.parent and q.name == "valid"
                     or p.parent / "valid" in q.parents for q in tb)}
    merged: dict[int, RunRecords] = {}
    absorbed: set[int] = set()
    for root in roots:
        parts = sorted(((p.relative_to(root).as_posix() + "/", r) for p, r in tb.items()
                        if root in p.parents), key=lambda part: (part[0] != "train/", part[0]))
        if len(parts) < 2:
            continue
        first = parts[0][1]
        run = first.run.rsplit("/tb/", 1)[0] + "/tb" if "/tb/" in first.run \
            else f"{root.parent.name}/tb"
        merged[id(first)] = side_by_side(parts, run, str(root))
        absorbed.update(id(r) for _, r in parts[1:])
    return [merged.get(id(r), r) for r in records if id(r) not in absorbed]


# ------------------------------------------------------------------------------ Lightning

def _extent(rec: RunRecords) -> tuple[int, int] | None:
    return (int(rec.step.min()), int(rec.step.max())) if len(rec) else None


def _continues(prev: RunRecords, nxt: RunRecords) -> bool:
    a, b = _extent(prev), _extent(nxt)
    if a is None or b is None:
        return False
    steps = np.unique(prev.step)
    gap = int(np.median(np.diff(steps))) if steps.shape[0] > 1 else 1
    return a[0] < b[0] <= a[1] + 2 * max(gap, 1)


def _lightning(records: list[RunRecords]) -> list[RunRecords]:
    groups: dict[tuple[Path, str], list[tuple[int, RunRecords]]] = {}
    for rec in records:
        path = Path(rec.source)
        unit = path if rec.format == "tensorboard" else path.parent
        m = _VERSION.match(unit.name)
        if m:
            groups.setdefault((unit.parent, rec.format), []).append((int(m.group(1)), rec))
    merged: dict[int, RunRecords] = {}
    absorbed: set[int] = set()
    for versions in groups.values():
        versions.sort(key=lambda v: v[0])
        chain: list[RunRecords] = []
        for _, rec in versions:
            if chain and _continues(chain[-1], rec):
                chain.append(rec)
                continue
            _close(chain, merged, absorbed)
            chain = [rec]
        _close(chain, merged, absorbed)
    return [merged.get(id(r), r) for r in records if id(r) not in absorbed]


def _close(chain: list[RunRecords], merged: dict[int, RunRecords], absorbed: set[int]) -> None:
    if len(chain) > 1:
        merged[id(chain[0])] = concat_records(chain)
        absorbed.update(id(r) for r in chain[1:])


# ------------------------------------------------------------------------------ HF Trainer

def _hf_output(records: list[RunRecords]) -> list[RunRecords]:
    states = {}
    for rec in records:
        path = Path(rec.source)
        if rec.format == "hf-trainer-state" and re.match(r"^checkpoint-\d+$", path.parent.name):
            states[path.parent.parent] = rec
    if not states:
        return records
    runs: dict[Path, list[RunRecords]] = {}
    for rec in records:
        path = Path(rec.source)
        if rec.format == "tensorboard" and path.parent.name == "runs" \
                and path.parent.parent in states:
            runs.setdefault(path.parent.parent, []).append(rec)
    out, absorbed, merged = [], set(), {}
    for out_dir, tbs in runs.items():
        state = states[out_dir]
        tbs.sort(key=lambda r: Path(r.source).name)
        rec = concat_records(tbs) if len(tbs) > 1 else tbs[0]
        meta = state.metadata.merged(framework="transformers", extra={
            **rec.metadata.extra, "combined_from": f"{state.source}, "
            + ", ".join(r.source for r in tbs)})
        name = state.run.split("/checkpoint-")[0] if "/checkpoint-" in state.run \
            else out_dir.name
        merged[id(tbs[0])] = replace(rec, run=name, source=str(out_dir), metadata=meta,
                                     warnings=rec.warnings + state.warnings)
        absorbed.update(id(r) for r in tbs[1:])
        absorbed.add(id(state))
    for rec in records:
        if id(rec) in absorbed:
            continue
        out.append(merged.get(id(rec), rec))
    return out

"""Where a run's checkpoints are: the save lines of its log, and checkpoint folders beside it.

The skip plan restarts from a saved iteration; a plan that restarts from an iteration nobody
saved is useless. Readers feed the lines that mention saving to a `SaveLines` tracker, which
knows each framework's save lines (taken from the frameworks' own source):

| framework | line | step |
|---|---|---|
| nanoGPT | `saving checkpoint to out` | the `step N:` eval line before it |
| HF Trainer | `Saving model checkpoint to out/checkpoint-500` | the folder name |
| HF Trainer | `Deleting older checkpoint [out/checkpoint-100] due to args.save_total_limit` | removed |
| DeepSpeed | `[Torch] Checkpoint global_step500 is about to be saved!` | the tag |
| Lightning | `Epoch 0, global step 500: 'val_loss' reached 0.5 (...), saving model to '...'` | global step |
| OLMo | `Checkpoint saved to ckpts/step1000` (`-unsharded`) | the folder name |
| torchtitan | `Saving a full checkpoint at step 500`, `Saving the checkpoint.` | given, else the last step |
| fairseq | `Saved checkpoint ckpt/checkpoint_2_500.pt (epoch 2 @ 500 updates, ...)` | updates |
| Megatron | `saving checkpoint at iteration 1000 to /ckpts` | given |
| llm.c | `Writing checkpoint at step 500` | given |
| t5x | `Saved checkpoint for step 500 to gs://b/model/checkpoint_500` | given |
| fairseq2 | `Checkpoint at step 500 saved.` | given |
| fairseq2 0.3 / 0.4 | `Saving checkpoint after step 500.` ... `Checkpoint complete.` | given (when complete) |
| MaxText | `Saved a checkpoint at step 500.`, `Started an asynchronous checkpoint save for step 500` | given |
| Levanter | `Saved checkpoint to ckpts/run/step-500 for step 500` | given |
| Levanter | `Removing checkpoint ckpts/run/step-400` (a temporary one) | removed |
| Levanter (before March 2024) | `Saved checkpoint for step 500`, `Saved checkpoint at step 500 to ckpts/run/step-500. Save time is 3.1` | given |
| Levanter (before March 2024) | `Deleting checkpoint step-400 from ckpts/run` (a temporary one) | removed |
| a script's own (`step-pipes`) | `[Checkpoint] saved ./checkpoints/ckpt_step0048000.pt`, `[Checkpoint] pruned ...` | the file name (pruned: removed) |

`discover(records, log_path)` then looks for the folder the log names (`saving checkpoint to
out`, `.../checkpoint-500`), else for checkpoint folders beside the log (HF `checkpoint-N`
siblings of a `trainer_state.json`, Lightning's `checkpoints/*.ckpt` beside `metrics.csv`,
`iter_0001000`, `global_step1000`, `step1000`, `step-1000` dirs, build-nanogpt's
`model_05000.pt` files, scripts' `ckpt_step0048000.pt`). What a folder holds wins over
the log's lines (saves can have been deleted since); `RunMeta.checkpoint_source` says which
it was. nanoGPT overwrites `out/ckpt.pt` at every save, which the source says too.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from ..records import RunRecords

#: Folder / file names trainers give checkpoints; group 1 is the iteration.
CHECKPOINT_NAMES = (
    re.compile(r"^iter_(\d+)$"),                      # Megatron-LM / Megatron-DeepSpeed
    re.compile(r"^global_step(\d+)$"),                # DeepSpeed
    re.compile(r"^checkpoint-(\d+)$"),                # HF Trainer
    re.compile(r"^checkpoint_\d+_(\d+)(?:-.*)?\.pt$"),  # fairseq / metaseq (epoch, updates)
    re.compile(r"^step(\d+)(?:-unsharded)?$"),        # OLMo
    re.compile(r"^step-(\d+)$"),                      # torchtitan
    re.compile(r"^epoch=\d+-step=(\d+)(?:-v\d+)?\.ckpt$"),  # Lightning ModelCheckpoint
    re.compile(r"^checkpoint_(\d+)$"),                # t5x
    re.compile(r"^model_(\d{5,})\.pt$"),              # build-nanogpt (log/model_05000.pt)
    re.compile(r"^ckpt_step_?(\d+)\.pt$"),            # scripts (ckpt_step0048000.pt)
    re.compile(r"^\w*?[_-]step_?(\d+)\.(?:pt|pth|ckpt|bin|safetensors)$"),  # lora_epoch3_step150.pt
)

#: A folder listing stops after this many entries (a huge data folder is not a checkpoint dir).
MAX_ENTRIES = 20000


def step_of_name(name: str) -> int | None:
    """The iteration a checkpoint folder/file name holds: `checkpoint-500` → 500."""
    for pattern in CHECKPOINT_NAMES:
        m = pattern.match(name)
        if m:
            return int(m.group(1))
    return None


def step_of_path(path: str) -> int | None:
    """The iteration of the last path component that names a checkpoint."""
    for part in reversed(re.split(r"[/\\]", path.strip().strip("'\"").rstrip("/\\"))):
        step = step_of_name(part)
        if step is not None:
            return step
    return None


def scan_dir(root: Path) -> list[int]:
    """Saved iterations in a checkpoint folder (names above, Megatron's
    latest_checkpointed_iteration.txt, DeepSpeed's `latest`); [] when none or unreadable.

    A folder walk asks this for the folder of every log in it: the answer is kept per
    (folder, modification time), which changes when an entry is added or removed."""
    try:
        st = os.stat(root)
    except OSError:
        return []
    return list(_scan(str(root), st.st_mtime_ns, _latest_mtime(Path(root))))


def _latest_mtime(root: Path) -> int:
    """The marker files' modification times (their content can change in place)."""
    total = 0
    for marker in ("latest_checkpointed_iteration.txt", "latest"):
        try:
            total += os.stat(root / marker).st_mtime_ns
        except OSError:
            pass
    return total


@lru_cache(maxsize=256)
def _scan(root_text: str, mtime: int, markers: int) -> tuple[int, ...]:
    root = Path(root_text)
    steps: set[int] = set()
    try:
        with os.scandir(root) as it:
            for n, entry in enumerate(it):
                if n >= MAX_ENTRIES:
                    break
                step = step_of_name(entry.name)
                if step is not None:
                    steps.add(step)
    except OSError:
        return ()
    for marker in ("latest_checkpointed_iteration.txt", "latest"):
        path = root / marker
        try:
            if path.is_file() and path.stat().st_size < 256:
                m = re.fullmatch(r"(?:global_step)?(\d+)", path.read_text(errors="replace").strip())
                if m:
                    steps.add(int(m.group(1)))
        except OSError:
            pass
    return tuple(sorted(steps))


# ---------------------------------------------------------------------------- save lines

@dataclass(frozen=True)
class SaveLine:
    """One framework's save (or delete) line: a pattern with a `step` and/or `path` group."""

    framework: str
    pattern: re.Pattern
    deletes: bool = False  # a checkpoint removed (HF save_total_limit)
    names_dir: bool = False  # `path` is the folder the checkpoints go to (not one checkpoint)


_P = re.compile
SAVE_LINES: tuple[SaveLine, ...] = (
    SaveLine("nanoGPT", _P(r"^saving checkpoint to (?P<path>\S+)\s*$"), names_dir=True),
    SaveLine("HF Trainer", _P(r"Saving model checkpoint to (?P<path>\S+?)\s*$")),
    SaveLine("HF Trainer", _P(r"Deleting older checkpoint \[(?P<path>[^\]]+)\] due to"),
             deletes=True),
    SaveLine("DeepSpeed", _P(r"Checkpoint (?:global_step)?(?P<step>\d+) is (?:about to be saved|"
                             r"ready now)")),
    SaveLine("DeepSpeed", _P(r"Saving model checkpoint: (?P<path>\S+)")),
    SaveLine("Lightning", _P(r"Epoch \d+, global step (?P<step>\d+): .*saving model to "
                             r"(?P<path>'[^']*'|\S+)")),
    SaveLine("OLMo", _P(r"Checkpoint saved to (?P<path>\S+)")),
    SaveLine("torchtitan", _P(r"Saving (?:a |the )?(?:full |model only |model weights only )?"
                              r"checkpoint(?: in \S+)?(?: at last step,)? (?:at )?step[ -]"
                              r"(?P<step>\d+)")),
    SaveLine("torchtitan", _P(r"Saving the checkpoint(?: \(or staging if async is enabled\))?"
                              r"\.\s*$")),
    SaveLine("torchtitan", _P(r"Checkpoints will be loaded from and saved to (?P<path>\S+)"),
             names_dir=True),
    SaveLine("fairseq", _P(r"Saved checkpoint (?P<path>\S+) \(epoch \d+ @ (?P<step>\d+) updates")),
    SaveLine("Megatron", _P(r"saving checkpoint at iteration\s+(?P<step>\d+)"
                            r"(?: to (?P<path>\S+))?")),
    SaveLine("llm.c", _P(r"Writing checkpoint at step (?P<step>\d+)")),
    SaveLine("t5x", _P(r"Saved checkpoint for step (?P<step>\d+) to (?P<path>\S+)")),
    SaveLine("fairseq2", _P(r"Checkpoint at step (?P<step>\d+) saved\.")),
    SaveLine("MaxText", _P(r"(?:[Ss]aved a checkpoint at|Started an asynchronous checkpoint save "
                           r"for) step (?P<step>\d+)")),
    SaveLine("Levanter", _P(r"Saved checkpoint to (?P<path>\S+) for step (?P<step>\d+)")),
    SaveLine("Levanter", _P(r"(?:Removing|Deleted old) checkpoint (?P<path>\S+)"), deletes=True),
    # Levanter before March 2024
    SaveLine("Levanter", _P(r"Saved checkpoint (?:for|at) step (?P<step>\d+)(?! to \S+ for)")),
    SaveLine("Levanter", _P(r"Deleting checkpoint (?P<path>\S+) from\b"), deletes=True),
    # a script's own (the Qwen3-from-scratch script of the `step-pipes` dialect)
    SaveLine("[Checkpoint] saved", _P(r"\[Checkpoint\] saved (?P<path>\S+)")),
    SaveLine("[Checkpoint] saved", _P(r"\[Checkpoint\] pruned (?P<path>\S+)"), deletes=True),
    # a script's own print (`Saved checkpoint to .../lora_epoch3_step150.pt`): the step from
    # the file name
    SaveLine("Saved checkpoint to", _P(r"^\s*Saved checkpoint to (?P<path>\S+)\s*$")),
)

#: Cheap test before the patterns: every save line above contains one of these.
_HINT = re.compile(r"[Cc]heckpoint|saving model to")


class SaveLines:
    """Collects a log's save lines as a reader walks it (feed it the lines that may be one)."""

    def __init__(self) -> None:
        self.saved: dict[int, int] = {}  # step -> line of its (last) save line
        self.deleted: set[int] = set()
        self.dirs: list[str] = []  # folders the log names (in order, unique)
        self.frameworks: list[str] = []

    def feed(self, lineno: int, frag: str, last_step: int | None = None) -> bool:
        """Record `frag` if it is a save line; `last_step` is the step the reader saw last (for
        the lines that print none). True when the line was one."""
        if not _HINT.search(frag):
            return False
        for kind in SAVE_LINES:
            m = kind.pattern.search(frag)
            if not m:
                continue
            groups = m.groupdict()
            path = (groups.get("path") or "").strip("'\"")
            if kind.names_dir:
                if path:
                    self._dir(path)
                if kind.framework == "torchtitan":  # the start-up line, not a save
                    return True
                step = last_step
            else:
                step = int(groups["step"]) if groups.get("step") else step_of_path(path)
                if step is None and not path:
                    step = last_step
                if path and step is not None:
                    parent = _parent_dir(path)
                    if parent:
                        self._dir(parent)
            if step is None:
                return True
            if kind.deletes:
                self.deleted.add(step)
            else:
                self.saved[step] = lineno
                self.deleted.discard(step)
            if kind.framework not in self.frameworks:
                self.frameworks.append(kind.framework)
            return True
        return False

    def _dir(self, path: str) -> None:
        if path and path not in self.dirs:
            self.dirs.append(path)

    def steps(self) -> tuple[int, ...]:
        return tuple(sorted(s for s in self.saved if s not in self.deleted))

    def fields(self) -> dict[str, object]:
        """RunMeta fields: checkpoints, checkpoint_source, checkpoint_dir (empty when none)."""
        steps = self.steps()
        out: dict[str, object] = {}
        if self.dirs:
            out["checkpoint_dir"] = self.dirs[-1]
        if not steps:
            return out
        names = " / ".join(self.frameworks)
        source = f"the log's save lines ({names})"
        if self.deleted:
            why = ("pruned" if self.frameworks == ["[Checkpoint] saved"]
                   else "save_total_limit")
            source += f"; {len(self.deleted)} deleted later ({why}) left out"
        if "nanoGPT" in self.frameworks:
            source += ("; nanoGPT overwrites out_dir/ckpt.pt at every save: only the last "
                       "one is on disk unless it was copied")
        out["checkpoints"] = steps
        out["checkpoint_source"] = source
        return out


def _parent_dir(path: str) -> str:
    """The folder a checkpoint path sits in: `out/checkpoint-500` → `out`,
    `ckpt/global_step5/mp_rank_00_model_states.pt` → `ckpt`."""
    parts = re.split(r"[/\\]", path.rstrip("/\\"))
    for i in range(len(parts) - 1, -1, -1):
        if step_of_name(parts[i]) is not None:
            return "/".join(parts[:i]) or ("/" if path.startswith("/") else ".")
    return ""


# ---------------------------------------------------------------------------- folders

def _resolve(named: str, log_dir: Path) -> Path | None:
    p = Path(named).expanduser()
    for cand in ((p,) if p.is_absolute() else (log_dir / p, log_dir.parent / p)):
        try:
            if cand.is_dir():
                return cand
        except OSError:
            continue
    return None


def _beside(log_path: Path) -> tuple[Path, list[int]] | None:
    """Checkpoint folders beside a log file: its own folder, the folder above a HF
    checkpoint-N/trainer_state.json, a Lightning version's checkpoints/."""
    here = log_path.parent
    candidates = [here]
    if step_of_name(here.name) is not None:  # out/checkpoint-500/trainer_state.json
        candidates.insert(0, here.parent)
    candidates.append(here / "checkpoints")
    for cand in candidates:
        steps = scan_dir(cand)
        if steps:
            return cand, steps
    return None


def discover(rec: RunRecords, log_path: Path) -> RunRecords:
    """`rec` with its checkpoints completed from the folder its log names or from checkpoint
    folders beside the log (a folder's contents win over save lines: saves can be deleted)."""
    meta = rec.metadata
    log_path = Path(log_path)
    log_dir = log_path if log_path.is_dir() else log_path.parent
    found: tuple[Path, list[int], str] | None = None
    if meta.checkpoint_dir:
        folder = _resolve(meta.checkpoint_dir, log_dir)
        if folder is not None:
            steps = scan_dir(folder)
            if steps:
                found = (folder, steps, "the folder the log names")
    if found is None and log_path.is_file():
        beside = _beside(log_path)
        if beside is not None:
            found = (beside[0], beside[1], "checkpoint folders beside the log")
    if found is None:
        return rec
    folder, steps, how = found
    source = f"{how}: {folder}"
    if meta.checkpoints:
        gone = sorted(set(meta.checkpoints) - set(steps))
        if gone:
            source += f" (the log also saved {_list(gone)}, no longer there)"
    return replace(rec, metadata=replace(meta, checkpoints=tuple(steps),
                                         checkpoint_source=source,
                                         checkpoint_dir=str(folder)))


def _list(steps: list[int]) -> str:
    shown = ", ".join(str(s) for s in steps[:5])
    return shown + (f" and {len(steps) - 5} more" if len(steps) > 5 else "")

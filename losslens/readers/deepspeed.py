"""DeepSpeed engine lines and DeepSpeed-Chat PPO lines; shared with Megatron.

What is read, and the tags it becomes:

- engine step lines `[Rank 0] step=N, skipped=K, lr=[...], mom=[...]` → `lr` (first param group;
  other groups as `lr (group i)` only when some line shows them different) and `skipped` (the
  engine's **cumulative** count of skipped steps, as printed). Adam betas from `mom` go to
  metadata. Several engines in one process (DeepSpeed-Chat's actor and critic) print the same step
  a couple of lines apart; they become tag prefixes `actor/`, `critic/` (DeepSpeed-Chat) or
  `engine0/`, `engine1/`, ... (anything else with more than one engine).
- fp16 loss-scaler messages `OVERFLOW! Rank 0 Skipping step. Attempted loss scale: X, reducing to
  Y` (and the hysteresis and fused-optimizer `Overflow detected.` variants). They carry no step,
  so each is placed at **the last step known from an earlier line, plus one** (1 when none is
  known yet): the step the overflow happened in when the previous line was the step before.
  Consecutive messages at the same step merge into one point: `overflow` = how many there were,
  `loss scale` = the scale after the last of them (the attempted scale when hysteresis kept it).
- pipeline engine lines `steps: N loss: X iter time (s): T samples/sec: S` → `loss`,
  `iter time (s)`, `samples/sec` (and any extra `name: value` losses), at step N.
- DeepSpeed-Chat step 3 (PPO) lines `epoch: E|step: S|ppo_ep: P|act_loss: A|cri_loss: C|
  unsuper_loss: U` (or the later `Epoch: E | Step: S | PPO Epoch: P | Actor Loss: ...`) and
  `average reward score: R` (`| EMA reward score: R2`) → tags named as printed. PPO's `step` is
  0-based and restarts each epoch; it is placed on the engines' 1-based optimizer-step axis
  (`step + 1`, plus the steps of earlier epochs), so `act_loss` at step N is the same iteration
  as the engines' `step=N` lines and as the overflows printed just before it.

- DeepSpeed-Chat's evaluations (steps 1 and 2, printed with `print_rank_0`, no prefix), after
  `***** Evaluating perplexity, Epoch E/N *****` (or `... rewards ...`, `... reward ...`):
  SFT's `ppl: P` (later `ppl: P, loss: L`) → `eval/ppl` (other), `eval/loss` (val_loss); the
  reward model's `chosen_last_scores (higher is better) : C, rejected_last_scores (lower is
  better) : R, acc (higher is better) : A` → `eval/chosen_last_scores`,
  `eval/rejected_last_scores`, `eval/acc` (val_acc), and its mid-epoch `Iter N: c_scores: C,
  r_scores: R, diff: D, acc: A` → `eval/c_scores`, ... at step N; DPO's `chosen: C, rejected:
  R, loss: L` → `eval/chosen`, `eval/rejected`, `eval/loss`. They print no step: each sits at
  the last step known from an earlier line (0 before any: the evaluation before training).
  The reward model's `Epoch E/N with loss X` (the epoch's mean training loss) → `epoch mean
  loss` (train_loss), placed the same way.

Wall time comes from DeepSpeed's logging prefix `[YYYY-mm-dd HH:MM:SS,mmm]` (taken as UTC).
A line that looks like one of these but does not parse is counted as skipped.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..records import RecordsBuilder, RunMeta, RunRecords, code_dtype
from .checkpoints import SaveLines
from .textutil import (STEP_LIMIT, as_float, colon_pairs, fragments, head_text, parse_float,
                       read_text, split_truncated)

FORMAT = "deepspeed"

STEP_RE = re.compile(r"\[Rank (-?\d+)\] step=(\d+), skipped=(\d+), lr=\[([^\]]*)\]"
                     r"(?:, mom=\[(.*)\])?")
OVERFLOW_RE = re.compile(r"(?:OVERFLOW!(?: Rank (-?\d+))?|Overflow detected\.) Skipping step\."
                         r" Attempted loss scale: ([^,\s]+),? ?(?:reducing to ([^,\s]+))?")
PIPE_RE = re.compile(r"^steps: (\d+) (.*)$")
PPO_RE = re.compile(r"^\s*epoch: *(\d+) *\| *step: *(\d+) *\|(.*)$", re.IGNORECASE)
REWARD_RE = re.compile(r"^\s*average reward score: ", re.IGNORECASE)
TIME_RE = re.compile(r"\[(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:[,.](\d{1,9}))?\]")
_BETAS = re.compile(r"\(\s*([-+.\deE]+)\s*,\s*([-+.\deE]+)\s*\)")
#: (`[ \t]*`, not `\s*`: from every line start `\s*` ran across the blank lines after it,
#: quadratic in a head of blank lines)
_SNIFF_PPO = re.compile(r"(?mi)^[ \t]*epoch: *\d+ *\| *step: *\d+ *\|.*loss: ")
_SNIFF_STEP = re.compile(r"\[Rank -?\d+\] step=\d+, skipped=\d+, lr=\[")
_SNIFF_PIPE = re.compile(r"(?m)^steps: \d+ loss: ")
_PPO_COUNTERS = {"epoch", "step", "ppo_ep", "ppo epoch"}
#: DeepSpeed-Chat steps 1-2: evaluation headers and results (print_rank_0, no prefix)
CHAT_HEAD_RE = re.compile(r"^\*+ Evaluating (?:perplexity|rewards?), Epoch \d+/\d+ \*+\s*$")
CHAT_EVAL_RE = re.compile(r"^(?:ppl: |chosen_last_scores \(higher is better\) : |chosen: \S+, "
                          r"rejected: )")
CHAT_ITER_RE = re.compile(r"^Iter (\d+): c_scores: ")
CHAT_EPOCH_RE = re.compile(r"^Epoch \d+/\d+ with loss (\S+)\s*$")
_CHAT_NAME = re.compile(r"\((?:higher|lower) is better\)$")  # (on a stripped key: linear)
_SNIFF_CHAT = re.compile(r"(?m)^\*+ Evaluating (?:perplexity|rewards?), Epoch \d+/\d+ \*+\s*$")
#: Lines of the same step closer than this are different engines, not a re-logged step.
ENGINE_GAP = 20


def step_int(text: str) -> int:
    """A printed step counter as an int64 step; ValueError past it (digits spliced into a
    counter), with room for the `+ 1` of overflow and PPO placement."""
    n = int(text)
    if not -STEP_LIMIT < n < STEP_LIMIT - 1:
        raise ValueError(f"step {text[:24]}{'...' if len(text) > 24 else ''} is past int64")
    return n


# --------------------------------------------------------------------------- shared helpers

def days_from_civil(y, m, d):
    """Days since 1970-01-01 of a proleptic Gregorian date (ints or numpy int arrays)."""
    y = y - (m <= 2)
    era = y // 400
    yoe = y - era * 400
    mp = (m + 9) % 12
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def epoch_seconds(groups: tuple[str | None, ...]) -> float:
    """Seconds since the epoch of (Y, m, d, H, M, S, fraction) strings, the time taken as UTC.

    Written to give the same float as the vectorised version in megatron.py.
    """
    y, mo, d, h, mi, s, frac = groups
    whole = days_from_civil(int(y), int(mo), int(d)) * 86400 + int(h) * 3600 + int(mi) * 60 + int(s)
    return float(whole) + (int(frac) / 10.0 ** len(frac) if frac else 0.0)


def line_time(text: str) -> float:
    """Wall time of a line from a `[YYYY-mm-dd HH:MM:SS(,mmm|.ffffff)]` stamp, NaN without one."""
    m = TIME_RE.search(text)
    return epoch_seconds(m.groups()) if m else np.nan


#: Points from which `Points.records` assembles its columns on two threads.
_THREADED_CONCAT = 1 << 20


class Points:
    """Per-tag columns, from array chunks and single points, assembled into RunRecords.

    The Frame needs each tag's points in write order; chunks from different paths (vectorised,
    per line) are merged by `order` when they interleave. Tags are numbered by first appearance
    (line, then position in the line).
    """

    def __init__(self) -> None:
        self._chunks: dict[str, list[tuple[np.ndarray, ...]]] = {}
        self._rows: dict[str, tuple[list[int], list[float], list[float], list[int]]] = {}
        self._first: dict[str, tuple[int, int]] = {}
        self._block: tuple[tuple[str, ...], tuple[np.ndarray, ...], int] | None = None

    def add_block(self, keys: tuple[str, ...], columns: tuple[np.ndarray, ...], n: int) -> None:
        """Tags whose points lie tag by tag in shared arrays: key j's n points (orders
        non-decreasing) at [j * n, (j + 1) * n) of `columns` (step, value, wall, order).
        When these tags come first and have no other points, `records` hands the arrays
        themselves out (other tags' points written after them when they fit): no copy."""
        for j, key in enumerate(keys):
            self.add_array(key, *(c[j * n:(j + 1) * n] for c in columns), pos=j)
        self._block = (tuple(keys), columns, n)

    def add(self, tag: str, step: int, value: float, wall: float, order: int, pos: int = 0) -> None:
        rows = self._rows.get(tag)
        if rows is None:
            rows = self._rows[tag] = ([], [], [], [])
            self._seen(tag, order, pos)
        elif order < self._first[tag][0]:
            self._seen(tag, order, pos)
        rows[0].append(step)
        rows[1].append(value)
        rows[2].append(wall)
        rows[3].append(order)

    def add_line(self, pairs: list[tuple[str, float]], step: int, wall: float, order: int) -> None:
        """The `key: value` pairs of one line (positions = their index in the line)."""
        for pos, (tag, value) in enumerate(pairs):
            self.add(tag, step, value, wall, order, pos)

    def add_array(self, tag: str, steps: np.ndarray, values: np.ndarray, walls: np.ndarray,
                  orders: np.ndarray, pos: int = 0) -> None:
        """Add points whose `orders` are non-decreasing."""
        if len(steps):
            self._chunks.setdefault(tag, []).append((steps, values, walls, orders))
            self._seen(tag, int(orders[0]), pos)

    def _seen(self, tag: str, order: int, pos: int) -> None:
        old = self._first.get(tag)
        if old is None or (order, pos) < old:
            self._first[tag] = (order, pos)

    @property
    def tags(self) -> set[str]:
        return set(self._first)

    def __len__(self) -> int:
        return (sum(len(c[0]) for cs in self._chunks.values() for c in cs)
                + sum(len(r[0]) for r in self._rows.values()))

    def _parts(self, tag: str) -> list[tuple[np.ndarray, ...]]:
        """The tag's columns as pieces in write order (merged only when they interleave)."""
        parts = list(self._chunks.get(tag, ()))
        rows = self._rows.get(tag)
        if rows:
            parts.append((np.asarray(rows[0], np.int64), np.asarray(rows[1], np.float64),
                          np.asarray(rows[2], np.float64), np.asarray(rows[3], np.int64)))
        if all(p[3][-1] <= q[3][0] for p, q in zip(parts, parts[1:])):
            return parts
        cols = [np.concatenate([p[i] for p in parts]) for i in range(4)]
        idx = np.argsort(cols[3], kind="stable")
        return [tuple(c[idx] for c in cols)]

    def _in_block(self, tags: list[str], flat: list[tuple[np.ndarray, ...]],
                  counts: list[int]) -> list[np.ndarray] | None:
        """The columns as the block's own arrays, the other tags' points written after the
        block's; None when the block's tags are not the first ones, have other points too,
        or the rest does not fit."""
        if self._block is None:
            return None
        keys, columns, n = self._block
        k = len(keys)
        if tuple(tags[:k]) != keys or any(len(self._chunks[t]) != 1 or t in self._rows
                                          for t in keys):
            return None
        size = sum(counts)
        if size > columns[0].shape[0]:
            return None
        pos = k * n
        for part in flat[k:]:  # (flat[:k] are the block's own slices)
            m = part[0].shape[0]
            for col, src in zip(columns, part):
                col[pos:pos + m] = src
            pos += m
        return [c[:size] for c in columns]

    def records(self, run: str, source: str, fmt: str, builder: RecordsBuilder,
                metadata: RunMeta) -> RunRecords:
        """RunRecords of every point, with headers/skips/warnings from `builder`."""
        tags = sorted(self._first, key=self._first.__getitem__)
        parts = [self._parts(t) for t in tags]
        flat = [p for ps in parts for p in ps]
        counts = [sum(len(p[0]) for p in ps) for ps in parts]
        # the smallest code type (the Frame's categorical keeps it without a copy)
        code = np.repeat(np.arange(len(tags), dtype=code_dtype(len(tags))), counts)
        # one concatenation per column straight into the final arrays (no per-part copies);
        # big ones on two threads: a fresh 72 MB column is mostly page faults, which numpy's
        # copy takes outside the GIL
        dts = (np.int64, np.float64, np.float64, np.int64)

        def column(i: int) -> np.ndarray:
            return np.concatenate([p[i] for p in flat]) if flat else np.empty(0, dts[i])

        out = self._in_block(tags, flat, counts)
        if out is None and sum(counts) >= _THREADED_CONCAT:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(2) as pool:
                out = list(pool.map(column, range(4)))
        elif out is None:
            out = [column(i) for i in range(4)]
        out = [a.astype(dt, copy=False) for a, dt in zip(out, dts)]
        return RunRecords(
            run=run, source=source, format=fmt, tags=tuple(tags), tag_code=code, step=out[0],
            value=out[1], wall_time=out[2], order=out[3],
            headers=tuple(sorted(set(builder.headers))), metadata=metadata,
            skipped=tuple(builder.skipped), skipped_count=builder.skipped_count,
            warnings=tuple(builder.warnings))


# --------------------------------------------------------------------------- line events

@dataclass
class _Step:
    line: int
    step: int
    skipped: int
    lrs: list[float]
    wall: float


@dataclass
class _Fields:
    """A line with a step (pipeline, PPO, reward) and its `key: value` pairs."""

    line: int
    step: int
    pairs: list[tuple[str, float]]
    wall: float


@dataclass
class DeepSpeedLines:
    """Collects DeepSpeed / DeepSpeed-Chat events line by line; `emit` turns them into points."""

    steps: list[_Step] = field(default_factory=list)
    overflows: list[tuple[int, float, float]] = field(default_factory=list)  # line, scale, wall
    fields: list[_Fields] = field(default_factory=list)  # pipeline, PPO and reward lines
    #: DeepSpeed-Chat evaluations without a step: placed at emit (line, pairs, wall)
    evals: list[tuple[int, list[tuple[str, float]], float]] = field(default_factory=list)
    chat: bool = False  # DeepSpeed-Chat evaluation lines were seen
    betas: tuple[float, float] | None = None
    momentum: str | None = None
    ppo: bool = False
    other_ranks: int = 0  # lines of ranks other than the first one seen (duplicates, ignored)
    _rank: str | None = None
    _ppo_epoch: int = -1
    _ppo_offset: int = 0
    _ppo_last: int | None = None

    def looks(self, frag: str) -> bool:
        """Whether a fragment looks like one of the lines read here (parsed or not)."""
        return ("step=" in frag and "skipped=" in frag) or "Attempted loss scale" in frag \
            or frag.startswith("steps: ") or bool(PPO_RE.match(frag)) \
            or bool(REWARD_RE.match(frag)) or bool(CHAT_EVAL_RE.match(frag)) \
            or bool(CHAT_ITER_RE.match(frag)) or bool(CHAT_EPOCH_RE.match(frag))

    def feed(self, line: int, frag: str, skip: Callable[[int, str, str], None],
             ppo: bool = True) -> bool:
        """Take a cleaned fragment; True when it was a DeepSpeed line (parsed or skipped).

        `ppo=False` leaves DeepSpeed-Chat PPO and reward lines alone (engine lines only).
        """
        try:
            if "step=" in frag and "skipped=" in frag:
                return self._step(line, frag, skip)
            if "Attempted loss scale" in frag:
                return self._overflow(line, frag, skip)
            if frag.startswith("steps: "):
                return self._pipe(line, frag, skip)
            if not ppo:
                return False
            if self._ppo_line(line, frag):
                return True
            if self._chat(line, frag):
                return True
            return self._reward(line, frag, skip)
        except (ValueError, OverflowError) as exc:
            skip(line, f"unparseable DeepSpeed line ({exc})", frag)
            return True

    def _step(self, line: int, frag: str, skip) -> bool:
        m = STEP_RE.search(frag)
        if not m:
            skip(line, "DeepSpeed step line without step=, skipped=, lr=[...]", frag)
            return True
        if not self._first_rank(m.group(1)):
            return True
        lrs = [parse_float(x) for x in m.group(4).split(",") if x.strip()]
        if not lrs:
            raise ValueError("empty lr list")
        if self.betas is None and self.momentum is None and m.group(5):
            b = _BETAS.search(m.group(5))
            if b:
                self.betas = (float(b.group(1)), float(b.group(2)))
            else:
                self.momentum = m.group(5).split(",")[0].strip()
        self.steps.append(_Step(line, step_int(m.group(2)), int(m.group(3)), lrs, line_time(frag)))
        return True

    def _first_rank(self, rank: str | None) -> bool:
        """Whether a line's rank is the one read (the first seen); counts the others."""
        if rank is None:
            return True
        if self._rank is None:
            self._rank = rank
        if rank != self._rank:
            self.other_ranks += 1
            return False
        return True

    def _overflow(self, line: int, frag: str, skip) -> bool:
        m = OVERFLOW_RE.search(frag)
        if not m:
            if "OVERFLOW" in frag or "Overflow" in frag:
                skip(line, "DeepSpeed overflow line without the attempted loss scale", frag)
                return True
            return False
        if not self._first_rank(m.group(1)):
            return True
        scale = parse_float(m.group(3) if m.group(3) else m.group(2))
        self.overflows.append((line, scale, line_time(frag)))
        return True

    def _pipe(self, line: int, frag: str, skip) -> bool:
        m = PIPE_RE.match(frag)
        pairs = colon_pairs(m.group(2)) if m else []
        if not m or not pairs:
            skip(line, "DeepSpeed pipeline line without `steps: N loss: X`", frag)
            return True
        values = [(k.strip(), parse_float(v)) for k, v in pairs]
        self.fields.append(_Fields(line, step_int(m.group(1)), values, np.nan))
        return True

    def _ppo_line(self, line: int, frag: str) -> bool:
        m = PPO_RE.match(frag)
        if not m:
            return False
        epoch, step = int(m.group(1)), step_int(m.group(2))
        pairs = []
        for part in m.group(3).split("|"):
            key, sep, value = part.partition(":")
            key = key.strip()
            if not sep or key.lower() in _PPO_COUNTERS:
                if not sep and key:
                    raise ValueError(f"field {part.strip()!r} is not `key: value`")
                continue
            pairs.append((key, parse_float(value)))
        offset = self._ppo_offset
        if epoch != self._ppo_epoch and self._ppo_last is not None:
            offset = self._ppo_last
        at = step_int(str(offset + step + 1))  # checked before the state changes
        self._ppo_offset, self._ppo_epoch, self._ppo_last, self.ppo = offset, epoch, at, True
        self.fields.append(_Fields(line, self._ppo_last, pairs, line_time(frag)))
        return True

    def _chat(self, line: int, frag: str) -> bool:
        """DeepSpeed-Chat's evaluation lines (steps 1-2) and the reward model's epoch loss."""
        if CHAT_HEAD_RE.match(frag):
            self.chat = True
            return True
        m = CHAT_ITER_RE.match(frag)
        if m:
            pairs = self._chat_pairs(frag[frag.index(":") + 1:])
            self.fields.append(_Fields(line, step_int(m.group(1)), pairs, line_time(frag)))
            self.chat = True
            return True
        m = CHAT_EPOCH_RE.match(frag)
        if m:
            self.evals.append((line, [("epoch mean loss", parse_float(m.group(1)))],
                               line_time(frag)))
            return True
        if CHAT_EVAL_RE.match(frag):
            self.evals.append((line, self._chat_pairs(frag), line_time(frag)))
            self.chat = True
            return True
        return False

    @staticmethod
    def _chat_pairs(text: str) -> list[tuple[str, float]]:
        """`a: 1.0, b (higher is better) : 2.0` → [("eval/a", 1.0), ("eval/b", 2.0)]."""
        pairs = []
        for part in text.split(","):
            key, sep, value = part.rpartition(":")
            key = _CHAT_NAME.sub("", key.strip()).strip()
            if not sep or not key:
                raise ValueError(f"field {part.strip()!r} is not `key: value`")
            pairs.append((f"eval/{key}", parse_float(value.strip())))
        return pairs

    def _reward(self, line: int, frag: str, skip) -> bool:
        if not REWARD_RE.match(frag):
            return False
        if self._ppo_last is None:
            skip(line, "reward line before any PPO step line", frag)
            return True
        pairs = []
        for part in frag.split("|"):
            key, sep, value = part.partition(":")
            if not sep:
                raise ValueError(f"field {part.strip()!r} is not `key: value`")
            pairs.append((key.strip(), parse_float(value)))
        # a reward line belongs to the PPO step printed just before it; it does not move the step
        self.fields.append(_Fields(line, self._ppo_last, pairs, line_time(frag)))
        return True

    # ----------------------------------------------------------------------- emission

    def known_steps(self) -> tuple[np.ndarray, np.ndarray]:
        """(line, step) of every line here that says which step it is."""
        lines = [s.line for s in self.steps] + [f.line for f in self.fields]
        steps = [s.step for s in self.steps] + [f.step for f in self.fields]
        return np.asarray(lines, np.int64), np.asarray(steps, np.int64)

    def emit(self, pts: Points, prefix: str = "",
             known: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Add every event's points to `pts`; `known` adds (line, step) pairs of other lines."""
        self._emit_steps(pts, prefix)
        for f in self.fields:
            for i, (key, value) in enumerate(f.pairs):
                pts.add(prefix + key, f.step, value, f.wall, f.line, i)
        self._emit_overflows(pts, prefix, known)
        self._emit_evals(pts, prefix)

    def _emit_evals(self, pts: Points, prefix: str) -> None:
        """Each evaluation at the last step known from an earlier line (0 before any)."""
        if not self.evals:
            return
        k_lines, k_steps = self.known_steps()
        idx = np.argsort(k_lines, kind="stable")
        k_lines, k_steps = k_lines[idx], k_steps[idx]
        at = np.searchsorted(k_lines, [e[0] for e in self.evals], "left") - 1
        for (line, pairs, wall), i in zip(self.evals, at.tolist()):
            step = int(k_steps[i]) if i >= 0 else 0
            for j, (key, value) in enumerate(pairs):
                pts.add(prefix + key, step, value, wall, line, j)

    def _engine_prefixes(self) -> list[str]:
        engines, prev = [], None
        for s in self.steps:
            same = prev is not None and s.step == prev.step and s.line - prev.line <= ENGINE_GAP
            engines.append(engines[-1] + 1 if same else 0)
            prev = s
        n = max(engines, default=0) + 1
        if n == 1:
            return ["" for _ in engines]
        names = ["actor/", "critic/"] if self.ppo and n == 2 else [f"engine{i}/" for i in range(n)]
        return [names[e] for e in engines]

    def _emit_steps(self, pts: Points, prefix: str) -> None:
        engine = self._engine_prefixes()
        groups = {e for e, s in zip(engine, self.steps) if any(x != s.lrs[0] for x in s.lrs)}
        for e, s in zip(engine, self.steps):
            p = prefix + e
            pts.add(p + "lr", s.step, s.lrs[0], s.wall, s.line, 0)
            if e in groups:
                for g, lr in enumerate(s.lrs[1:], 1):
                    pts.add(f"{p}lr (group {g})", s.step, lr, s.wall, s.line, g)
            pts.add(p + "skipped", s.step, as_float(s.skipped), s.wall, s.line, 100)

    def _emit_overflows(self, pts: Points, prefix: str,
                        known: tuple[np.ndarray, np.ndarray] | None) -> None:
        if not self.overflows:
            return
        k_lines, k_steps = self.known_steps()
        if known is not None and len(known[0]):
            k_lines = np.concatenate([k_lines, known[0]])
            k_steps = np.concatenate([k_steps, known[1]])
        idx = np.argsort(k_lines, kind="stable")
        k_lines, k_steps = k_lines[idx], k_steps[idx]
        o_lines = np.asarray([o[0] for o in self.overflows], np.int64)
        at = np.searchsorted(k_lines, o_lines, "left") - 1
        if k_steps.shape[0]:
            steps = np.where(at >= 0, k_steps[np.maximum(at, 0)] + 1, 1)
        else:  # overflow messages without any step line: the first step
            steps = np.ones(o_lines.shape[0], np.int64)
        merged: list[list] = []  # step, count, scale, wall, line
        for (line, scale, wall), step in zip(self.overflows, steps.tolist()):
            if merged and merged[-1][0] == step:
                merged[-1][1:] = [merged[-1][1] + 1, scale, wall, line]
            else:
                merged.append([step, 1, scale, wall, line])
        for step, count, scale, wall, line in merged:
            pts.add(prefix + "loss scale", step, scale, wall, line, 200)
            pts.add(prefix + "overflow", step, float(count), wall, line, 201)

    def warnings(self) -> list[str]:
        if not self.other_ranks:
            return []
        return [f"{self.other_ranks} DeepSpeed step/overflow lines of ranks other than "
                f"rank {self._rank} ignored (duplicates)"]

    def metadata(self) -> dict:
        """RunMeta fields learned from the step lines."""
        out: dict = {}
        if self.betas:
            out["adam_beta1"], out["adam_beta2"] = self.betas
        if self.momentum:
            out["extra"] = {"deepspeed_momentum": self.momentum}
        return out


# --------------------------------------------------------------------------- the reader

_CMD = re.compile(r"--([A-Za-z][\w-]*)(?:[ =]((?!--)\S+))?")


def sniff(name: str, head: bytes) -> float:
    text = head_text(head)
    if _SNIFF_PPO.search(text):
        return 0.75
    if _SNIFF_CHAT.search(text):
        return 0.6
    if _SNIFF_PIPE.search(text) or _SNIFF_STEP.search(text):
        return 0.55
    return 0.45 if OVERFLOW_RE.search(text) else 0.0


def read(path: Path, run: str) -> list[RunRecords]:
    text = read_text(path)
    body, tail, tail_line = split_truncated(text)
    b, ds, saves = RecordsBuilder(), DeepSpeedLines(), SaveLines()
    extra: dict[str, str] = {}
    for lineno, frag in fragments(body):
        if ds.feed(lineno, frag, b.skip):
            continue
        if "heckpoint" in frag:  # `[Torch] Checkpoint global_step500 is about to be saved!`
            saves.feed(lineno, frag)
        elif frag.startswith("cmd = ") and not extra:
            extra = _command_args(frag)
    for _, frag in fragments(tail):
        if ds.looks(frag):
            b.skip(tail_line, "truncated last line", frag)
    pts = Points()
    ds.emit(pts)
    for w in ds.warnings():
        b.warn(f"{path}: {w}")
    meta = ds.metadata()
    extra.update(meta.pop("extra", {}))
    framework = "deepspeed-chat" if ds.ppo or ds.chat else "deepspeed"
    metadata = RunMeta(framework=framework, extra=extra, **meta).merged(**saves.fields())
    return [pts.records(run, str(path), FORMAT, b, metadata)]


def _command_args(frag: str) -> dict[str, str]:
    """DeepSpeed-Chat's `cmd = deepspeed main.py --a 1 --flag` → {"a": "1", "flag": "True"}."""
    return {k.replace("-", "_"): (v or "True") for k, v in _CMD.findall(frag)}

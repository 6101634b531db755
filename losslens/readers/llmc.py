"""llm.c console output and `main.log`.

Console (`train_gpt2.cu`, format `llmc`): one line per step, 1-based step as printed,
`step    1/74 | loss 11.01 (+nanz)| norm 15.4 (+nanz)| lr 6.00e-04 | 1234.56 ms | 42.1% bf16 MFU
| 1234 tok/s`, plus the older 2024 forms (`| train loss ...`, `: train loss X norm Y (... ms, ...
tok/s)`), the PyTorch reference form and the CPU `step N: train loss X (took Y ms)`. Tags keep the
printed names (`loss` or `train loss`, `norm`, `lr`, `acc`), plus `time_ms`, `mfu` (%), `tok/s`.
`val loss X` and `HellaSwag: a/b = acc` carry no step: llm.c prints them at the top of the loop
iteration that follows the last printed step, so they take the latest printed step (0 before the
first). `skipping update due to ...` lines become `skipped updates` = 1 at the step being computed
(latest + 1). Generated samples (`generating:` / `---` ... `---`) are skipped whole. The
`| Parameter | Value |` table becomes RunMeta; each table after the first point is a run header.

`main.log` (format `llmc-mainlog`): `s:N trl:X lr:Y norm:Z`, `s:N tel:X`, `s:N eval:acc` with a
0-based step; every `key:value` pair becomes a tag named by its key. Steps re-logged after a
`-y 1` resume become a new segment in the Frame.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import ParseError
from ..records import RecordsBuilder, RunMeta, RunRecords
from .textutil import Rows, fragments, head_text, parse_float, read_text, split_truncated

_N = r"\s*(\S+?)"  # a printed number (padding allowed before it)
_ZS = r"(?: \([^)]*z\))?"  # llm.c z-score suffix, ignored
# current and 2024-06 forms, and the PyTorch reference (`| (12.34 ms | 5678 tok/s)`)
_PIPES = re.compile(
    rf"step\s+(\d+)/(\d+) \| (train )?loss{_N}{_ZS}\s?\| norm{_N}{_ZS}\s?\| lr{_N} \| \(?"
    rf"(\S+) ms \|(?: (\S+?)% (.+?) MFU \|)? (\S+) tok/s\)?\s*$")
# 2024-04 and 2024-05 forms: `step   1/74: train loss X [norm Y] [lr Z] [(acc A)] (T ms[, S tok/s])`
_COLON = re.compile(
    rf"step\s+(\d+)/(\d+): train loss{_N}(?: norm{_N})?(?: lr{_N})?(?: \(acc{_N}\))?"
    r" \((\S+?) ms(?:, (\S+) tok/s)?\)\s*$")
_CPU = re.compile(r"step (\d+): train loss (\S+) \(took (\S+) ms\)\s*$")
_LOOKS = re.compile(r"step\s+\d+(?:/\d+)?\s*[:|]\s*(?:train )?loss")
_VAL = re.compile(r"val loss (\S+)\s*$")
_HELLA = re.compile(r"HellaSwag: (\d+)/(\d+) = (\S+)\s*$")
_SNIFF_CONSOLE = re.compile(
    r"(?m)^(?:\S*\]:)?step\s+\d+/\d+ (?:\| (?:train )?loss |: train loss )"
    r"|^step \d+: train loss \S+ \(took ")
_SNIFF_MAIN = re.compile(r"(?m)^s:\d+ (?:trl|tel|eval):\S")
_MAIN_LINE = re.compile(r"s:(\d+)((?: \w+:\S+)+)\s*$")
_MAIN_TRAIN = re.compile(r"s:(\d+) trl:(\S+) lr:(\S+) norm:(\S+)\s*$")  # the common line
_MAIN_PAIR = re.compile(r" (\w+):(\S+)")


def sniff_llmc(name: str, head: bytes) -> float:
    return 0.9 if _SNIFF_CONSOLE.search(head_text(head)) else 0.0


def sniff_llmc_mainlog(name: str, head: bytes) -> float:
    if not _SNIFF_MAIN.search(head_text(head)):
        return 0.0
    return 0.95 if name == "main.log" else 0.9


def _num(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return parse_float(text)


def _read_text(path: Path) -> str:
    try:
        return read_text(path)
    except OSError as exc:
        raise ParseError(f"{path}: cannot read ({exc.strerror or exc})") from None


# ---------------------------------------------------------------- console


class _Console:
    """Parsing state for one console file."""

    def __init__(self) -> None:
        self.b = RecordsBuilder()
        self.rows = Rows()
        self.step = 0  # latest printed step
        self.seen_point = False
        self.table: dict[str, str] = {}
        self.in_table = False
        self.gen = 0  # 0: normal, 1: after `generating:`, 2: inside the sample text
        self.precision: str | None = None
        self.checkpoints: list[int] = []
        self.extra: dict[str, str] = {}

    def line(self, lineno: int, frag: str) -> None:
        if self.gen:
            self._generation(frag)
            return
        head = frag[:1]
        if head == "s" and frag.startswith("step"):
            self._step(lineno, frag)
        elif head == "|":
            self._row(lineno, frag)
        elif head == "+":
            pass  # table rule
        elif frag.startswith("val loss"):
            self._val(lineno, frag)
        elif frag.startswith("HellaSwag:"):
            self._hella(lineno, frag)
        elif frag.startswith("generating:"):
            self.gen = 1
        elif frag.startswith("skipping update due to"):
            self.rows.group(("skipped updates",)).append((lineno, self.step + 1, 1.0))
        elif frag.startswith("Writing checkpoint at step"):
            last = frag.rsplit(" ", 1)[-1].strip()
            if last.isdigit():
                self.checkpoints.append(int(last))
        elif frag.startswith("=> setting grad_accum_steps="):
            self.extra["grad_accum_steps"] = frag.split("=")[-1].strip()

    def _generation(self, frag: str) -> None:
        if frag.strip() == "---":
            self.gen = 2 if self.gen == 1 else 0
        elif self.gen == 1:  # `generating:` not followed by a rule: not a sample block
            self.gen = 0

    def _step(self, lineno: int, frag: str) -> None:
        if not _LOOKS.match(frag):
            return
        try:
            if self._pipes(lineno, frag) or self._colon(lineno, frag) or self._cpu(lineno, frag):
                self.seen_point = True
                return
        except ValueError:
            pass
        self.b.skip(lineno, "llm.c step line that does not parse", frag)

    def _pipes(self, lineno: int, frag: str) -> bool:
        m = _PIPES.match(frag)
        if not m:
            return False
        g = m.groups()
        step = int(g[0])
        row = (lineno, step, _num(g[3]), _num(g[4]), _num(g[5]), _num(g[6]), _num(g[9]))
        mfu = _num(g[7]) if g[7] else -1.0
        loss = "train loss" if g[2] else "loss"
        if mfu >= 0:
            self.rows.group((loss, "norm", "lr", "time_ms", "tok/s", "mfu")).append(row + (mfu,))
        else:
            self.rows.group((loss, "norm", "lr", "time_ms", "tok/s")).append(row)
        if g[8] and self.precision is None:
            self.precision = g[8].split()[-1].lower()
        self.step = step
        return True

    def _colon(self, lineno: int, frag: str) -> bool:
        m = _COLON.match(frag)
        if not m:
            return False
        names = ("train loss", "norm", "lr", "acc", "time_ms", "tok/s")
        pairs = [(n, parse_float(m.group(i))) for n, i in zip(names, range(3, 9))
                 if m.group(i) is not None]
        self._put(lineno, int(m.group(1)), *pairs)
        return True

    def _cpu(self, lineno: int, frag: str) -> bool:
        m = _CPU.match(frag)
        if not m:
            return False
        self._put(lineno, int(m.group(1)), ("train loss", parse_float(m.group(2))),
                  ("time_ms", parse_float(m.group(3))))
        return True

    def _put(self, lineno: int, step: int, *pairs: tuple[str, float]) -> None:
        tags = tuple(tag for tag, _ in pairs)
        self.rows.group(tags).append((lineno, step, *(value for _, value in pairs)))
        self.step = step

    def _val(self, lineno: int, frag: str) -> None:
        m = _VAL.match(frag)
        try:
            if m:
                self.rows.group(("val loss",)).append((lineno, self.step, _num(m.group(1))))
                return
        except ValueError:
            pass
        self.b.skip(lineno, "llm.c val loss line that does not parse", frag)

    def _hella(self, lineno: int, frag: str) -> None:
        m = _HELLA.match(frag)
        try:
            if m:
                self.rows.group(("HellaSwag",)).append((lineno, self.step, _num(m.group(3))))
                return
        except ValueError:
            pass
        self.b.skip(lineno, "llm.c HellaSwag line that does not parse", frag)

    def _row(self, lineno: int, frag: str) -> None:
        cells = _cells(frag)
        if not cells or cells[0] == "Parameter":
            if cells and self.seen_point:  # a new run's table appended to the same file
                self.b.header(lineno)
            return
        self.table[cells[0]] = cells[1]


def _cells(frag: str) -> tuple[str, str] | None:
    """`| key | value |` -> (key, value), else None. Split, not a regex: a lazy pattern here
    backtracks quadratically on a long line of pipes (64 KiB took half a minute)."""
    parts = frag.split("|")
    if len(parts) < 4 or parts[0].strip() or parts[-1].strip() or not parts[1].strip():
        return None
    return parts[1].strip(), "|".join(parts[2:-1]).strip()


def read_llmc(path: Path, run: str) -> list[RunRecords]:
    body, tail, tail_line = split_truncated(_read_text(path))
    st = _Console()
    for lineno, frag in fragments(body):
        st.line(lineno, frag)
    if tail:
        if _LOOKS.match(tail.strip()) or tail.startswith(("val loss", "HellaSwag:")):
            st.b.skip(tail_line, "truncated last line", tail)
    st.rows.into(st.b)
    return [st.b.build(run, str(path), "llmc", _console_meta(st))]


def _table_num(text: str | None, kind=float):
    """A number from the parameter table, None when absent or not a number."""
    if text is None:
        return None
    try:
        return kind(float(text))
    except (ValueError, OverflowError):  # not a number, or `inf` for an integer setting
        return None


def _console_meta(st: _Console) -> RunMeta:
    t = st.table
    seq = _table_num(t.get("sequence length T") or t.get("max_sequence_length T"), int)
    total = _table_num(t.get("total batch size"), int)  # tokens per step
    lr = _table_num(t.get("learning rate (LR)"))
    frac = _table_num(t.get("final LR fraction"))
    precision = (t.get("precision") or st.precision or "").lower() or None
    extra = dict(t)
    extra.update(st.extra)
    extra["step_base"] = "1 (console prints step+1)"
    ckpts = tuple(sorted(set(st.checkpoints))) or None
    return RunMeta(
        checkpoints=ckpts,
        checkpoint_source="the log's save lines (llm.c: Writing checkpoint at step)" if ckpts
        else None,
        hidden_size=_table_num(t.get("channels C"), int), num_layers=_table_num(t.get("num_layers L"), int),
        num_heads=_table_num(t.get("num_heads NH"), int), seq_length=seq,
        precision=precision if precision in ("fp16", "bf16", "fp32") else None,
        lr=lr, min_lr=lr * frac if lr is not None and frac is not None else None,
        lr_schedule=t.get("LR scheduler"), warmup_steps=_table_num(t.get("warmup iterations"), int),
        train_iters=_table_num(t.get("train_num_batches"), int),
        global_batch_size=total // seq if total and seq else None,
        micro_batch_size=_table_num(t.get("micro batch size B"), int),
        save_interval=_table_num(t.get("checkpoint_every"), int),
        weight_decay=_table_num(t.get("weight decay")), framework="llm.c", extra=extra)


# ---------------------------------------------------------------- main.log


def read_llmc_mainlog(path: Path, run: str) -> list[RunRecords]:
    body, tail, tail_line = split_truncated(_read_text(path))
    b, rows = RecordsBuilder(), Rows()
    train = rows.group(("trl", "lr", "norm"))
    for lineno, frag in fragments(body):
        if not frag.startswith("s:"):
            continue
        try:
            m = _MAIN_TRAIN.match(frag)
            if m:
                g = m.groups()
                train.append((lineno, int(g[0]), _num(g[1]), _num(g[2]), _num(g[3])))
                continue
            m = _MAIN_LINE.match(frag)
            if m:
                pairs = _MAIN_PAIR.findall(m.group(2))
                rows.group(tuple(k for k, _ in pairs)).append(
                    (lineno, int(m.group(1)), *(_num(v) for _, v in pairs)))
                continue
        except ValueError:
            pass
        b.skip(lineno, "llm.c main.log line that does not parse", frag)
    if tail.startswith("s:"):
        b.skip(tail_line, "truncated last line", tail)
    rows.into(b)
    meta = RunMeta(framework="llm.c", extra={
        "step_base": "0 (main.log step = console step - 1)",
        "lr_resolution": "1e-06 (lr:%.6f truncates smaller rates)"})
    return [b.build(run, str(path), "llmc-mainlog", meta)]

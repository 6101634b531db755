"""Karpathy's build-nanogpt (`train_gpt2.py` of "Let's reproduce GPT-2 (124M)"): stdout and
`log/log.txt`.

The script's master process prints, per optimizer step,

```
step     0 | loss: 10.955010 | lr 6.0000e-04 | norm: 15.3420 | dt: 19152.47ms | tok/sec: 27374.43
```

(`{step:5d}`; `{step:4d}` and the forms without `lr` or `norm` in the video's earlier commits,
and `step 0, loss: X, dt: Yms, tok/sec: Z` before them) and, every 250 steps and at the last
one, at the top of the loop iteration, before that step's own line:

```
validation loss: 10.9522
HellaSwag accuracy: 2497/10042=0.2487
```

Format `build-nanogpt` reads that console: tags `loss` (train_loss: the mean over the
gradient-accumulation micro-steps), `lr`, `norm` (grad_norm: the norm before clipping),
`dt` (ms), `tok/sec`, `val loss` (val_loss) and `HellaSwag` (val_acc, the printed accuracy).
The validation and HellaSwag lines print no step: they belong to the step printed next, the
one after the last step line (0 before the first). `rank R sample i: ...` generations are
text, not points. `total desired batch size: N` and the gradient-accumulation and parameter
counts go to metadata; a `total desired batch size:` line after points is a new run's
start (a header).

Format `build-nanogpt-log` reads `log/log.txt`, which the script writes beside the
checkpoints: `{step} val {loss:.4f}`, `{step} hella {acc:.4f}`, `{step} train {loss:.6f}`,
one per line. `train`, `val` and `hella` become the console's `loss`, `val loss` and
`HellaSwag` (the same numbers, so the two files of one run read alike); another word a fork
writes there is a tag of that name. It is sniffed only when every line of the file's head has
that shape and the head holds `train` with `val` or `hella`: `N word X` alone is too common.
A fine-tuning fork writes `step {step} train_loss {loss:.6f}`, `step {step} val_loss
{loss:.4f}` and, after its last step, `final val_loss {loss:.4f}`: the same reader takes the
`step ` word (such a head may hold `train_loss` with `val_loss` instead), keeps those names
as tags (roles train_loss, val_loss) and puts a `final` value at the step written last. A
resumed run appends to the file: its steps go back, a new segment.

The script saves no checkpoint line: it writes `log/model_{step:05d}.pt` every 5000 steps and
at the last one, which the checkpoint scan finds beside `log.txt` (`checkpoints.py`).
"""
from __future__ import annotations

import re
from pathlib import Path

from ..records import RecordsBuilder, RunMeta, RunRecords
from .textutil import Rows, fragments, head_text, parse_float, read_text, split_truncated

FORMAT = "build-nanogpt"
FORMAT_LOG = "build-nanogpt-log"

_PIPES = re.compile(r"step\s+(\d+) \| loss: (\S+)(?: \| lr (\S+))?(?: \| norm: (\S+))? \| "
                    r"dt: (\S+?)ms \| tok/sec: (\S+?)\s*$")
_COMMA = re.compile(r"step (\d+), loss: (\S+?), dt: (\S+?)ms, tok/sec: (\S+?)\s*$")
_VAL = re.compile(r"validation loss: (\S+?)\s*$")
_HELLA = re.compile(r"HellaSwag accuracy: (\d+)/(\d+)=(\S+?)\s*$")
#: what a step line of this dialect starts with, parsed or not
_LOOKS = re.compile(r"step\s+(\d{1,18})(?: \||,) loss: ")
_SNIFF = re.compile(
    r"(?m)^(?:\S*\]:|\d+: )?(?:step\s+\d+ \| loss: [^|\s]+ \|(?: lr [^|\s]+ \|)?"
    r"(?: norm: [^|\s]+ \|)? dt: [0-9.]+ms \| tok/sec: "
    r"|step \d+, loss: \S+, dt: [0-9.]+ms, tok/sec: )")
_META = (
    (re.compile(r"total desired batch size: (\d+)"), "total_batch_size_tokens"),
    (re.compile(r"=> calculated gradient accumulation steps: (\d+)"), "grad_accum_steps"),
    (re.compile(r"num decayed parameter tensors: \d+, with ([\d,]+) parameters"),
     "decayed_parameters"),
    (re.compile(r"num non-decayed parameter tensors: \d+, with ([\d,]+) parameters"),
     "non_decayed_parameters"),
    (re.compile(r"using device: (\S+)"), "device"),
)
_PIPE_TAGS = ("loss", "lr", "norm", "dt", "tok/sec")

#: log.txt: `{step} {kind} {value}`; the kinds the script writes and their tags
_LOG_LINE = re.compile(r"(?:step )?(\d{1,18}) ([A-Za-z_][\w./-]{0,63}) (\S+)\s*$")
#: a fork's evaluation after the last step: `final val_loss 2.2426`
_LOG_FINAL = re.compile(r"final ([A-Za-z_][\w./-]{0,63}) (\S+)\s*$")
_LOG_SNIFF = re.compile(r"(?:step )?\d{1,18} [A-Za-z_]\w{0,63} [-+0-9.eEnNaAiIfF]{1,40}"
                        r"|final [A-Za-z_]\w{0,63} [-+0-9.eEnNaAiIfF]{1,40}")
#: the kinds a log.txt sniff needs, a training kind and an evaluation kind: the script's, and
#: with `step N` lines (a fork's fine-tuning script) also `train_loss` and `val_loss`
_TRAIN_KINDS, _EVAL_KINDS = {"train"}, {"val", "hella"}
_STEP_KINDS = ({"train", "train_loss"}, {"val", "hella", "val_loss"})
LOG_TAGS = {"train": "loss", "val": "val loss", "hella": "HellaSwag"}
#: lines of the head a log.txt sniff looks at
_SNIFF_LINES = 200


def sniff_build_nanogpt(name: str, head: bytes) -> float:
    text = head_text(head)
    return 0.9 if ("loss: " in text and _SNIFF.search(text)) else 0.0


def sniff_build_nanogpt_log(name: str, head: bytes) -> float:
    text = head_text(head)
    lines = text.split("\n", _SNIFF_LINES + 1)
    if len(lines) > _SNIFF_LINES or not text.endswith("\n"):
        lines = lines[:-1]  # the head may end inside a line
    kinds: set[str] = set()
    bad = stepped = 0
    for line in lines:
        line = line.rstrip("\r")
        if not line:
            continue
        if not _LOG_SNIFF.fullmatch(line):
            if not kinds:  # the first line must be one
                return 0.0
            bad += 1
            continue
        stepped += line.startswith("step ")
        kinds.add(line.removeprefix("step ").removeprefix("final ").split(" ", 2)[-2])
    train, evals = _STEP_KINDS if stepped else (_TRAIN_KINDS, _EVAL_KINDS)
    # a damaged line or two is read around (and reported); more is another kind of file
    if bad * 20 > len(lines) or not kinds & train or not kinds & evals:
        return 0.0
    return 0.95 if name == "log.txt" else 0.9


def _num(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return parse_float(text)


class _Console:
    """What the console reader carries from line to line."""

    def __init__(self) -> None:
        self.b, self.rows = RecordsBuilder(), Rows()
        self.last: int | None = None  # the step of the last step line
        self.points = False
        self.extra: dict[str, str] = {}

    def line(self, lineno: int, frag: str) -> None:
        if frag.startswith("step"):
            if not self._step(lineno, frag):
                m = _LOOKS.match(frag)
                if m:  # its step still tells where the next evaluation lines belong
                    self.b.skip(lineno, "build-nanogpt step line that does not parse", frag)
                    self.last = int(m.group(1))
        elif frag.startswith("validation loss:"):
            self._eval(lineno, frag, _VAL, "val loss", 1, "validation loss")
        elif frag.startswith("HellaSwag accuracy:"):
            self._eval(lineno, frag, _HELLA, "HellaSwag", 3, "HellaSwag")
        elif frag.startswith(("total desired", "=> calculated", "num ", "using device")):
            self._meta(lineno, frag)

    def _step(self, lineno: int, frag: str) -> bool:
        m = _PIPES.match(frag)
        try:
            if m:
                step = int(m.group(1))
                present = [(tag, raw) for tag, raw in zip(_PIPE_TAGS, m.groups()[1:])
                           if raw is not None]
                values = [_num(raw) for _, raw in present]
                self.rows.group(tuple(t for t, _ in present)).append((lineno, step, *values))
            else:
                m = _COMMA.match(frag)
                if not m:
                    return False
                step = int(m.group(1))
                self.rows.group(("loss", "dt", "tok/sec")).append(
                    (lineno, step, *(_num(x) for x in m.groups()[1:])))
        except ValueError:
            self.b.skip(lineno, "build-nanogpt step line with a value that is not a number", frag)
        self.last, self.points = step, True
        return True

    def _eval(self, lineno: int, frag: str, pattern: re.Pattern, tag: str, group: int,
              what: str) -> None:
        m = pattern.match(frag)
        try:
            if m:
                step = 0 if self.last is None else self.last + 1
                self.rows.group((tag,)).append((lineno, step, _num(m.group(group))))
                self.points = True
                return
        except ValueError:
            pass
        self.b.skip(lineno, f"build-nanogpt {what} line that does not parse", frag)

    def _meta(self, lineno: int, frag: str) -> None:
        for pattern, key in _META:
            m = pattern.match(frag)
            if m:
                if key == "total_batch_size_tokens" and self.points:  # another run starts
                    self.b.header(lineno)
                    self.last = None
                self.extra[key] = m.group(1).replace(",", "")
                return


def read_build_nanogpt(path: Path, run: str) -> list[RunRecords]:
    body, tail, tail_line = split_truncated(read_text(path))
    st = _Console()
    for lineno, frag in fragments(body):
        st.line(lineno, frag)
    stripped = tail.strip()
    if stripped and (_LOOKS.match(stripped) or stripped.startswith(
            ("validation loss:", "HellaSwag accuracy:"))):
        st.b.skip(tail_line, "truncated last line", tail)
    st.rows.into(st.b)
    meta = RunMeta(framework="build-nanogpt", extra=st.extra)
    return [st.b.build(run, str(path), FORMAT, meta)]


def read_build_nanogpt_log(path: Path, run: str) -> list[RunRecords]:
    body, tail, tail_line = split_truncated(read_text(path))
    b, rows = RecordsBuilder(), Rows()
    groups: dict[str, list[tuple]] = {}
    last = 0  # the step written last (a `final` line's)
    for lineno, frag in fragments(body):
        m = _LOG_LINE.match(frag)
        if m:
            step, kind, raw = m.groups()
            last = int(step)
        elif (m := _LOG_FINAL.match(frag)) is not None:
            step, (kind, raw) = last, m.groups()
        else:
            if frag.strip():
                b.skip(lineno, "build-nanogpt log.txt line that is not `step kind value`", frag)
            continue
        try:
            value = _num(raw)
        except ValueError:
            b.skip(lineno, f"build-nanogpt log.txt {kind} value that is not a number", frag)
            continue
        tag = LOG_TAGS.get(kind, kind)
        target = groups.get(tag)
        if target is None:
            target = groups[tag] = rows.group((tag,))
        target.append((lineno, int(step), value))
    if tail.strip():
        b.skip(tail_line, "truncated last line", tail)
    rows.into(b)
    return [b.build(run, str(path), FORMAT_LOG, RunMeta(framework="build-nanogpt"))]

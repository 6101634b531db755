"""Epoch lines: what hand-written training scripts (and Keras `fit`) print once an epoch.

No framework writes these; a script's own `print` or `logging` call does, so the shapes vary:

```
2025-04-24 21:17:53,828 - INFO - Epoch [1/50], Train Loss: 1.9463, Train Acc: 20.34%, Val Loss: 1.9097, Val Acc: 17.37%
2023-05-15 22:50:17,398 INFO:Epoch 1: Train Loss=0.0717, Val Loss=0.0766
2026-05-08 22:49:56 | INFO | Epoch [001/30] TrainLoss=1.8695 TrainAcc=48.54% | ValLoss=1.3028 ValAcc=60.94% | LR=1.00e-04 | Time=480.3s
Epoch [1/5], Step [100/600], Loss: 0.2192
Epoch 3/10 | Train Loss: 0.5120 Acc: 81.20% | Val Loss: 0.4821 Acc: 83.10%
Epoch [2/50]
  Train Loss: 1.4183, Train Acc: 48.10%
  Val Loss: 1.3047, Val Acc: 52.40%
Epoch 1/10
782/782 [==============================] - 45s 57ms/step - loss: 1.2345 - accuracy: 0.5678 - val_loss: 1.1023 - val_accuracy: 0.6120
```

A line is read when `Epoch N` (`Epoch [N/M]`, `Epoch: N`, `epoch=N`) starts its message: only
a logging prefix (time stamp, level, logger name, `[tags]`) may come before it, so a line that
merely mentions an epoch (`Saved model (epoch=3, val_acc=0.61)`) is not a point. Every
`name: number` / `name=number` pair after it is a tag named as printed (`Train Loss`, `ValAcc`,
`LR`; `%` and `s` units dropped, the number kept). A name without its own Train/Val word takes
the one before it in the same `|` group (`| Val Loss: 0.48 Acc: 83.1%` gives `Val Acc`), or
when the same name comes twice in a line. An `Epoch N` line without pairs opens a block: the
lines right after it made only of pairs (`  Val Loss: 1.30, Val Acc: 52.4%`) and Keras'
finished progress bar (`782/782 ... - loss: ... - val_loss: ...`, its last drawing only; the
bar of an `evaluate` after it is not) are that epoch's. tqdm bars (`Epoch 1: 100%|####| 50/50 [...]`) are not read: their pairs are
running values mid-epoch; the epoch's summary line, after the bar's `\\r`, is.

Steps: the epoch as printed, when no line carries an iteration. When lines also carry one
(`Step [100/600]`, `Batch 51/100`, `Iter 300`, `Global Batch 7015`), the step is a global
iteration: `(epoch - 1) × N + i` with N the total printed after the iteration (else the
largest iteration seen in an epoch; a counter that never goes back is taken as global
already), and an epoch's summary values sit at its last iteration.
`metadata.extra["step_source"]` says which. An epoch counter that goes back (the script run
again into the same log) starts a new segment.

Step lines: a message that starts with `Step N` (`Iter N`, `Iteration N`, `Step [N/M]`) and a
separator (`,` `:` `;` ` - `) followed by pairs (`... | __main__:train:172 - Step 100, Loss:
6.2713`, loguru's default prefix): the pairs sit at step N, and in such a file an epoch line's
pairs sit at the step printed last before it. A counter followed by `|` or spaces is a
framework's (torchtune, build-nanogpt, torchtitan), not read here.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..records import RecordsBuilder, RunMeta, RunRecords
from ..roles import infer_role
from .checkpoints import SaveLines
from .textutil import (LEVEL, STAMP, fragments, head_text, parse_float, read_text,
                       split_truncated, utc_seconds)

FORMAT = "epoch-lines"

#: `Epoch` (any case) where a line's message starts
_EPOCH_WORD = re.compile(r"(?i)(?<![\w./])epoch")
_EPOCH = re.compile(r"(?i)epoch\s*[:=#]?\s*[\[(]?\s*(\d{1,9})\s*(?:(?:/|of)\s*(\d{1,9})\s*)?"
                    r"[\])]?(?![\w.%/])")
#: what may come before `Epoch` on a line: time stamps, a level, logger names, `[tags]`
#: loguru's default `{name}:{function}:{line} - ` (`__main__:train:172 - `, `<module>`)
_LOGURU = r"[A-Za-z_][\w.]*:(?:<module>|[A-Za-z_]\w*):\d{1,9}(?=\s+-\s)"
_PREFIX_OK = re.compile(
    rf"[\s|,:\-]*(?:(?:{STAMP}|{LEVEL}|{_LOGURU}|[A-Za-z_][\w.]*(?=\s+-\s|:)"
    rf"|\[[^\]\n]{{1,40}}\]|[=#*>]++)[\s|,:\-]*+){{0,8}}")
_WALL = re.compile(r"\[?(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)")
#: an iteration counter right after the epoch (`Step 100`, `Batch 51/100`, `Global Batch 7015`)
#: (no two `\s*` side by side around an optional sign: on a run of spaces they tried every
#: split of it, cubic in its length: 4,000 spaces after `Epoch 1` took 7 s)
_ITER = re.compile(r"(?i)[\s,|:;\-]*(?:[\[(]\s*)?(?:global[ _](?:step|batch|iter(?:ation)?)|step"
                   r"|iter(?:ation)?|batch)s?"
                   r"\s*(?:[:=#]\s*)?(?:[\[(]\s*)?(\d{1,12})\s*(?:/\s*(\d{1,12})\s*)?[\])]?"
                   r"(?![\w.%])")
#: MiniMind's bare `(iteration/total)` right after the epoch: `Epoch:[1/1](10/39695), loss: ...`
_BARE_ITER = re.compile(r"\s*\((\d{1,12})\s*/\s*(\d{1,12})\)(?![\w.%])")
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?nan|[-+]?inf(?:inity)?"
#: `name: number` or `name=number`; a name is 1-3 words of at most 40 characters (`Train Loss`,
#: `F1 (Micro)`)
_PAIR = re.compile(r"(?<![\w.%/()\-])([A-Za-z][\w/()\-]{0,39}(?: [A-Za-z(][\w/()\-]{0,39}){0,2})\s*[:=]\s*"
                   rf"({_NUM})\s?(%|ms|s|sec)?(?![\w.])", re.IGNORECASE)
_QUAL = re.compile(r"^(?:[Tt]raining|[Tt]rain|[Vv]alidation|[Vv]alid|[Vv]al|[Ee]valuation|[Ee]val"
                   r"|[Tt]est|[Dd]ev|TRAIN|VAL|TEST)(?=[\s_/]|[A-Z]|$)")
#: a qualifier word standing alone before a colon: `Train Losses: mse: 0.4`, `| Val: ...`
_LABEL = re.compile(r"(?<![\w.])((?:[Tt]raining|[Tt]rain|[Vv]alidation|[Vv]alid|[Vv]al|[Tt]est"
                    r"|[Ee]val)\w*(?: \w+)?)\s*:(?!\s*[-+.\d])")
#: names that never take a Train/Val word from their neighbours
_GLOBAL = re.compile(r"(?i)^(?:lr|learning[ _]rate|time|eta|elapsed|epoch|step|speed|"
                     r"grad[ _]?norm|best\b.*|.*time)$")
_BAR = re.compile(r"\d%\||\d\s?(?:it/s|s/it)\b|[█━]")
_KERAS = re.compile(r"^\s*(\d+)/(\d+)\s.*? - (?=[A-Za-z_][\w ]*: )")
_SEPARATORS = re.compile(r"[\s,|;\-]*")
_JSON_START = re.compile(r"\s*(?:\{|\[\s*[\[{\"\d\-\]])")  # not `[CLS] Epoch 3 | ...`
#: what may follow `Epoch N` on a line that opens a block (`Epoch [2/50]`, `=== Epoch 3 ===`)
_BLOCK_HEAD = re.compile(r"[\s:|\-=.*#>]*")


#: `Step` / `Iter` / `Iteration` (any case) where a line's message starts, and its counter
_STEP_WORD = re.compile(r"(?i)(?<![\w./])(?:global[ _]step|step|iter(?:ation)?)")
_STEP = re.compile(r"(?i)(?:global[ _]step|step|iter(?:ation)?)\s*[:=#]?\s*[\[(]?\s*(\d{1,12})"
                   r"\s*(?:(?:/|of)\s*(\d{1,12})\s*)?[\])]?(?![\w.%/])")

#: what follows a step line's counter: `,` `:` `;` or ` - ` (a framework's `step 5 | loss: x`,
#: `step:  5  loss: x` are theirs, not a script's)
_STEP_SEP = re.compile(r"\s*(?:[,:;]|-\s)")
#: a run's summary after training (`Final validation loss: x`, `Best val acc: y`): no point
_SUMMARY = re.compile(r"(?i)(?:final|best|overall)\b")
#: in a file read as epoch lines (sniffed on its epoch lines), `Step 650 | Loss: x` is the
#: script's own step line too
_STEP_SEP_READ = re.compile(r"\s*(?:[,:;|]|-\s)")
#: anywhere in a head: a step counter and its separator (sniff looks for step lines only then)
_STEP_HINT = re.compile(r"(?i)(?<![\w./])(?:step|iter(?:ation)?)\s*[:=#]?\s*[\[(]?\s*\d{1,12}"
                        r"\s*(?:(?:/|of)\s*\d{1,12}\s*)?[\])]?\s*(?:[,:;]|-\s)"
                        r"|\[\s*(?:step|iter(?:ation)?)\s*[:=#]?\s*\d{1,12}\s*\]")


#: a bracketed step counter opening the message, pairs after it: `[step 25] avg_loss=-0.0007`
_BRACKET_STEP = re.compile(r"(?i)\[\s*(?:global[ _]step|step|iter(?:ation)?)\s*[:=#]?\s*"
                           r"(\d{1,12})(?:\s*/\s*\d{1,12})?\s*\]\s*")
#: a script's sentence print of its losses, no step: `grpo_loss is -0.28 and kl is -0.21`
_SENTENCE = re.compile(rf"([A-Za-z_][\w./\-]{{0,39}}) is ({_NUM})")
_SENTENCE_JOIN = re.compile(r"\s*(?:,\s*and|,|and)\s+")
_SENTENCE_HINT = re.compile(r"(?i)loss is [-+]?(?:\d|\.\d|nan|inf)")


def _sentence(frag: str) -> list[tuple[str, str, int]] | None:
    """The pairs of a line made only of `name is number` joined by `and` / `,`, one of them a
    loss (`grpo_loss is -0.28 and kl is -0.21`); None for any other line."""
    pos = len(frag) - len(frag.lstrip())
    end = len(frag.rstrip())
    out: list[tuple[str, str, int]] = []
    while True:
        m = _SENTENCE.match(frag, pos)
        if m is None:
            return None
        out.append((m.group(1), m.group(2), 0))
        pos = m.end()
        if pos >= end:
            break
        j = _SENTENCE_JOIN.match(frag, pos)
        if j is None:
            return None
        pos = j.end()
    if not any(infer_role(name) in ("train_loss", "val_loss") for name, _, _ in out):
        return None
    return out


def _step_message(frag: str, pipes: bool = False) -> tuple[re.Match, int] | None:
    """The step counter of a line whose message starts with one and a separator (`Step 100,
    Loss: 6.27`; with `pipes`, also `Step 650 | Loss: 0.0012`), and where the separator ends;
    only for lines with no epoch message."""
    if "tep" not in frag and "TEP" not in frag and "ter" not in frag and "TER" not in frag:
        return None
    bm = _BRACKET_STEP.search(frag, 0, 200) if "[" in frag[:200] else None
    if bm is not None and (not bm.start() or _PREFIX_OK.fullmatch(frag, 0, bm.start())):
        return bm, bm.end()
    m = _STEP_WORD.search(frag, 0, 200)
    if m is None or (m.start() and not _PREFIX_OK.fullmatch(frag, 0, m.start())):
        return None
    h = _STEP.match(frag, m.start())
    if h is None:
        return None
    sep = (_STEP_SEP_READ if pipes else _STEP_SEP).match(frag, h.end())
    return (h, sep.end()) if sep else None


def _message(frag: str) -> tuple[re.Match, int] | None:
    """The epoch header of a line whose message starts with it, and where it ends."""
    m = _EPOCH_WORD.search(frag, 0, 200)
    if m is None or (m.start() and not _PREFIX_OK.fullmatch(frag, 0, m.start())):
        return None
    h = _EPOCH.match(frag, m.start())
    return (h, h.end()) if h else None


def _pairs(text: str, start: int) -> list[tuple[str, str, int]]:
    """(name, number, group) for each pair in `text` from `start`, names qualified."""
    found = []
    labels = [(m.start(), _QUAL.match(m.group(1))) for m in _LABEL.finditer(text, start)]
    for m in _PAIR.finditer(text, start):
        found.append((m.start(), m.end(), " ".join(m.group(1).split()), m.group(2)))
    if not found:
        return []
    names = [n for _, _, n, _ in found]
    out, qual, group, last = [], None, 0, start
    li, labelled = 0, False
    for pos, end, name, raw in found:
        gap = text[last:pos]
        if "|" in gap:
            group += 1
            qual = None
        while li < len(labels) and labels[li][0] < pos:
            if labels[li][0] >= last and labels[li][1]:
                qual, labelled = labels[li][1].group(0), True
            li += 1
        own = _QUAL.match(name)
        if own:
            qual, labelled = own.group(0), False
        elif qual and not _GLOBAL.match(name) and (
                labelled or "|" in text or names.count(name) > 1):
            name = f"{qual} {name}"
        out.append((name, raw, group))
        last = end
    return out


_METRIC_WORD = re.compile(r"(?i)(?:^|[\s_/(-])(?:mse|mae|rmse|f1|bleu|rouge\w*|auc|iou|m?ap|dice|"
                          r"ppl|perplexity|wer|cer|score|err(?:or)?|time|precision|recall)"
                          r"(?:$|[\s_/)-])")


def _metric_pairs(pairs: list[tuple[str, str, int]]) -> bool:
    """Whether a line of pairs after an epoch header holds a metric (a loss, accuracy, lr,
    grad norm: a role other than `other`), not a model's printed answer (`Final answer: 300`,
    `x: 5`) in a script that prints its generations after the header."""
    return any(infer_role(name) != "other" or _QUAL.match(name) or _METRIC_WORD.search(name)
               for name, _, _ in pairs)


def _only_pairs(frag: str) -> bool:
    """Whether a line is nothing but pairs (and Train/Val labels) after its logging prefix."""
    rest = _LABEL.sub(" ", _PAIR.sub(" ", frag))
    m = _PREFIX_OK.match(rest)
    return _SEPARATORS.fullmatch(rest, m.end() if m else 0) is not None


def sniff(name: str, head: bytes) -> float:
    """0.45 when epoch lines with pairs (or an epoch header followed by pair lines or a Keras
    bar), or step lines with pairs, are in the head: below every framework's own sniff, above
    generic CSV."""
    text = head_text(head)
    if _JSON_START.match(text):
        return 0.0  # (a JSON document or JSON lines: never epoch lines)
    if ("poch" in text or "POCH" in text) and _epoch_hits(text):
        return 0.45
    return 0.45 if _step_hit(text) or " is " in text and _sentence_hit(text) else 0.0


def _epoch_hits(text: str) -> int:
    """Epoch lines with pairs in a head (up to 3)."""
    hits, open_block = 0, 0
    for _, frag in fragments(text):
        if open_block and (_only_pairs(frag) and _PAIR.search(frag)
                           and _metric_pairs(_pairs(frag, 0)) or _keras(frag)):
            hits += 1
        open_block = max(open_block - 1, 0)
        if _BAR.search(frag):
            continue
        hm = _message(frag)
        if hm is None:
            continue
        if _PAIR.search(frag, hm[1]):
            hits += 1
        elif _BLOCK_HEAD.fullmatch(frag, hm[1]):
            open_block = 4
        if hits >= 3:
            break
    return hits


#: step-counter candidates a sniff looks at (each one's line), at most, and how much of the
#: head it looks in (a script logs its first step line early; scanning 1 MiB for a counter
#: costs ~60 ms)
_STEP_CANDIDATES = 256
_STEP_WINDOW = 1 << 18


def _candidate_lines(pattern: "re.Pattern[str]", text: str):
    """The lines (each once) of the head's first `_STEP_WINDOW` characters where `pattern`
    matches, at most `_STEP_CANDIDATES` of them: linear whatever the head (a line with many
    matches is looked at once)."""
    pos = 0
    for _ in range(_STEP_CANDIDATES):
        m = pattern.search(text, pos, _STEP_WINDOW)
        if m is None:
            return
        a = text.rfind("\n", 0, m.start()) + 1
        b = text.find("\n", m.end())
        b = len(text) if b < 0 else b
        yield text[a:b]
        pos = b + 1


def _sentence_hit(text: str) -> bool:
    """Whether a sentence print of a loss (`grpo_loss is x and kl is y`) is in the head's
    first `_STEP_WINDOW` characters."""
    return any(_sentence(line) for line in _candidate_lines(_SENTENCE_HINT, text))


def _step_hit(text: str) -> bool:
    """Whether a step line with pairs is in the head's first `_STEP_WINDOW` characters: only
    the lines where a step counter and its separator occur (one regex pass finds them) are
    looked at."""
    for line in _candidate_lines(_STEP_HINT, text):
        for _, frag in fragments(line):
            if _BAR.search(frag) or _message(frag) is not None:
                continue
            sm = _step_message(frag)
            if sm and _PAIR.search(frag, sm[1]) and _metric_pairs(_pairs(frag, sm[1])):
                return True
    return False


def _keras(frag: str) -> re.Match | None:
    """Keras' progress bar at its last drawing (`782/782 [====] - ... - loss: ...`)."""
    m = _KERAS.match(frag)  # (`390/390 [===] - ETA: 0s - loss: 0.9`: still drawing, the
    # validation metrics come with the next drawing)
    return m if m and m.group(1) == m.group(2) and "- ETA: " not in frag else None


class _Rows:
    """Points as read: (line, epoch, iteration or None, total or None, wall, name, value)."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def add(self, lineno, epoch, it, total, wall, pairs, b: RecordsBuilder, frag: str) -> None:
        for name, raw, _ in pairs:
            try:
                value = parse_float(raw)
            except ValueError:  # pragma: no cover - _PAIR only matches numbers
                b.skip(lineno, f"value of {name} is not a number", frag)
                continue
            self.rows.append((lineno, epoch, it, total, wall, name, value))


def read(path: Path, run: str) -> list[RunRecords]:
    body, tail, tail_line = split_truncated(read_text(path))
    b = RecordsBuilder()
    rows = _Rows()
    stamps: dict[str, float] = {}
    block: tuple[int, int | None] | None = None  # the open epoch block: (epoch, total)
    block_left = 0
    bars = keras = 0
    stepped = False  # a step line was read: a lone `Validation loss: x` line sits at its step
    counted = 0  # sentence prints of a loss (`grpo_loss is x and kl is y`) so far
    last_step: int | None = None  # the step of the last step line (save lines lean on it)
    saves = SaveLines()
    for lineno, frag in fragments(body):
        if block is not None and block_left:
            km = _keras(frag)
            if km or _only_pairs(frag) and _step_message(frag, pipes=True) is None:
                pairs = _pairs(frag, km.end() if km else 0)
                if pairs and (km or _metric_pairs(pairs)):
                    keras += bool(km)
                    rows.add(lineno, block[0], None, None, _wall(frag, stamps), pairs, b, frag)
                    block_left = 0 if km else 8  # (one Keras bar an epoch: the next is
                    continue  # `evaluate`'s, on the test set)
            if not _BAR.search(frag):
                block_left -= 1
        if _BAR.search(frag):
            bars += 1
            continue
        hm = _message(frag)
        if hm is None:
            sm = _step_message(frag, pipes=True)
            pairs = _pairs(frag, sm[1]) if sm else []
            if pairs and _metric_pairs(pairs):  # a step line: epoch None, the step as printed
                # (`**Step 1:** ... 45 pens / 5 pens/set = 9 sets`, a model's answer, is not)
                last_step = int(sm[0].group(1))
                rows.add(lineno, None, last_step, None, _wall(frag, stamps), pairs, b, frag)
                block, block_left = None, 0
                stepped = True
            elif sm is None and " is " in frag and (pairs := _sentence(frag)):
                counted += 1  # a script that prints its loss once an update: the k-th is step k
                last_step = counted
                rows.add(lineno, None, counted, None, _wall(frag, stamps), pairs, b, frag)
                stepped = True
            elif "heckpoint" in frag or "saving model to" in frag:
                saves.feed(lineno, frag, last_step)
            elif stepped and sm is None and _only_pairs(frag):
                pairs = _pairs(frag, 0)
                if pairs and all(infer_role(p[0]) in ("val_loss", "val_acc")
                                 and not _SUMMARY.match(p[0]) for p in pairs):
                    # `Validation loss: 0.0258` on its own: at the step printed last
                    rows.add(lineno, None, None, None, _wall(frag, stamps), pairs, b, frag)
            continue
        head, end = hm
        epoch = int(head.group(1))
        it = total = None
        im = _ITER.match(frag, end) or _BARE_ITER.match(frag, end)
        if im:
            it, total = int(im.group(1)), int(im.group(2)) if im.group(2) else None
            end = im.end()
        pairs = _pairs(frag, end)
        if pairs:
            rows.add(lineno, epoch, it, total, _wall(frag, stamps), pairs, b, frag)
            block, block_left = None, 0
        elif _BLOCK_HEAD.fullmatch(frag, end):
            block, block_left = (epoch, None), 8
    if tail and (_message(tail) or _step_message(tail, pipes=True)) and _PAIR.search(tail):
        b.skip(tail_line, "truncated last line", tail)
    how = _place(rows.rows, b)
    extra = {"step_source": how}
    if bars:
        extra["progress_bar_lines"] = str(bars)
    # save lines give checkpoints only on a step axis (a file of epochs has no iterations)
    ckpts = saves.fields() if how.startswith("step lines") else {}
    return [b.build(run, str(path), FORMAT,
                    RunMeta(framework="keras" if keras else None, extra=extra, **ckpts))]


def _wall(frag: str, stamps: dict[str, float]) -> float:
    m = _WALL.match(frag)
    return utc_seconds(f"{m.group(1)} {m.group(2)}", stamps) if m else float("nan")


def _place(rows: list[tuple], b: RecordsBuilder) -> str:
    """Give every row its step (see the module docstring); say how."""
    if any(r[1] is None for r in rows):
        return _place_steps(rows, b)
    iters = [r for r in rows if r[2] is not None]
    if not iters:
        seen: dict[str, int] = {}
        again = 0  # lines that repeat the epoch of the line before them (same tag)
        for line, epoch, _, _, wall, name, value in rows:
            again += seen.get(name) == epoch
            seen[name] = epoch
            b.add(name, epoch, value, wall, order=line)
        if again:
            b.warn(f"{again:,} epoch line(s) repeat the epoch of the line before them with no "
                   "iteration losslens can read: the step is the epoch, so only the last line "
                   "of each epoch is plotted and judged")
        return "epoch"
    first = 0 if min(r[1] for r in rows) == 0 else 1
    totals = [r[3] for r in iters if r[3]]
    per_epoch, how = 0, ""
    if totals:
        per_epoch = max(set(totals), key=totals.count)
        how = f"(epoch - {first}) * {per_epoch} + iteration (the total printed)"
    else:
        ordered = sorted(iters)
        back = any(b2[2] < a[2] for a, b2 in zip(ordered, ordered[1:]) if b2[1] == a[1] + 1)
        if back:
            per_epoch = max(r[2] for r in iters)
            how = f"(epoch - {first}) * {per_epoch} + iteration (the largest iteration seen)"
        else:
            how = "iteration (a counter that never goes back)"
    last_step: dict[int, int] = {}
    for line, epoch, it, _, wall, name, value in sorted(rows, key=lambda r: r[0]):
        if it is not None:
            step = (epoch - first) * per_epoch + it if per_epoch else it
            last_step[epoch] = step
        elif per_epoch:
            step = (epoch - first + 1) * per_epoch
        else:
            step = last_step.get(epoch, 0)
        if not -(1 << 62) < step < (1 << 62):
            b.skip(line, "step does not fit in 64 bits", f"epoch {epoch}")
            continue
        b.add(name, step, value, wall, order=line)
    return how


def _place_steps(rows: list[tuple], b: RecordsBuilder) -> str:
    """A script that prints step lines: each at its step, and each epoch line's values at the
    step printed last before it (0 before the first)."""
    last, shared = 0, 0
    placed: dict[str, int] = {}  # tag -> step of its last epoch-line value
    for line, epoch, it, _, wall, name, value in sorted(rows, key=lambda r: r[0]):
        if epoch is None:
            last = it if it is not None else last
        elif placed.get(name) == last:
            shared += 1
        if not -(1 << 62) < last < (1 << 62):
            b.skip(line, "step does not fit in 64 bits", f"step {last}")
            last = 0
            continue
        if epoch is not None:
            placed[name] = last
        b.add(name, last, value, wall, order=line)
    if shared:
        b.warn(f"{shared:,} epoch line value(s) come with no step line since the epoch line "
               "before them: they share its step, so only the last of them is plotted and "
               "judged")
    return "step lines (an epoch line's values at the step printed last before it)"

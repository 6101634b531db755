"""A training script's own `step N | name value | ...` lines (format `step-pipes`), written
here with the f-strings of the Qwen3-from-scratch script they were taken from
(Pratic2001/Qwen3-Non-MOE, train.py); the real run is a re-fetch entry
(tests/test_readers_real_refetched.py)."""
from __future__ import annotations

import pytest

import losslens
from losslens.readers import FORMATS, read_records, sniff
from losslens.readers.step_pipes import sniff as sniff_step_pipes


def qwen3_out(start: int, stop: int, *, resumed: bool, eval_every: int = 500,
              ckpt_every: int = 150, keep: int = 3, blow_up_after: int | None = None,
              new_eval: bool = False) -> str:
    """What train.py prints for one launch from `start` to `stop` (exclusive), a line every
    10 steps: its header, `[Checkpoint] resumed from ...` when resumed, the step lines,
    `[eval]` lines, and its saves (`ckpt_step{step:07d}.pt`, keeping the last `keep`)."""
    out = []
    if resumed:
        out.append("[Resume] loaded config from checkpoint")
    out += ["Model params : 299,392,704  (0.299B)", "[compile] torch.compile(mode='default')…",
            "          First step will be slow (~60-120s). Subsequent steps are fast."]
    if resumed:
        out.append(f"[Checkpoint] resumed from ./checkpoints/latest.pt at step {start}")
    out += ["GPU peak bf16: 165.2 TFLOP/s", "", "Tokens / optimizer step : 32,768",
            f"Max steps               : {100_000:,}",
            f"Checkpoint every        : {ckpt_every:,} steps",
            f"Total tokens (planned)  : {100_000 * 32_768:,}", ""]
    saved: list[str] = []
    for step in range(start, stop, 10):
        loss_display = 14.0 if blow_up_after is not None and step > blow_up_after \
            else 3.0 - step / 100_000
        lr, grad_norm_display, tok_per_sec, mfu = 1.79e-4, 0.075, 113_400.0, 1.1407
        out.append(f"step {step:7d} | loss {loss_display:.4f} | lr {lr:.2e} | "
                   f"grad {grad_norm_display:.3f} | "
                   f"{tok_per_sec / 1e3:.1f}k tok/s | "
                   f"mfu {mfu * 100:.2f}%")
        if step > start and step % eval_every == 0:
            if new_eval:
                out.append(f"  [eval] step {step:7d} | val_random {4.1:.4f} | "
                           f"val_seq {4.0:.4f}")
            else:
                out.append(f"  [eval] step {step:7d} | val_loss {4.0749:.4f}")
        if step > start and step % ckpt_every == 0:
            path = f"./checkpoints/ckpt_step{step:07d}.pt"
            out.append(f"[Checkpoint] saved {path}")
            saved.append(path)
            if len(saved) > keep:
                old = saved.pop(0)
                out.append(f"[Checkpoint] pruned {old.removeprefix('./')}")
    return "\n".join(out) + "\n"


def series(rec, tag: str) -> tuple[list[int], list[float]]:
    sel = rec.tag_code == rec.tags.index(tag)
    return rec.step[sel].tolist(), rec.value[sel].tolist()


def test_script_lines_read_with_roles_steps_checkpoints_and_planned_length(tmp_path):
    path = tmp_path / "train.out"
    path.write_text("nohup: ignoring input\n" + qwen3_out(47700, 49010, resumed=True,
                                                          blow_up_after=47700))
    assert sniff(path).name == "step-pipes"
    (rec,) = read_records(path)
    assert rec.format == "step-pipes" and rec.skipped_count == 0 and rec.warnings == ()
    assert rec.tags == ("loss", "lr", "grad", "tok/s", "mfu", "val_loss")
    steps, values = series(rec, "loss")
    assert steps == list(range(47700, 49010, 10)) and values[:2] == [2.5230, 14.0]
    assert series(rec, "tok/s")[1][0] == 113_400.0  # `113.4k`: the multiplier applied
    assert series(rec, "mfu")[1][0] == 114.07  # `%`: as printed
    assert series(rec, "lr")[1][0] == 1.79e-4 and series(rec, "grad")[1][0] == 0.075
    assert series(rec, "val_loss") == ([48000, 48500, 49000], [4.0749] * 3)
    meta = rec.metadata
    assert meta.train_iters == 100_000 and meta.save_interval == 150
    # saves every 150 steps from 47850, the last 3 kept: 48600, 48750, 48900
    assert meta.checkpoints == (48600, 48750, 48900)
    assert meta.checkpoint_source == ("the log's save lines ([Checkpoint] saved); 5 deleted "
                                      "later (pruned) left out")
    assert meta.checkpoint_dir == "checkpoints"
    assert meta.extra["resumed_at_steps"] == "47700" and rec.headers == (6,)
    run = losslens.read(path).runs[0]
    assert run.roles == {"loss": "train_loss", "lr": "lr", "grad": "grad_norm",
                         "tok/s": "other", "mfu": "other", "val_loss": "val_loss"}
    assert run.notes == ("stopped at 49,000 of 100,000 planned iterations",)


def test_a_resume_that_appends_to_the_log_is_a_new_segment(tmp_path):
    path = tmp_path / "train.out"
    path.write_text(qwen3_out(0, 1000, resumed=False) + qwen3_out(900, 1500, resumed=True))
    run = losslens.read(path).runs[0]
    assert [(s.first_step, s.last_step) for s in run.segments] == [(0, 990), (900, 1490)]


def test_eval_lines_of_the_later_script_and_an_eval_tag_on_bare_names(tmp_path):
    path = tmp_path / "train.out"
    path.write_text(qwen3_out(0, 1010, resumed=False, new_eval=True)
                    + "  [eval] step    1010 | loss 3.9000 | ppl 49.40\n")
    (rec,) = read_records(path)
    assert series(rec, "val_random") == ([500, 1000], [4.1, 4.1])
    assert series(rec, "val_seq") == ([500, 1000], [4.0, 4.0])
    # a name without a validation word of its own takes the line's `[eval]`
    assert series(rec, "eval/loss") == ([1010], [3.9]) and "eval/ppl" in rec.tags
    roles = losslens.read(path).runs[0].roles
    assert roles["eval/loss"] == "val_loss" and roles["loss"] == "train_loss"


@pytest.mark.parametrize("line, pairs", [
    ("step 5 | loss 2.5 | lr 3e-4", [("loss", 2.5), ("lr", 3e-4)]),
    ("2026-01-02 10:11:12 INFO step 5 | train loss 2.5 | 1.2M tokens", [
        ("train loss", 2.5), ("tokens", 1.2e6)]),
    ("Step 5/100 | loss: 2.5 | acc=0.75 | dt 12.5ms", [("loss", 2.5), ("acc", 0.75),
                                                       ("dt", 12.5)]),
    ("[rank0]: step 5 | loss nan | grad inf", [("loss", None), ("grad", float("inf"))]),
    ("step 5 | loss 2.5 lr 3e-4 | 37.2k tok/s", [("loss", 2.5), ("lr", 3e-4),
                                                 ("tok/s", 37_200.0)]),
])
def test_pair_shapes(tmp_path, line, pairs):
    path = tmp_path / "x.log"
    path.write_text(line + "\n")
    (rec,) = read_records(path, "step-pipes")
    got = [(t, series(rec, t)[1][0]) for t in rec.tags]
    assert [t for t, _ in got] == [t for t, _ in pairs]
    for (_, v), (_, want) in zip(got, pairs):
        assert (v != v) if want is None else v == want
    assert series(rec, rec.tags[0])[0] == [5]


def test_parts_without_a_pair_are_counted_and_bare_step_lines_skipped(tmp_path):
    path = tmp_path / "x.log"
    path.write_text("step 1 | loss 2.5 | (12.3 | ok\nstep 2 | loss 2.4 | (12.1 | ok\n"
                    "step 3 | starting\nstep 4 | loss 2.3\nstep 5 | loss 2.")
    (rec,) = read_records(path, "step-pipes")
    assert series(rec, "loss") == ([1, 2, 4], [2.5, 2.4, 2.3])
    assert [(s.line, s.reason) for s in rec.skipped] == [
        (3, "step line without a `name value` pair"), (5, "truncated last line")]
    assert rec.warnings == ("4 part(s) of step lines hold no `name value` pair and were not "
                            "read (first: line 1: '(12.3')",)


@pytest.mark.parametrize("text, owner", [
    # build-nanogpt, llm.c and torchtune keep their own readers
    ("step     0 | loss: 10.955010 | lr 6.0000e-04 | norm: 15.3420 | dt: 19152.47ms | "
     "tok/sec: 27374.43\n", "build-nanogpt"),
    ("step    1/74 | train loss 11.010809 | norm 15.4281 | lr 6.00e-04 | (1234.56 ms | "
     "42.1% bf16 MFU | 1234 tok/s)\n", "llmc"),
    ("Step 1 | loss:1.5428498983383179 lr:2e-05 tokens_per_second_per_gpu:1058.2\n",
     "torchtune"),
    ("Epoch [1/5], Step [100/600], Loss: 0.2192\n", "epoch-lines"),
])
def test_frameworks_step_lines_keep_their_readers(tmp_path, text, owner):
    path = tmp_path / "out.log"
    path.write_text(text * 3)
    assert sniff_step_pipes("out.log", path.read_bytes()) in (0.0, 0.4)
    assert sniff(path).name == owner


@pytest.mark.parametrize("text", [
    "step 5 | starting the data loader\n",  # no pair
    "a step 5 | loss 2.5 that is prose\n",  # `step` is not where the message starts
    "step: 5 | loss 2.5\n",  # torchtitan / modded-nanogpt's colon
    "step 5 loss 2.5 lr 0.1\n",  # no `|`
    "",
])
def test_sniff_declines(text):
    assert sniff_step_pipes("x.log", text.encode()) == 0.0


def test_registered_below_the_frameworks():
    assert "step-pipes" in FORMATS
    assert sniff_step_pipes("x", b"step 1 | loss 2.5\n") == 0.4


@pytest.mark.parametrize("line", [
    "INFO:" * 20000 + " x",  # prefix tokens that two alternatives could take
    "[INFO]" * 20000 + " step 1 | loss 2",
    "step 1 | " + "a" * 400_000,  # one part, no pair: a long name that never meets a number
    "step 1 | " + "1" * 400_000,
    "step 1 | " + "a a " * 100_000,
])
def test_hostile_lines_cost_linear_time(tmp_path, line):
    import time

    path = tmp_path / "x.log"
    path.write_text("step 0 | loss 2.5\n" + line + "\n")
    start = time.process_time()
    sniff_step_pipes("x.log", path.read_bytes())
    read_records(path, "step-pipes")
    assert time.process_time() - start < 2.0

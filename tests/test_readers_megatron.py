"""Megatron-LM / Megatron-DeepSpeed and DeepSpeed readers: composed fixtures per era and
variant (tests/data/megatron, written by make_fixtures.py), the vectorised path against the
per-line classifier, and pinned results on the real logs of the corpus."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import losslens
from losslens.errors import NoSeriesError
from losslens.readers import (deepspeed, megatron, megatron_fast, megatron_lines, read_records,
                              sniff)
from losslens.roles import infer_role

DATA = Path(__file__).resolve().parent / "data" / "megatron"
MEGATRON_FIXTURES = ["megatron_2019.log", "megatron_2022_resume.log", "megatron_2024_noise.log",
                     "megatron_2026.log", "bigscience.log", "microsoft.log"]
NAN = math.nan


def _read(name: str, fast: bool | None = None):
    return megatron.read_file(DATA / name, name, fast=fast)


def _series(rec, tag: str) -> tuple[list[int], list[float], list[int]]:
    sel = rec.tag_code == rec.tags.index(tag)
    return rec.step[sel].tolist(), rec.value[sel].tolist(), rec.order[sel].tolist()


def _same(a: list[float], b: list[float]) -> bool:
    return np.array_equal(np.asarray(a, float), np.asarray(b, float), equal_nan=True)


def _canon(rec) -> dict:
    out = {}
    for i, tag in enumerate(rec.tags):
        sel = rec.tag_code == i
        out[tag] = (rec.step[sel], rec.value[sel], rec.wall_time[sel], rec.order[sel])
    return out


def _assert_same_records(a, b) -> None:
    assert a.tags == b.tags
    ca, cb = _canon(a), _canon(b)
    for tag in ca:
        for x, y in zip(ca[tag], cb[tag]):
            assert np.array_equal(x, y, equal_nan=True), tag
    assert (a.headers, a.skipped, a.skipped_count, a.metadata, a.warnings) == \
        (b.headers, b.skipped, b.skipped_count, b.metadata, b.warnings)


# --------------------------------------------------------------------------- eras


def test_2019_oldest_format_and_end_of_training_results():
    rec = _read("megatron_2019.log")
    assert rec.tags == ("elapsed time per iteration (ms)", "learning rate", "lm loss",
                        "loss scale", "number of skipped iterations", "lm loss validation",
                        "lm loss validation ppl", "lm loss test", "lm loss test ppl")
    assert _series(rec, "lm loss") == ([100, 200, 300], [7.123456, 6.234567, 5.5], [2, 3, 7])
    assert _series(rec, "learning rate")[1] == [1.5e-4, 1.497e-4, 1.49e-4]
    assert _series(rec, "number of skipped iterations")[1] == [0.0, 1.0, 0.0]
    # "at the end of training" sits at the last iteration printed before it
    assert _series(rec, "lm loss validation") == ([200, 300], [6.345678, 5.612345], [5, 9])
    assert _series(rec, "lm loss test") == ([300], [5.65], [12])
    assert np.isnan(rec.wall_time).all()
    assert rec.metadata.train_iters == 1000 and rec.metadata.framework == "megatron"
    assert rec.skipped_count == 0 and rec.headers == ()


def test_2022_fp16_overflow_saves_and_resume_with_overlap():
    rec = _read("megatron_2022_resume.log")
    steps, values, orders = _series(rec, "lm loss")
    assert steps == [10, 20, 30, 40, 50, 60, 50, 60, 70]
    assert values == [10.123, 9.5123, 8.9123, 8.4123, 8.1123, 7.9123, 8.1, 7.9, 7.8]
    # the overflow interval (iteration 20) has no grad norm and one skipped iteration
    assert _series(rec, "grad norm")[0] == [10, 30, 40, 50, 60, 50, 60, 70]
    assert _series(rec, "number of skipped iterations")[1][:3] == [0.0, 1.0, 0.0]
    assert _series(rec, "loss scale")[1][:2] == [65536.0, 32768.0]
    assert rec.headers == (44, 72)  # second argument dump, "successfully loaded checkpoint"
    assert rec.metadata.checkpoints == (20, 40, 60)
    assert rec.metadata.checkpoint_source == \
        "the log's save lines (Megatron: successfully saved checkpoint)"
    frame = losslens.read(DATA / "megatron_2022_resume.log")
    info = frame.runs[0]
    assert [(s.first_step, s.last_step, s.reason) for s in info.segments] == \
        [(10, 60, "start"), (50, 70, "header")]
    loss = frame.series(info.run, "lm loss")
    assert loss.step.tolist() == [10, 20, 30, 40, 50, 60, 70]
    assert loss.value.tolist() == [10.123, 9.5123, 8.9123, 8.4123, 8.1, 7.9, 7.8]  # last write
    assert loss.segment.tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert frame.series(info.run, "lm loss", raw=True).step.tolist() == steps


def test_2022_argument_dump_metadata():
    meta = _read("megatron_2022_resume.log").metadata
    assert (meta.hidden_size, meta.num_layers, meta.num_heads, meta.seq_length) == \
        (14336, 64, 112, 2048)
    assert (meta.init_method_std, meta.adam_eps, meta.adam_beta1, meta.adam_beta2) == \
        (0.02, 1e-08, 0.9, 0.95)
    assert (meta.precision, meta.lr, meta.min_lr, meta.lr_schedule, meta.warmup_steps) == \
        ("fp16", 6e-05, 6e-06, "cosine", 100)
    assert (meta.global_batch_size, meta.micro_batch_size, meta.save_interval,
            meta.log_interval, meta.clip_grad, meta.weight_decay) == (256, 1, 20, 10, 1.0, 0.1)
    assert meta.rampup_batch_size == "['16', '16', '6_000_000']"
    assert meta.train_iters == 320000  # args say None (sample-based): from `N/ M`
    assert meta.extra == {"tensor_model_parallel_size": "4", "train_samples": "300000000"}
    assert meta.checkpoints == (20, 40, 60)


def test_2024_timestamps_prefixes_nan_inf_and_damage():
    rec = _read("megatron_2024_noise.log")
    steps, values, orders = _series(rec, "lm loss")
    assert steps == [100, 200, 300, 400, 500, 600, 700, 800]
    # INF as printed; 300 dropped `lm loss` with 3 NaN iterations: a NaN stands in for it
    assert _same(values, [3.412346, math.inf, NAN, 3.3, 3.2, 3.1, 3.05, 3.0])
    assert orders == [1, 2, 3, 4, 5, 6, 7, 8]
    assert _same(_series(rec, "grad norm")[1][:3], [0.287, NAN, math.inf])
    assert _series(rec, "number of nan iterations")[1][2] == 3.0
    # wall time from the `[YYYY-mm-dd HH:MM:SS]` stamp (taken as UTC)
    sel = rec.tag_code == rec.tags.index("lm loss")
    assert rec.wall_time[sel][0] == 1714557600.0 and rec.wall_time[sel][1] == 1714557752.0
    # 800: memory line spliced after the fields (kept); 900: damaged value after one field
    assert _series(rec, "consumed samples")[0][-2:] == [800, 900]
    assert [(s.line, s.reason.split(":")[0]) for s in rec.skipped] == [
        (8, "unparseable text after 9 fields of a Megatron iteration line"),
        (9, "unparseable text after 1 fields of a Megatron iteration line"),
        (10, "Megatron iteration line without `iteration N/ M |`"),
        (16, "truncated last line")]
    assert rec.skipped_count == 4
    assert _same(_series(rec, "lm loss validation")[1], [NAN])
    assert _series(rec, "lm loss validation ppl")[1] == [4.851652e08]


def test_2026_microseconds_validation_sets_moe_and_release_load():
    rec = _read("megatron_2026.log")
    steps, values, orders = _series(rec, "lm loss")
    assert steps == [1, 10, 20, 30, 21, 30] and orders == [2, 3, 4, 16, 19, 20]
    sel = np.flatnonzero(rec.tag_code == rec.tags.index("lm loss"))
    assert rec.wall_time[sel[0]] == 1772618401.0 + 345678 / 1e6  # 10:00:01.345678 UTC
    assert rec.wall_time[sel[1]] == 1772618470.0 + 1 / 1e6  # 10:01:10.000001
    assert _series(rec, "skipped samples") == ([20], [512.0], [4])
    assert _series(rec, "mtp_1 loss")[1][:2] == [10.91234, 9.512346]
    assert _series(rec, "throughput per GPU (TFLOP/s/GPU)")[1][0] == 412.3
    assert _series(rec, "lm loss validation") == ([20], [8.5], [6])
    assert _series(rec, "mtp_1 loss validation") == ([20], [8.6], [6])
    assert _series(rec, "lm loss validation-c4") == ([20], [8.7], [9])
    assert _series(rec, "lm loss validation-wiki") == ([20], [8.3], [12])
    assert _series(rec, "lm loss test") == ([30], [7.45], [22])
    assert rec.headers == (17, 18)  # release checkpoint, loaded checkpoint
    # the "saving" line of iteration 0 has no "successfully saved": only 20 is known saved
    assert rec.metadata.extra == {} and rec.metadata.checkpoints == (20,)
    frame = losslens.read(DATA / "megatron_2026.log")
    info = frame.runs[0]
    assert [(s.first_step, s.last_step, s.reason) for s in info.segments] == \
        [(1, 30, "start"), (21, 30, "header")]
    assert frame.series(info.run, "lm loss").value.tolist() == [10.81234, 9.412346, 8.412346,
                                                                8.4, 7.4]


def test_roles_of_every_megatron_tag():
    roles = {}
    for name in MEGATRON_FIXTURES:
        roles.update({t: infer_role(t) for t in _read(name).tags})
    assert {t for t, r in roles.items() if r == "val_loss"} == {
        "lm loss validation", "lm loss validation-c4", "lm loss validation-wiki",
        "lm loss validation-c4_en", "mtp_1 loss validation", "lm loss test"}
    assert {t for t, r in roles.items() if r == "train_loss"} == {
        "lm loss", "mtp_1 loss", "deepspeed/loss"}
    assert all(roles[t] == "other" for t in roles if t.endswith(" ppl"))
    assert (roles["learning rate"], roles["deepspeed/lr"], roles["grad norm"],
            roles["loss scale"], roles["deepspeed/loss scale"]) == \
        ("lr", "lr", "grad_norm", "loss_scale", "loss_scale")
    assert (roles["number of skipped iterations"], roles["number of nan iterations"],
            roles["deepspeed/skipped"], roles["deepspeed/overflow"]) == ("skipped",) * 4
    assert roles["load_balancing_loss"] == "other"


# --------------------------------------------------------------------------- variants


def test_bigscience_megatron_deepspeed():
    rec = _read("bigscience.log")
    assert _series(rec, "lm loss") == ([25000, 25001], [2.2871, 2.28], [14, 25])
    assert _series(rec, "consumed tokens")[1] == [104857600000.0, 104861794304.0]
    assert _series(rec, "elapsed time per iteration (s)")[1] == [105.41, 105.41]
    assert _series(rec, "num zeros")[1] == [0.0, 0.0]
    assert _series(rec, "TFLOPs")[1] == [149.1, 149.1]
    assert "loss scale" not in rec.tags  # bf16: not printed
    assert _series(rec, "lm loss validation") == ([25000], [2.3012], [16])
    assert _series(rec, "lm loss validation-c4_en") == ([25000], [2.4012], [19])
    assert _series(rec, "lm loss test") == ([25001], [2.31], [27])
    # interleaved DeepSpeed lines, prefixed
    assert _series(rec, "deepspeed/lr") == ([25000, 25001], [5.9e-05, 5.9e-05], [12, 23])
    assert _series(rec, "deepspeed/skipped")[1] == [0.0, 1.0]
    assert _series(rec, "deepspeed/loss") == ([25000, 25001], [2.2871, 2.28], [13, 24])
    # OVERFLOW after iteration 25000 → step 25001; rank 1's copy is a duplicate
    assert _series(rec, "deepspeed/loss scale") == ([25001], [32768.0], [21])
    assert _series(rec, "deepspeed/overflow") == ([25001], [1.0], [21])
    assert len(rec.warnings) == 1 and "ranks other than rank 0" in rec.warnings[0]
    meta = rec.metadata
    assert (meta.framework, meta.precision, meta.init_method_std, meta.warmup_steps,
            meta.train_iters, meta.adam_beta1, meta.adam_beta2) == \
        ("megatron-deepspeed", "bf16", 0.0048, 953, 95367, 0.9, 0.95)


def test_microsoft_megatron_deepspeed():
    rec = _read("microsoft.log")
    assert rec.tags[:14] == (
        "consumed samples", "consumed tokens", "elapsed time per iteration (ms)",
        "learning rate", "global batch size", "lm loss", "loss scale", "grad norm",
        "actual seqlen", "number of skipped iterations", "number of nan iterations",
        "samples per second", "tokens per gpu per second (tgs)", "TFLOPs")
    assert _series(rec, "tokens per gpu per second (tgs)")[1] == [53094.4, 53094.4]
    assert _series(rec, "actual seqlen")[1] == [2048.0, 2048.0]
    assert _series(rec, "lm loss validation") == ([200], [5.5], [4])
    assert rec.metadata.framework == "megatron-deepspeed" and len(rec) == 30


# --------------------------------------------------------------------------- DeepSpeed


def test_deepspeed_engine_steps_overflows_and_pipeline():
    rec = deepspeed.read(DATA / "deepspeed_engine.log", "ds")[0]
    assert rec.tags == ("loss scale", "overflow", "lr", "lr (group 1)", "skipped", "loss",
                        "iter time (s)", "samples/sec")
    # no step known before lines 1-2: step 1; hysteresis keeps 65536, then 32768
    assert _series(rec, "loss scale") == ([1, 11, 21], [32768.0, 8192.0, 4096.0], [2, 6, 9])
    assert _series(rec, "overflow") == ([1, 11, 21], [2.0, 2.0, 1.0], [2, 6, 9])
    assert _series(rec, "lr") == ([10, 20, 30], [0.0003, 0.00028, 0.00027], [3, 7, 11])
    assert _series(rec, "lr (group 1)")[1] == [0.0003, 0.0003, 0.0003]
    assert _series(rec, "skipped")[1] == [2.0, 4.0, 5.0]  # cumulative, as printed
    assert _series(rec, "loss") == ([10, 20], [2.3456, 2.3], [4, 8])
    assert [(s.line, s.reason) for s in rec.skipped] == [
        (10, "unparseable DeepSpeed line (not a number: 'oops')"), (12, "truncated last line")]
    assert (rec.metadata.framework, rec.metadata.adam_beta1, rec.metadata.adam_beta2) == \
        ("deepspeed", 0.9, 0.95)


def test_deepspeed_chat_engines_ppo_axis_and_epochs():
    rec = deepspeed.read(DATA / "deepspeed_chat.log", "chat")[0]
    # PPO `Step: S` (0-based, per epoch) sits on the engines' optimizer-step axis: S + 1
    assert _series(rec, "Actor Loss") == ([1, 2, 3], [0.25, -0.0625, 0.125], [3, 8, 10])
    assert _series(rec, "Critic Loss")[1] == [0.125, 0.5, 0.0625]
    assert _series(rec, "Average reward score") == ([1, 2, 3], [-0.5, 0.25, 1.5], [4, 9, 11])
    assert _series(rec, "EMA reward score")[1] == [-0.5, -0.425, -0.2325]
    assert _series(rec, "actor/lr") == ([2], [1e-06], [6])
    assert _series(rec, "critic/lr") == ([2], [5e-07], [7])
    assert _series(rec, "actor/skipped")[1] == [1.0] and _series(rec, "critic/skipped")[1] == [0.0]
    assert _series(rec, "loss scale") == ([1, 2], [32768.0, 16384.0], [2, 5])
    assert rec.metadata.framework == "deepspeed-chat"
    assert rec.metadata.extra == {"actor_learning_rate": "9.65e-6", "enable_ema": "True",
                                  "ppo_epochs": "1"}
    assert {t: infer_role(t) for t in rec.tags if "/" in t} == {
        "actor/lr": "lr", "actor/skipped": "skipped", "critic/lr": "lr",
        "critic/skipped": "skipped"}


# --------------------------------------------------------------------------- paths agree


@pytest.mark.parametrize("name", MEGATRON_FIXTURES)
@pytest.mark.parametrize("chunk", [megatron_fast.CHUNK, 300])
def test_vectorised_path_equals_classifier(name, chunk, monkeypatch):
    monkeypatch.setattr(megatron_fast, "CHUNK", chunk)
    _assert_same_records(_read(name, fast=False), _read(name, fast=True))


def test_vectorised_path_takes_the_dominant_lines():
    raw = (DATA / "megatron_2026.log").read_bytes()
    results = list(megatron_fast.scan(raw, megatron.MARKERS, workers=1))
    taken = sorted(int(o) for r in results for h in r.hits for o in h.order)
    assert taken == [2, 3, 4, 16, 19, 20]  # every training line, none by the classifier
    rest = [line for r in results for line, _ in r.rest]
    assert 2 not in rest and 6 in rest  # a validation result goes to the classifier


def test_nan_spellings_and_odd_values_on_both_paths(tmp_path):
    def line(it, loss, gnorm):
        return (f" iteration {it:8d}/{100:8d} | consumed samples: {it * 8:12d} | lm loss: {loss} |"
                f" grad norm: {gnorm} | number of nan iterations: {0:3d} |")
    lines = [line(1, "2.5E+00", "1.0"), line(2, "-nan", "-inf"), line(3, "NaN", "+inf"),
             line(4, "Infinity", "nan"), line(5, "1_0", "4.194B"), line(6, "-1.5E+00", "  7 "),
             line(7, "3.0 4.0", "1.0")]
    path = tmp_path / "odd.log"
    path.write_text("\n".join(lines) + "\n")
    slow = megatron.read_file(path, "odd", fast=False)
    _assert_same_records(slow, megatron.read_file(path, "odd", fast=True))
    assert _same(_series(slow, "lm loss")[1], [2.5, NAN, NAN, math.inf, 10.0, -1.5])
    assert _same(_series(slow, "grad norm")[1], [1.0, -math.inf, math.inf, NAN, 4.194e9, 7.0])
    assert [(s.line, s.reason.split(":")[0]) for s in slow.skipped] == [
        (7, "unparseable text after 1 fields of a Megatron iteration line")]


def test_colons_inside_values_on_both_paths(tmp_path):
    """The fast path finds no colons: a `:` in a value, a key or the `N/ M` head must still
    send the line to the classifier, which reads (or counts) it as it always does."""
    def line(it, loss="2.5E+00", gnorm="1.0", head="", key="grad norm"):
        return (f" iteration {head or it:>8}/{100:8d} | consumed samples: {it * 8:12d} | "
                f"lm loss: {loss} | {key}: {gnorm} | number of nan iterations: {0:3d} |")
    lines = [line(1), line(2, loss="2:5"), line(3, gnorm="1:0"), line(4, head="4:0"),
             line(5, key="grad: norm"), line(6, gnorm="1.0 : 2"), line(7)]
    path = tmp_path / "colons.log"
    path.write_text("\n".join(lines) + "\n")
    slow = megatron.read_file(path, "c", fast=False)
    fast = megatron.read_file(path, "c", fast=True)
    _assert_same_records(slow, fast)
    results = list(megatron_fast.scan(path.read_bytes(), megatron.MARKERS, workers=1))
    assert sorted(int(o) for r in results for h in r.hits for o in h.order) == [1, 7]
    assert _series(slow, "lm loss")[0] == [1, 3, 5, 6, 7]
    assert [s.line for s in slow.skipped] == [2, 3, 4, 5, 6]


def _block_log(path, first="", odd_at=(), no_loss=False, nan_lines=False, lines=3000):
    """A log of one dominant shape, validation every 500 iterations."""
    out = [first] if first else []
    for it in range(1, lines + 1):
        nan = nan_lines and it % 7 == 0  # Megatron drops a NaN loss from the line
        loss = "" if no_loss or nan else f"lm loss: {2 + 1 / it:.6E} | "
        count = "" if no_loss else f" number of nan iterations: {int(nan):3d} |"
        line = (f" [2026-01-02 03:04:{it % 60:02d}.{it:06d}] iteration {it:8d}/ {lines} | "
                f"consumed samples: {it * 64:12d} | learning rate: {1e-4 * it:.6E} | {loss}"
                f"grad norm: {1 / it:.3f} |{count}")
        out.append(line.replace(" |", " \x1b[0m|", 1) if it in odd_at else line)
        if it % 500 == 0:
            out.append(f" validation loss at iteration {it} on validation set | lm loss value: "
                       f"{2.1:.6E} | lm loss PPL: {math.exp(2.1):.6E} | ")
    path.write_text("\n".join(out) + "\n")
    return path


@pytest.mark.parametrize("case", ["block", "tag_before", "classifier_too", "nan_lines",
                                  "no_loss"])
def test_block_columns_equal_classifier(case, tmp_path, monkeypatch):
    """The first template's points are written in place (Block) and handed out without a
    copy when its tags come first, have no other points and the rest fits after them;
    otherwise assembled as usual. Either way the records equal the classifier's."""
    monkeypatch.setattr(megatron_fast, "CHUNK", 1 << 14)  # ~30 chunks, on two threads
    kw = {"tag_before": {"first": " validation loss at iteration 0 on validation set | "
                                  "lm loss value: 9.0E+00 | "},
          "classifier_too": {"odd_at": (5, 1234)}, "nan_lines": {"nan_lines": True},
          "no_loss": {"no_loss": True}}.get(case, {})
    path = _block_log(tmp_path / "b.log", **kw)
    slow = megatron.read_file(path, "b", fast=False)
    fast = megatron.read_file(path, "b", fast=True)
    _assert_same_records(slow, fast)
    assert bool(np.all(np.diff(fast.tag_code) >= 0))  # tag by tag, as the Frame keeps them
    handed_out = fast.step.base is not None  # views of the Block's arrays: no copy
    assert handed_out == (case == "block")
    steps, values, orders = _series(fast, "lm loss")
    assert steps == list(range(1, 3001))
    assert int(np.isnan(values).sum()) == {"nan_lines": 3000 // 7, "no_loss": 3000}.get(case, 0)
    if case == "classifier_too":  # ANSI lines go to the classifier, points in line order
        assert orders[3:6] == [4, 5, 6]


@pytest.mark.parametrize("seed", [None, 0, 1, 2])
def test_vectorised_path_equals_classifier_on_mutated_lines(seed, tmp_path, monkeypatch):
    """One byte of every third line replaced (its length kept, so that it stays in the block
    of lines checked at once; three lengths, from grad norms of 1, 2 and 3 digits before the
    point, one checked as a block, two pipe by pipe): whatever each line then means, both
    paths agree. (seed None: no line damaged, so that every point comes from the vectorised
    path, the two ways' lines merged in line order.)"""
    monkeypatch.setattr(megatron_fast, "CHUNK", 1 << 17)  # ~500 lines a chunk
    rng = np.random.default_rng(seed)
    alphabet = np.frombuffer(b" |:/.-+eE0123456789aIN\x1b\r", np.uint8)
    out = []
    for it in range(1, 4001):
        line = (f" [2026-01-02 03:{it // 60 % 60:02d}:{it % 60:02d}.{it:06d}] iteration "
                f"{it:8d}/ 4000 | consumed samples: {it * 64:12d} | learning rate: "
                f"{1e-4 * it:.6E} | lm loss: {2 + 1 / it:.6E} | grad norm: "
                f"{(1, 12, 123, 1)[it % 4] + 1 / it:.3f} | "
                f"number of nan iterations: {0:3d} |").encode()
        if it % 3 == 0 and seed is not None:
            b = bytearray(line)
            b[int(rng.integers(0, len(b)))] = int(rng.choice(alphabet))
            line = bytes(b)
        out.append(line)
    path = tmp_path / "m.log"
    path.write_bytes(b"\n".join(out) + b"\n")
    slow = megatron.read_file(path, "m", fast=False)
    fast = megatron.read_file(path, "m", fast=True)
    _assert_same_records(slow, fast)
    if seed is None:
        assert _series(fast, "lm loss")[0] == list(range(1, 4001))
    else:
        assert 3000 < len(_series(fast, "lm loss")[0]) < 4000  # most lines read, some refused


def test_vectorised_integers_match_the_classifier_regex():
    """SWAR integer reading against `\\s*(\\d+)` on random right-aligned spans."""
    import re

    import pyarrow as pa
    import pyarrow.compute as pc

    rng = np.random.default_rng(7)
    alphabet = np.frombuffer(b"   0123456789a-/.", np.uint8)
    cells, spans, pos = [], [], 16
    for i in range(3000):
        n = int(rng.integers(1, 18))
        if i % 2:  # mostly well-formed: spaces then digits
            k = int(rng.integers(1, n + 1))
            cell = b" " * (n - k) + bytes(rng.integers(48, 58, k).astype(np.uint8))
        else:
            cell = bytes(rng.choice(alphabet, n))
        cells.append(cell)
        spans.append((pos, pos + n))
        pos += n + 1
    raw = b"x" * 16 + b"|".join(cells) + b"|" + b"x" * 16
    arr = np.frombuffer(raw, np.uint8)
    chunk = megatron_fast._Chunk(raw, arr, 0, len(raw), True, pa, pc, megatron.MARKERS)
    chunk.run([])
    lines = megatron_lines.Lines(chunk, megatron_lines.template(
        b" iteration 1/ 2 | a: 1 |"))
    s, e = (np.asarray(x, np.int32) for x in zip(*spans))
    value, ok = lines._ints(s, e)
    for cell, v, good in zip(cells, value.tolist(), ok.tolist()):
        m = re.fullmatch(rb" *(\d+)", cell)
        assert good == bool(m and len(cell) <= 16), cell
        if good:
            assert v == int(m.group(1)), cell


def test_big_log_takes_the_vectorised_path_and_matches(tmp_path, monkeypatch):
    """Over 1 MiB: `read` goes vectorised (and on threads: several chunks)."""
    monkeypatch.setattr(megatron_fast, "CHUNK", 1 << 16)
    lines = []
    for it in range(1, 6001):
        loss = "NAN" if it == 4321 else f"{2 + 1 / it:.6E}"
        lines.append(f" [2026-01-02 03:04:{it % 60:02d}.{it:06d}] iteration {it:8d}/ 6000 | "
                     f"consumed samples: {it * 64:12d} | learning rate: {1e-4 * it:.6E} | "
                     f"lm loss: {loss} | loss scale: 1.0 | grad norm: {1 / it:.3f} | "
                     f"number of skipped iterations: {0:3d} | number of nan iterations: "
                     f"{int(it == 4321):3d} |")
        if it % 1000 == 0:
            lines.append(f" validation loss at iteration {it} on validation set | lm loss value: "
                         f"{2.1:.6E} | lm loss PPL: {math.exp(2.1):.6E} | ")
    path = tmp_path / "big.log"
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size > 1 << 20
    fast = megatron.read(path, "big")[0]
    _assert_same_records(megatron.read_file(path, "big", fast=False), fast)
    results = list(megatron_fast.scan(path.read_bytes(), megatron.MARKERS, workers=2))
    assert len(results) > 10  # several chunks, each one's first and last lines included
    assert sum(len(h.order) for r in results for h in r.hits) == 6000
    assert [n for r in results for n, _ in r.rest] == [1001 * i for i in range(1, 7)]
    steps, values, _ = _series(fast, "lm loss")
    assert steps == list(range(1, 6001)) and np.isnan(values[4320])
    assert _series(fast, "lm loss validation")[0] == [1000, 2000, 3000, 4000, 5000, 6000]


# --------------------------------------------------------------------------- odds and ends


def test_sniff():
    for name in MEGATRON_FIXTURES:
        assert sniff(DATA / name).name == "megatron", name
    assert sniff(DATA / "deepspeed_engine.log").name == "deepspeed"
    assert sniff(DATA / "deepspeed_chat.log").name == "deepspeed"
    assert megatron.sniff("x.log", b"hello\niteration 5 of 10\n") == 0.0
    assert deepspeed.sniff("x.log", b"hello\n") == 0.0


def test_empty_and_noise_only_files(tmp_path):
    (tmp_path / "empty.log").write_bytes(b"")
    assert len(megatron.read_file(tmp_path / "empty.log", "e", fast=True)) == 0
    noise = tmp_path / "noise.log"
    noise.write_text("time (ms) | forward-compute: 1.0 | backward-compute: 2.0\n")
    with pytest.raises(NoSeriesError):
        read_records(noise, format="megatron")


# --------------------------------------------------------------------------- corpus


def test_corpus_megatron_ds_perf_run(corpus):
    path = corpus / "megatron-ds-perf-divergence" / "meg_ds_3d_gpt2_perf_n16-ds-off.out"
    frame = losslens.read(path)
    info = frame.runs[0]
    assert info.format == "megatron"
    assert [(s.tag, s.role, s.points) for s in info.series] == [
        ("consumed samples", "other", 62), ("elapsed time per iteration (ms)", "other", 62),
        ("learning rate", "lr", 62), ("global batch size", "other", 62),
        ("lm loss", "train_loss", 62), ("loss scale", "loss_scale", 62),
        ("grad norm", "grad_norm", 62), ("number of skipped iterations", "skipped", 62),
        ("number of nan iterations", "skipped", 62)]
    assert [(s.first_step, s.last_step) for s in info.segments] == [(1, 62)]
    assert info.skipped_count == 0  # the spliced "[Rank N] ... memory" lines are not metrics
    loss = frame.series(info.run, "lm loss")
    assert loss.value[:3].tolist() == [12.44238, 12.44502, 44.24266]
    assert loss.value[-1] == 20.43871
    meta = info.metadata
    assert (meta.hidden_size, meta.num_layers, meta.num_heads, meta.seq_length) == \
        (8192, 64, 32, 1024)
    assert (meta.init_method_std, meta.adam_eps, meta.adam_beta1, meta.adam_beta2,
            meta.precision) == (0.02, 1e-08, 0.9, 0.999, "fp16")
    assert (meta.global_batch_size, meta.micro_batch_size, meta.train_iters, meta.save_interval,
            meta.log_interval, meta.warmup_steps, meta.lr, meta.min_lr, meta.lr_schedule) == \
        (1024, 4, 1000, 500, 1, 8, 0.00015, 1e-05, "cosine")
    assert meta.extra["loss_scale"] == "12.0" and "checkpoints" not in meta.extra
    _assert_same_records(megatron.read_file(path, "p", fast=False),
                         megatron.read_file(path, "p", fast=True))


def test_corpus_bigscience_chronicles_markdown(corpus):
    path = corpus / "bigscience-tr8-104B-chronicles" / "chronicles.md"
    assert sniff(path).name == "megatron"
    frame = losslens.read(path)
    info = frame.runs[0]
    assert [(s.tag, s.role, s.raw_points, s.nonfinite) for s in info.series] == [
        ("consumed samples", "other", 19, 0), ("elapsed time per iteration (ms)", "other", 19, 0),
        ("learning rate", "lr", 19, 0), ("global batch size", "other", 19, 0),
        ("lm loss", "train_loss", 19, 1), ("loss scale", "loss_scale", 19, 0),
        ("grad norm", "grad_norm", 19, 0), ("num zeros", "other", 19, 0),
        ("number of skipped iterations", "skipped", 19, 0),
        ("number of nan iterations", "skipped", 19, 0),
        ("lm loss validation", "val_loss", 1, 0), ("lm loss validation ppl", "other", 1, 0)]
    # excerpts pasted out of order: the step counter jumps back twice
    assert [(s.first_step, s.last_step, s.reason) for s in info.segments] == [
        (7000, 7220, "start"), (6900, 11448, "step_back"), (8738, 9027, "step_back")]
    raw = frame.series(info.run, "lm loss", raw=True)
    assert raw.step.tolist() == [7000, 7010, 7220, 6900, 6910, 6920, 6930, 6940, 11446, 11447,
                                 11448, 8738, 8739, 8740, 8741, 8742, 8743, 9026, 9027]
    assert np.isnan(raw.value[-1])  # iteration 9027 dropped `lm loss`: NaN interval
    assert frame.series(info.run, "lm loss validation").value.tolist() == [7.1742]
    assert info.skipped_count == 0 and info.metadata.train_iters == 159576


def test_corpus_deepspeed_chat_rlhf(corpus):
    path = (corpus / "deepspeed-chat-rlhf-step3"
            / "actor_opt-1.3b_critic_opt-350m_globalBatchSize64.log")
    assert sniff(path).name == "deepspeed"
    frame = losslens.read(path)
    info = frame.runs[0]
    assert [(s.tag, s.role, s.points, s.first_step, s.last_step) for s in info.series] == [
        ("loss scale", "loss_scale", 11, 1, 213), ("overflow", "skipped", 11, 1, 213),
        ("act_loss", "train_loss", 477, 1, 477), ("cri_loss", "train_loss", 477, 1, 477),
        ("unsuper_loss", "train_loss", 477, 1, 477),
        ("average reward score", "other", 477, 1, 477),
        ("actor/lr", "lr", 47, 10, 470), ("actor/skipped", "skipped", 47, 10, 470),
        ("critic/lr", "lr", 47, 10, 470), ("critic/skipped", "skipped", 47, 10, 470)]
    assert len(info.segments) == 1 and info.skipped_count == 0
    act = frame.series(info.run, "act_loss")
    assert act.value[:2].tolist() == [0.2099609375, 0.296630859375] and act.value.min() < 0
    reward = frame.series(info.run, "average reward score")
    assert reward.value[0] == -0.67919921875 and reward.value[-1] > 3
    scale = frame.series(info.run, "loss scale")
    assert scale.step.tolist() == [1, 2, 3, 6, 11, 22, 58, 92, 97, 212, 213]
    assert scale.value.tolist()[:5] == [65536.0, 32768.0, 16384.0, 8192.0, 4096.0]
    assert frame.series(info.run, "overflow").value.tolist()[:3] == [2.0, 2.0, 2.0]
    # the engines' lr at step N and the PPO line of the same iteration line up (warm-up ramp)
    assert frame.series(info.run, "actor/lr").value[0] == 5.79e-07
    assert frame.series(info.run, "critic/skipped").value[0] == 3.0
    assert info.metadata.extra["actor_learning_rate"] == "9.65e-6"


# --------------------------------------------------------------------------- fuzz regressions

_BIG = "9" * 25  # past int64
_LINE = " iteration {it}/ {total} | consumed samples: {cs} | lm loss: 2.5 |"


def _both(path: Path):
    """Both paths of the Megatron reader on `path`, checked equal; the classifier's records."""
    slow = megatron.read_file(path, "r", fast=False)
    _assert_same_records(slow, megatron.read_file(path, "r", fast=True))
    return slow


def test_iteration_and_counters_past_int64_are_skipped_lines(tmp_path):
    path = tmp_path / "big.log"
    path.write_text("\n".join([
        _LINE.format(it=1, total=10, cs=8),
        _LINE.format(it=_BIG, total=10, cs=16),  # iteration past int64: skipped
        _LINE.format(it=3, total=_BIG, cs=24),  # train_iters past int64: skipped
        _LINE.format(it=4, total=10, cs=_BIG),  # a value: kept as the float it is
        f" validation loss at iteration {_BIG} | lm loss value: 2.0 | lm loss PPL: 7.3 |",
        "", ""]))
    rec = _both(path)
    assert _series(rec, "lm loss") == ([1, 4], [2.5, 2.5], [1, 4])
    assert _series(rec, "consumed samples")[1] == [8.0, float(_BIG)]
    assert [s.line for s in rec.skipped] == [2, 3, 5] and rec.skipped_count == 3
    assert "past int64" in rec.skipped[0].reason
    assert "lm loss validation" not in rec.tags


def test_nan_and_infinite_arguments_are_not_metadata(tmp_path):
    path = tmp_path / "args.log"
    path.write_text("\n".join([
        "------------------------ arguments ------------------------",
        "  lr_warmup_fraction .............................. nan",
        "  lr_decay_iters .................................. 1000",
        "  lr_warmup_iters ................................. 7",
        "  hidden_size ..................................... inf",
        f"  num_layers ...................................... {_BIG}",
        "  train_iters ..................................... 1e400",
        "-------------------- end of arguments ---------------------",
        _LINE.format(it=1, total=10, cs=8), ""]))
    meta = _both(path).metadata
    # a NaN fraction says nothing: the iteration count given next to it is used
    assert (meta.warmup_steps, meta.hidden_size, meta.num_layers, meta.train_iters) == \
        (7, None, None, 10)


def test_deepspeed_overflow_lines_without_any_step_line(tmp_path):
    path = tmp_path / "overflow.log"
    msg = ("[2025-02-21 10:00:0{i},000] [INFO] [loss_scaler.py:183:update_scale] [deepspeed] "
           "OVERFLOW! Rank 0 Skipping step. Attempted loss scale: {a}, reducing to {b}")
    path.write_text("\n".join([msg.format(i=1, a=65536, b=32768),
                               msg.format(i=2, a=32768, b=16384), ""]))
    rec = deepspeed.read(path, "o")[0]
    assert _series(rec, "loss scale") == ([1], [16384.0], [2])
    assert _series(rec, "overflow") == ([1], [2.0], [2])
    # in a Megatron log, before any iteration line: the same first step
    mpath = tmp_path / "m.log"
    mpath.write_text(path.read_text() + _LINE.format(it=5, total=10, cs=8) + "\n")
    rec = _both(mpath)
    assert _series(rec, "deepspeed/overflow") == ([1], [2.0], [2])


def test_deepspeed_steps_past_int64_are_skipped_lines(tmp_path):
    path = tmp_path / "ds.log"
    path.write_text("\n".join([
        "[Rank 0] step=1, skipped=0, lr=[0.1], mom=[(0.9, 0.95)]",
        f"[Rank 0] step={_BIG}, skipped=0, lr=[0.1], mom=[(0.9, 0.95)]",
        f"[Rank 0] step=2, skipped={'9' * 400}, lr=[0.1], mom=[(0.9, 0.95)]",
        f"steps: {_BIG} loss: 2.5 iter time (s): 1.0 samples/sec: 5.0",
        f"epoch: 0|step: {_BIG}|ppo_ep: 1|act_loss: 0.5|cri_loss: 0.1|unsuper_loss: 0.0",
        f"epoch: 0|step: {2 ** 63 - 2}|ppo_ep: 1|act_loss: 0.5|cri_loss: 0.1|unsuper_loss: 0.0",
        "epoch: 0|step: 3|ppo_ep: 1|act_loss: 0.25|cri_loss: 0.1|unsuper_loss: 0.0",
        "OVERFLOW! Rank 0 Skipping step. Attempted loss scale: 4, reducing to 2", ""]))
    rec = deepspeed.read(path, "d")[0]
    assert rec.tags == ("lr", "skipped", "act_loss", "cri_loss", "unsuper_loss", "loss scale",
                        "overflow")
    assert _series(rec, "lr")[0] == [1, 2]
    assert _series(rec, "skipped")[1] == [0.0, math.inf]
    assert _series(rec, "act_loss") == ([4], [0.25], [7])
    assert _series(rec, "overflow") == ([5], [1.0], [8])
    assert [s.line for s in rec.skipped] == [2, 4, 5, 6]


def test_training_lines_inside_an_unterminated_argument_dump(tmp_path):
    """An argument dump whose end line was lost (or moved): the training lines after it are
    read on both paths (the classifier used to take them as argument lines, silently)."""
    path = tmp_path / "noend.log"
    path.write_text("\n".join([
        "------------------------ arguments ------------------------",
        "  hidden_size ..................................... 1024",
        _LINE.format(it=1, total=10, cs=8),
        "  num_layers ...................................... 24",
        _LINE.format(it=2, total=10, cs=16), ""]))
    rec = _both(path)
    assert _series(rec, "lm loss") == ([1, 2], [2.5, 2.5], [3, 5])
    assert (rec.metadata.hidden_size, rec.metadata.num_layers) == (1024, 24)


def test_a_damaged_key_byte_is_its_own_tag_on_both_paths(tmp_path, monkeypatch):
    """A flipped byte inside a key of the template's length (`elapsed tim*`): the fast path
    compares every key byte, so the value is not filed under the template's key."""
    monkeypatch.setattr(megatron_fast, "CHUNK", 300)
    good = " iteration {it}/ 10 | elapsed time (ms): 1.5 | lm loss: 2.5 |"
    path = tmp_path / "key.log"
    path.write_text("\n".join([good.format(it=1), good.format(it=2).replace("time", "tim*"),
                               good.format(it=3), ""]))
    rec = _both(path)
    assert rec.tags == ("elapsed time (ms)", "lm loss", "elapsed tim* (ms)")
    assert _series(rec, "elapsed time (ms)")[0] == [1, 3]
    assert _series(rec, "elapsed tim* (ms)") == ([2], [1.5], [2])


@pytest.mark.parametrize("chunk", [4096, 1 << 14])
def test_corpus_megatron_logs_read_alike_in_small_chunks(corpus, chunk, monkeypatch):
    """Real logs cut into many chunks (each its own templates, Block writes, line numbers)."""
    monkeypatch.setattr(megatron_fast, "CHUNK", chunk)
    for path in (corpus / "megatron-ds-perf-divergence" / "meg_ds_3d_gpt2_perf_n16-ds-off.out",
                 corpus / "bigscience-tr8-104B-chronicles" / "chronicles.md"):
        _assert_same_records(megatron.read_file(path, "p", fast=False),
                             megatron.read_file(path, "p", fast=True))


@pytest.mark.parametrize("fast", [False, True])
def test_skipped_iterations_without_a_loss_are_not_nan(fast, tmp_path):
    # fp16 loss-scale search: every iteration of the interval skipped, 0 NaN, no loss printed;
    # and a log whose loss key is spelled `lm-loss` (BigScience): neither is a NaN `lm loss`
    lines = [f" iteration {it:8d}/    1000 | consumed samples: {it * 4:8d} | "
             f"loss scale: {2.0 ** (24 - it):.1f} | number of skipped iterations:  10 | "
             "number of nan iterations:   0 |" for it in (10, 20)]
    lines += [f" iteration {it:8d}/    1000 | consumed samples: {it * 4:8d} | lm loss: "
              f"{12.5 - it / 100:.6E} | loss scale: 16384.0 | number of skipped iterations:   0 | "
              "number of nan iterations:   0 |" for it in range(30, 100, 10)]
    path = tmp_path / "fp16.log"
    path.write_text("\n".join(lines) + "\n")
    steps, values, _ = _series(megatron.read_file(path, "r", fast=fast), "lm loss")
    assert steps == list(range(30, 100, 10)) and not np.isnan(values).any()
    hyphen = tmp_path / "hyphen.log"
    hyphen.write_text("".join(
        f" iteration {it:8d}/    1000 | lm-loss: {12.4:.6E} | grad norm: 0.000 |\n"
        for it in range(1, 6)))
    records = megatron.read_file(hyphen, "r", fast=fast)
    assert "lm loss" not in set(records.tags)

"""Levanter: records written as levanter/tracker/json_logger.py writes them (json.dumps of
{"tracker", "event", "step", "metrics"} through logging with init_logging's format), and
tqdm_loggable's `Progress on:%s %s/%s rate:%s remaining:%s elapsed:%s postfix:%s` line."""
from __future__ import annotations

import json
import math

import pytest

import losslens
from losslens.frame import build
from losslens.readers import read_records, sniff


def prefix(name: str = "levanter.json_logger", file: str = "json_logger.py:79",
           stamp: str = "2025-06-01T10:00:00") -> str:
    # init_logging: "%(asctime)s - {process_index} - %(name)s - %(filename)s:%(lineno)d -
    # %(levelname)s :: %(message)s", datefmt "%Y-%m-%dT%H:%M:%S"
    return f"{stamp} - 0 - {name} - {file} - INFO :: "


def record(event: str, **fields) -> str:
    return prefix() + json.dumps({"tracker": "json_logger", "event": event, **fields})


def _loss(s: int) -> float:
    return 2 + math.exp(-s / 300)


def levanter_log(n: int = 20) -> str:
    lines = [prefix("levanter.trainer", "trainer.py:200") + "Setting run id to abc",
             record("hparams", hparams={
                 "trainer": {"num_train_steps": n, "train_batch_size": 256,
                             "mp": "p=f32,c=bfloat16", "steps_per_eval": 10},
                 "optimizer": {"learning_rate": 3e-4, "weight_decay": 0.1, "beta1": 0.9,
                               "beta2": 0.95, "epsilon": 1e-8, "max_grad_norm": 1.0,
                               "lr_schedule": "cosine"},
                 "model": {"hidden_dim": 768, "num_layers": 12, "num_heads": 12,
                           "seq_len": 1024}})]
    for s in range(n):
        lines.append(record("log", step=s, metrics={
            "train/loss": _loss(s), "global_step": s, "run_progress": s / n}))
        lines.append(record("log", step=s, metrics={
            "optim": {"learning_rate": 3e-4, "entropy": {
                "min": 0, "max": 1, "num": 2, "sum": 1, "sum_squares": 1,
                "bucket_limits": [0, 1], "bucket_counts": [1, 1]}},
            "throughput/mfu": 41.5, "throughput/device_kind": "TPU v4"}))
        lines.append(record("log", step=None, metrics={"data/docs": 5}))
        if s % 10 == 9:
            lines.append(prefix("levanter.eval", "eval.py:242") + f"eval loss: {_loss(s):.3f}")
            lines.append(record("log", step=s, metrics={"eval/loss": _loss(s) + 0.1,
                                                        "eval/paloma/c4_en/loss": 3.0}))
            lines.append(prefix("levanter.checkpoint", "checkpoint.py:384")
                         + f"Saved checkpoint to gs://b/ckpts/run/step-{s} for step {s}")
    lines.append(record("summary", metrics={"throughput/device_kind": "TPU v4"}))
    lines.append(record("finish", summary={"train/loss": 2.1}))
    return "\n".join(lines) + "\n"


def test_levanter_json_logger_records(tmp_path):
    path = tmp_path / "abc.log"
    text = levanter_log()
    text += prefix() + '{"tracker": "json_logger", "event": "log", "step": 20, "metr\n'
    text += record("log", step="x", metrics={"train/loss": 1.0}) + "\n"
    text += record("log", step=21, metrics={"train/loss": float("nan")}) + "\n"
    text += record("log", step=22, metrics={"train/loss": 1.5})[:-8]  # cut mid-line
    path.write_text(text)
    assert sniff(path).name == "levanter"
    (rec,) = read_records(path)

    def series(tag):
        sel = rec.tag_code == rec.tags.index(tag)
        return rec.step[sel].tolist(), rec.value[sel].tolist()

    steps, loss = series("train/loss")
    assert steps == list(range(20)) + [21] and loss[0] == _loss(0) and math.isnan(loss[-1])
    assert series("eval/loss") == ([9, 19], [_loss(9) + 0.1, _loss(19) + 0.1])
    assert series("eval/paloma/c4_en/loss") == ([9, 19], [3.0, 3.0])
    assert series("optim/learning_rate")[0] == list(range(20))
    assert sorted(rec.tags) == ["eval/loss", "eval/paloma/c4_en/loss", "optim/learning_rate",
                                "run_progress", "throughput/mfu", "train/loss"]
    assert [(s.line, s.reason) for s in rec.skipped] == [
        (71, "damaged json_logger record"),
        (72, "json_logger record whose step is not an integer"),
        (74, "truncated last line")]
    assert rec.warnings == ("20 json_logger records have no step (Levanter logs some metrics "
                            "that way); they are not plotted",)
    assert rec.wall_time[0] == 1748772000.0
    meta = rec.metadata
    assert (meta.framework, meta.train_iters, meta.global_batch_size, meta.lr, meta.adam_beta2,
            meta.adam_eps, meta.clip_grad, meta.hidden_size, meta.num_layers, meta.seq_length,
            meta.precision, meta.lr_schedule) == (
        "levanter", 20, 256, 3e-4, 0.95, 1e-8, 1.0, 768, 12, 1024, "bf16", "cosine")
    assert meta.extra["trainer/mp"] == "p=f32,c=bfloat16" and len(meta.extra) == 15
    assert meta.checkpoints == (9, 19) and meta.checkpoint_dir == "gs://b/ckpts/run"
    roles = losslens.read(path).runs[0].roles
    assert (roles["train/loss"], roles["eval/loss"], roles["eval/paloma/c4_en/loss"],
            roles["optim/learning_rate"], roles["throughput/mfu"]) == (
        "train_loss", "val_loss", "val_loss", "lr", "other")


def progress(n: int, total: int, postfix: str) -> str:
    return (prefix("tqdm_loggable.tqdm_logging", "tqdm_logging.py:145")
            + f"Progress on:train {n}/{total} rate:1.2it/s remaining:2:17:30 elapsed:01:23 "
              f"postfix:{postfix}")


def test_levanter_progress_lines_without_tracker_records(tmp_path):
    lines = [prefix("levanter.trainer", "trainer.py:200") + "Setting run id to abc",
             progress(0, 1000, "-")]
    lines += [progress(s, 1000, f"loss={_loss(s):.3g}") for s in range(50, 1001, 50)]
    lines.append(progress(1000, 1000, "loss=oops"))
    lines.append(prefix("levanter.checkpoint", "checkpoint.py:288")
                 + "Saved checkpoint to ckpts/run/step-400 for step 400")
    lines.append(prefix("levanter.checkpoint", "checkpoint.py:263")
                 + "Removing checkpoint ckpts/run/step-400")
    path = tmp_path / "run.log"
    path.write_text("\n".join(lines) + "\n")
    assert sniff(path).name == "levanter"
    (rec,) = read_records(path)
    assert rec.tags == ("train/loss",)
    assert rec.step.tolist() == list(range(50, 1001, 50))
    assert rec.value[0] == float(f"{_loss(50):.3g}")
    assert [(s.line, s.reason) for s in rec.skipped] == [
        (23, "progress-bar postfix that is not `name=number`")]
    assert rec.metadata.checkpoints is None  # saved, then removed (a temporary one)
    assert losslens.read(path).runs[0].roles["train/loss"] == "train_loss"


def test_levanter_progress_written_by_tqdm_loggable(tmp_path):
    """The bar as Levanter's pbar_logger drives it, written by tqdm_loggable itself through
    Levanter's log format: counts print as `1.00it` ... `999it`, `1.00kit` ... `1.50kit`."""
    import datetime
    import logging

    tqdm_logging = pytest.importorskip("tqdm_loggable.tqdm_logging").tqdm_logging
    path = tmp_path / "run.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(
        "%(asctime)s - 0 - %(name)s - %(filename)s:%(lineno)d - %(levelname)s :: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S"))  # levanter.utils.logging.init_logging
    logger = logging.getLogger("tqdm_loggable.tqdm_logging")
    saved = (logger.level, logger.propagate, tqdm_logging.log_message_rate)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    tqdm_logging.set_log_rate(datetime.timedelta(0))  # Levanter: 60 s; here every update
    try:
        pbar = tqdm_logging(iterable=None, desc="train", total=1500)
        for step in range(1, 1501):  # levanter.callbacks._metrics.pbar_logger
            pbar.update(step - pbar.n)
            pbar.set_postfix(loss=3.0 - step / 1000)
        pbar.close()
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        tqdm_logging.set_log_rate(saved[2])
    text = path.read_text()
    assert "Progress on:train 19.0it/1.50kit " in text and " 1.23kit/1.50kit " in text
    assert sniff(path).name == "levanter"
    (rec,) = read_records(path)
    assert rec.tags == ("train/loss",) and rec.skipped_count == 0
    # below 1000 every count is exact; from 1000 on three significant digits: one point per
    # rounded count (the first line that shows it), the repeats left out
    assert rec.step.tolist() == list(range(1, 1000)) + list(range(1000, 1501, 10))
    assert rec.value[:3].tolist() == [3.0, 3.0, 3.0] and rec.value[-1] == 1.5
    # how many lines tqdm wrote from 1000 on depends on its timing (a redraw at close): the
    # counts come from the file itself, the wording is exact
    rounded = [ln.split("Progress on:train ")[1].split("/")[0] for ln in text.splitlines()
               if "kit/1.50kit" in ln.split("Progress on:train ")[-1].split(" ")[0]]
    repeats = sum(a == b for a, b in zip(rounded, rounded[1:]))
    assert len(rounded) >= 502 and repeats == len(rounded) - 51
    assert rec.warnings == (
        f"{len(rounded)} progress lines give the step with three significant digits (tqdm "
        "prints counts from 1000 on as `1.23kit`): their steps are rounded; "
        f"{repeats} repeated the rounded step of the line before and were left out",)


def test_levanter_progress_redraw_of_an_exact_count_is_one_point(tmp_path):
    """update() then set_postfix() can both print the same count: the second line (the new
    loss) is that step's point, and the repeated step is no restart."""
    lines = [progress(n, "70.0it", f"loss={loss}") for n, loss in [
        ("1.00it", 9.5), ("2.00it", 9.0), ("2.00it", 8.5), ("3.00it", 8.0), ("850it", 3.5),
        ("850it", 3.25)]]
    path = tmp_path / "run.log"
    path.write_text("\n".join(lines) + "\n")
    (rec,) = read_records(path)
    assert rec.step.tolist() == [1, 2, 3, 850]
    assert rec.value.tolist() == [9.5, 8.5, 8.0, 3.25]
    assert rec.warnings == ()
    (run,) = build([rec]).runs
    assert [s.reason for s in run.segments] == ["start"]


def test_levanter_progress_counts_as_tqdm_formats_them(tmp_path):
    """Before tqdm_loggable's own format was read, none of these lines was (`19.0it/70.0it`
    is what a real Levanter run prints); a plain `100/10000` still reads."""
    lines = [progress(n, t, f"loss={loss}") for n, t, loss in [
        ("1.00it", "70.0it", 9.5), ("19.0it", "70.0it", 7.25), ("850it", "10.0kit", 3.5),
        ("1.23kit", "10.0kit", 3.25), ("12.3kit", "1.00Mit", 3.0), ("123kit", "1.00Mit", 2.5),
        ("2000", "10000", 2.0)]]
    path = tmp_path / "run.log"
    path.write_text("\n".join(lines) + "\n")
    (rec,) = read_records(path)
    assert rec.step.tolist() == [1, 19, 850, 1230, 12300, 123000, 2000]
    assert rec.value.tolist() == [9.5, 7.25, 3.5, 3.25, 3.0, 2.5, 2.0]
    assert rec.warnings == (
        "3 progress lines give the step with three significant digits (tqdm prints counts "
        "from 1000 on as `1.23kit`): their steps are rounded",)


def test_tracker_records_win_over_progress_lines(tmp_path):
    path = tmp_path / "run.log"
    path.write_text(levanter_log(5) + progress(5, 5, "loss=2.5") + "\n")
    (rec,) = read_records(path)
    sel = rec.tag_code == rec.tags.index("train/loss")
    assert rec.step[sel].tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("fmt", ["levanter", "t5x"])
@pytest.mark.parametrize("content", [
    b"", b"\x00\xff\xfe garbage \x80\n\r\r\n", b"[1] collection=train =, ==, x=\n" * 3,
    b'{"tracker": "json_logger", "event": "log", "step": 1, "metrics": [1, 2]}\n'
    b'{"tracker": "json_logger", "event": "log", "step": 99999999999999999999999, '
    b'"metrics": {"a": 1}}\nProgress on:train 99999999999999999999999/1 rate:- remaining:? '
    b'elapsed:00:00 postfix:loss=1\n'])
def test_bad_input_never_escapes(tmp_path, fmt, content):
    from losslens.errors import LossLensError
    from losslens.readers import read_file

    path = tmp_path / "bad.log"
    path.write_bytes(content)
    try:
        recs = read_file(path, "bad", fmt)
    except LossLensError:
        return
    assert all(len(r) == 0 for r in recs)


def test_levanter_metric_names_get_their_roles():
    """Names from Levanter's source: train loop, eval, optimizer hyper-parameters, the
    skip-step guard (optim/skipstep.py) and the watch callback (analysis/tree_stats.py)."""
    from losslens.roles import infer_role

    expected = {
        "train/loss": "train_loss", "eval/loss": "val_loss", "eval/paloma/c4_en/loss": "val_loss",
        "eval/macro_loss": "val_loss", "optim/learning_rate": "lr", "grad/norm/total": "grad_norm",
        "params/norm/total": "other", "optim/skipped_step": "skipped",
        "optim/skip_step/loss": "other", "optim/skip_step/loss_std": "other",
        "optim/skip_step/loss_threshold": "other", "optim/skip_step/grad_norm": "other",
        "optim/skip_step/grad_norm_threshold": "other", "train/load_balancing_loss": "other",
        "train/router_z_loss": "other", "throughput/mfu": "other", "eval/bpb": "other",
    }
    assert {t: infer_role(t) for t in expected} == expected


def test_levanter_plain_tqdm_bar_as_its_pbar_logger_drew_it(tmp_path):
    """Levanter before tqdm_loggable (and any run on a terminal): `pbar_logger` is plain tqdm,
    `tqdm(desc="train", total=N)`, and each step `pbar.update(step - pbar.n)` then
    `pbar.set_postfix(loss=...)`: the count is drawn with the previous loss, then redrawn
    with its own. Log lines land right after a bar (no newline before them)."""
    from tqdm import tqdm

    path = tmp_path / "levanter.log"
    losses = {}
    with open(path, "w") as fh:
        fh.write("2024-05-15T20:00:00 - 0 - levanter.trainer - trainer.py:301 - INFO :: "
                 "Starting training\n")
        pbar = tqdm(desc="train", total=1000, file=fh, mininterval=0)
        for step in range(1, 51):
            pbar.update(step - pbar.n)
            loss = 11.0 - step * 0.07
            pbar.set_postfix(loss=loss)
            losses[step] = float(tqdm.format_num(loss))
            if step % 20 == 0:
                fh.write(f"2024-05-15T20:0{step // 20}:00 - 0 - levanter.eval - eval.py:120 - "
                         f"INFO :: eval loss: {loss:.3f}\n")
        pbar.close()
    text = path.read_bytes().decode()
    assert "\r" in text and "| 2/1000 [" in text
    assert sniff(path).name == "levanter"
    (rec,) = read_records(path)
    assert rec.tags == ("train/loss",) and rec.skipped_count == 0
    assert rec.step.tolist() == list(range(1, 51))
    assert rec.value.tolist() == [losses[s] for s in range(1, 51)]
    run = losslens.read(path).runs[0]
    assert run.roles["train/loss"] == "train_loss" and run.last_step == 50


def test_plain_tqdm_bars_alone_are_not_levanter(tmp_path):
    path = tmp_path / "bar.log"
    path.write_text("train:   0%|          | 2/100000 [00:46<644:59:38, 23.22s/it, loss=11.2]\n")
    fmt = sniff(path)
    assert fmt is None or fmt.name != "levanter"


def test_levanter_2024_save_lines_name_the_checkpoints(tmp_path):
    """Levanter before March 2024 (levanter/checkpoint.py then): `save_checkpoint` logs `Saving
    checkpoint to DIR for step N` and, once written, `Saved checkpoint for step N`; the
    Checkpointer adds `Saved checkpoint at step N to DIR. Save time is ...`; a temporary
    checkpoint is dropped with `Deleting checkpoint NAME from DIR`. A save that never finished
    (issue #486's stuck job) is no checkpoint."""
    from tqdm import tqdm

    def log(fh, where, msg):
        fh.write(f"2024-02-24T13:38:44 - 0 - levanter.checkpoint - {where} - INFO :: {msg}\n")

    path = tmp_path / "levanter.log"
    with open(path, "w") as fh:
        pbar = tqdm(desc="train", total=100, file=fh, mininterval=0)
        for step in range(1, 61):
            pbar.update(step - pbar.n)
            pbar.set_postfix(loss=5.0 - step * 0.05)
            if step % 10 == 0 and step <= 50:
                d = f"gs://b/run/step-{step}"
                log(fh, "checkpoint.py:176", f"Saving {'temporary ' if step % 20 else ''}"
                                             f"checkpoint at step {step}.")
                log(fh, "checkpoint.py:250", f"Saving checkpoint to {d} for step {step}")
                if step == 50:
                    continue  # stuck: never saved
                log(fh, "checkpoint.py:259", f"Saved checkpoint for step {step}")
                log(fh, "checkpoint.py:228", f"Saved checkpoint at step {step} to {d}. "
                                             "Save time is 3.2")
                if step % 20 == 0:
                    log(fh, "checkpoint.py:212",
                        f"Deleting checkpoint step-{step - 10} from gs://b/run")
        pbar.close()
    (rec,) = read_records(path)
    assert rec.format == "levanter" and rec.step.tolist() == list(range(1, 61))
    assert rec.metadata.checkpoints == (20, 40)

"""Readers for OLMo / OLMo-core, fairseq / metaseq, Lightning metrics.csv, generic CSV and JSONL.

Fixtures are composed from the format strings in the frameworks' source: text logs in
tests/data/misc/, tables written into tmp_path (CRLF and odd bytes stay exact that way).
"""
from __future__ import annotations

import calendar
import json
import math
from pathlib import Path

import numpy as np
import pytest

from losslens import frame
from losslens.errors import LossLensError
from losslens.readers import fairseq, jsonl, olmo, read_records, sniff, table
from losslens.roles import infer_role

NAN = float("nan")


def _utc(stamp: str) -> float:
    import time

    return float(calendar.timegm(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")))


def _frame(path: Path):
    return frame.build(read_records(path))


def _raw(fr, tag: str, run: str | None = None) -> tuple[list[int], list[float]]:
    s = fr.series(run or fr.runs[0].run, tag, raw=True)
    return s.step.tolist(), s.value.tolist()


def _same(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(
        (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, rel=1e-12) for x, y in zip(a, b))


def _line_of(path: Path, text: str) -> int:
    return path.read_text().split("\n").index(text) + 1


# ----------------------------------------------------------------------------- OLMo v1

@pytest.fixture
def misc(data_dir: Path) -> Path:
    return data_dir / "misc"


def test_olmo_v1_blocks(misc: Path) -> None:
    path = misc / "olmo_v1.log"
    assert sniff(path).name == "olmo"
    fr = _frame(path)
    info = fr.runs[0]
    assert info.format == "olmo"
    assert read_records(path)[0].tags == (
        "System/Peak GPU Memory (MB)", "train/CrossEntropyLoss", "train/Perplexity",
        "throughput/total_tokens", "throughput/device/tokens_per_second",
        "throughput/device/batches_per_second", "optim/total_grad_norm",
        "eval/c4_en-validation/CrossEntropyLoss", "eval/c4_en-validation/Perplexity")
    assert len(info.series) == 9
    roles = info.roles
    assert roles["train/CrossEntropyLoss"] == "train_loss"
    assert roles["optim/total_grad_norm"] == "grad_norm"
    assert roles["eval/c4_en-validation/CrossEntropyLoss"] == "val_loss"
    assert roles["throughput/total_tokens"] == "other"

    steps, values = _raw(fr, "train/CrossEntropyLoss")
    assert steps == [1, 2, 3, 3]
    assert _same(values, [11.02, NAN, 2.457, 2.461])
    assert _raw(fr, "throughput/total_tokens") == ([1, 2, 3, 3],
                                                   [4194304.0, 8388608.0, 12582912.0, 12582912.0])
    assert _raw(fr, "optim/total_grad_norm") == ([1, 2, 3, 3], [6e-05, 12.35, 0.2345, 0.2401])
    assert _raw(fr, "System/Peak GPU Memory (MB)") == ([0, 1], [1234.0, 61234.0])
    assert _raw(fr, "eval/c4_en-validation/CrossEntropyLoss") == ([2], [3.456])
    assert _raw(fr, "train/Perplexity")[0] == [1, 2]  # "oops" at step 3 skipped
    # stitched: the resumed step 3 wins
    st = fr.series(info.run, "train/CrossEntropyLoss")
    assert st.step.tolist() == [1, 2, 3] and st.value[-1] == 2.461
    assert st.wall_time[0] == _utc("2024-02-01 12:31:00")

    assert [(s.reason, s.first_step, s.last_step) for s in info.segments] == [
        ("start", 0, 3), ("header", 3, 3)]
    assert info.skipped_count == 2
    assert [(s.line, s.reason) for s in info.skipped] == [
        (27, "train/Perplexity: not a number"), (37, "truncated last line")]


def test_olmo_v1_metadata_and_order(misc: Path) -> None:
    path = misc / "olmo_v1.log"
    rec = read_records(path)[0]
    meta = rec.metadata
    assert (meta.framework, meta.train_iters, meta.hidden_size, meta.num_layers, meta.num_heads,
            meta.seq_length) == ("olmo", 739328, 768, 12, 12, 2048)
    assert (meta.init_method_std, meta.lr, meta.weight_decay, meta.adam_eps) == (
        0.02, 0.0004, 0.1, 1e-05)
    assert (meta.adam_beta1, meta.adam_beta2, meta.precision, meta.clip_grad) == (
        0.9, 0.95, "bf16", 1.0)
    assert (meta.global_batch_size, meta.micro_batch_size, meta.save_interval,
            meta.warmup_steps, meta.log_interval) == (2048, 8, 1000, 2000, 1)
    assert meta.loss_units == "nats"
    code = rec.tags.index("train/CrossEntropyLoss")
    assert rec.order[rec.tag_code == code].tolist() == [
        _line_of(path, "    train/CrossEntropyLoss=11.02"), 15, 26, 33]
    assert rec.headers == (30,)


# ----------------------------------------------------------------------------- OLMo-core

def test_olmo_core_blocks_and_evals(misc: Path) -> None:
    path = misc / "olmo_core.log"
    assert sniff(path).name == "olmo-core"
    fr = _frame(path)
    info = fr.runs[0]
    assert info.format == "olmo-core"
    assert info.metadata.framework == "olmo-core" and info.metadata.train_iters == 10000
    assert sorted(s.tag for s in info.series) == sorted([
        "train/CE loss", "train/PPL", "train/Z loss", "optim/total grad norm",
        "optim/LR (group 0)", "optim/step skipped", "throughput/total tokens",
        "throughput/device/TPS", "throughput/device/MFU",
        "eval/lm/c4_en-validation/CE loss", "eval/lm/c4_en-validation/PPL",
        "eval/lm/dolma_books-validation/CE loss", "eval/lm/dolma_books-validation/PPL"])
    assert len(fr) == 25  # bare progress markers carry no points
    assert _raw(fr, "train/CE loss") == ([1, 1000, 2000], [10.98, 2.457, 2.301])
    assert _raw(fr, "optim/LR (group 0)") == ([1, 1000, 2000], [6e-05, 0.0003, 0.0002])
    assert _raw(fr, "throughput/total tokens") == ([1, 1000, 2000], [4194304.0, 4.194e9, 8.389e9])
    assert _raw(fr, "throughput/device/TPS") == ([1, 1000], [12345.0, 12345.0])
    assert _raw(fr, "optim/total grad norm") == ([1, 1000, 2000], [3.456, math.inf, 0.2345])
    # evals run in step 1000's post_step, between the step-999 marker and the step-1000 block
    assert _raw(fr, "eval/lm/c4_en-validation/CE loss") == ([1000], [2.512])
    assert _raw(fr, "eval/lm/dolma_books-validation/CE loss") == ([1000], [2.801])
    roles = info.roles
    assert roles["train/CE loss"] == "train_loss"
    assert roles["eval/lm/c4_en-validation/CE loss"] == "val_loss"
    assert roles["eval/lm/dolma_books-validation/CE loss"] == "val_loss"
    assert roles["optim/total grad norm"] == "grad_norm"
    assert roles["optim/LR (group 0)"] == "lr"
    assert roles["optim/step skipped"] == "skipped"
    assert [s.reason for s in info.segments] == ["start"]
    assert info.skipped_count == 0


def test_olmo_core_rich_tty(misc: Path) -> None:
    path = misc / "olmo_core_tty.log"
    assert sniff(path).name == "olmo-core"
    fr = _frame(path)
    assert _raw(fr, "train/CE loss") == ([1, 3], [10.98, 9.87])
    steps, values = _raw(fr, "optim/total grad norm")
    assert steps == [1, 3] and values[0] == 3.456 and math.isnan(values[1])
    assert _raw(fr, "optim/LR (group 0)") == ([1, 3], [6e-05, 0.0001])
    s = fr.series(fr.runs[0].run, "train/CE loss")
    assert s.wall_time.tolist() == [_utc("2026-03-01 12:34:56"), _utc("2026-03-01 12:34:58")]
    assert fr.runs[0].metadata.train_iters is None  # max steps "???"


def test_olmo_other_ranks_ignored_and_resume(tmp_path: Path) -> None:
    pre = "2026-03-01 12:00:0{}.000\tnode-{}:0\tolmo_core.train.callbacks.console_logger:68\tINFO\t"
    text = (pre.format(1, 0) + "[step=1/10,epoch=0,eta=1m]\n    train/CE loss=3.0\n"
            + pre.format(2, 1) + "[step=1/10,epoch=0,eta=1m]\n    train/CE loss=3.1\n"
            + pre.format(3, 0) + "[step=2/10,epoch=0,eta=1m]\n    train/CE loss=2.9\n"
            + pre.format(4, 0) + "Loading checkpoint from '/ckpt/step1'...\n"
            + pre.format(5, 0) + "[step=2/10,epoch=0,eta=1m]\n    train/CE loss=2.95\n")
    path = tmp_path / "train.log"
    path.write_text(text)
    assert sniff(path).name == "olmo-core"
    rec = olmo.read_olmo_core(path, "r")[0]
    assert rec.step.tolist() == [1, 2, 2] and rec.value.tolist() == [3.0, 2.9, 2.95]
    assert rec.headers == (7,)
    assert len(rec.warnings) == 1 and "other ranks" in rec.warnings[0]


def test_olmo_core_eval_steps(tmp_path: Path) -> None:
    pre = "2026-03-01 12:00:00.000\tnode-0:0\tolmo_core.x:1\tINFO\t"
    evals = pre + "Finished lm evals in 1.0 seconds. Metrics:\n    c4/CE loss={}\n"
    text = (pre + "[step=10/100,epoch=0,eta=1m]\n    train/CE loss=3.0\n"
            + evals.format(2.9)  # metrics collected later: the next header is step 11
            + pre + "[step=11/100,epoch=0,eta=1m]\n    train/CE loss=2.8\n"
            + pre + "[step=12/100,epoch=0]\n"
            + evals.format(2.7))  # the log ends: the step after the last header
    path = tmp_path / "core.log"
    path.write_text(text)
    fr = frame.build(olmo.read_olmo_core(path, "c"))
    assert _raw(fr, "eval/lm/c4/CE loss") == ([11, 13], [2.9, 2.7])
    assert fr.runs[0].roles["eval/lm/c4/CE loss"] == "val_loss"


def test_olmo_sniff_rejects_other_text() -> None:
    head = b"iter 10: loss 2.5, time 12.3ms, mfu 40.00%\n[step=1/2]\nhello\n"
    assert olmo.sniff_olmo("x.log", head) == 0.0 and olmo.sniff_olmo_core("x.log", head) == 0.0


# ----------------------------------------------------------------------------- fairseq

def test_fairseq_json(misc: Path) -> None:
    path = misc / "fairseq_json.log"
    assert sniff(path).name == "fairseq"
    fr = _frame(path)
    info = fr.runs[0]
    meta = info.metadata
    assert (meta.loss_units, meta.framework, meta.precision, meta.lr) == (
        "bits", "fairseq", "fp16", 0.0005)
    assert (meta.adam_beta1, meta.adam_beta2, meta.adam_eps, meta.weight_decay) == (
        0.9, 0.98, 1e-08, 0.01)
    assert (meta.train_iters, meta.warmup_steps, meta.save_interval, meta.log_interval) == (
        50000, 4000, 1000, 100)
    assert (meta.hidden_size, meta.num_layers, meta.num_heads, meta.seq_length) == (512, 6, 8, 512)
    assert meta.extra["arch"] == "transformer_lm" and meta.extra["optimizer"] == "adam"

    steps, values = _raw(fr, "loss")
    assert steps == [100, 200, 200, 300]
    assert _same(values, [9.876, NAN, 8.765, 8.5])
    assert _raw(fr, "wps")[1][1] == 1234570.0  # "1.23457e+06"
    assert _raw(fr, "gnorm")[1][1] == math.inf
    assert _raw(fr, "valid_loss") == ([200], [9.123])
    assert _raw(fr, "valid_best_loss") == ([200], [9.123])
    assert _raw(fr, "train_loss") == ([200], [10.2])
    assert _raw(fr, "train_wall (epoch)") == ([200], [432.0])
    assert _raw(fr, "train_train_wall") == ([200], [410.0])
    assert _raw(fr, "train_wall") == ([100, 200, 200, 300], [43.0] * 4)
    # overflow NOTE lines: placed at the update being attempted (last num_updates + 1)
    assert _raw(fr, "overflow") == ([1, 101], [2.0, 1.0])
    assert _raw(fr, "overflow loss_scale") == ([1, 101], [32.0, 16.0])
    roles = info.roles
    assert (roles["loss"], roles["valid_loss"], roles["gnorm"], roles["lr"]) == (
        "train_loss", "val_loss", "grad_norm", "lr")
    assert (roles["loss_scale"], roles["overflow"], roles["overflow loss_scale"]) == (
        "loss_scale", "skipped", "loss_scale")
    assert {"epoch", "update", "num_updates", "valid_num_updates"}.isdisjoint(roles)
    assert [(s.reason, s.first_step, s.last_step) for s in info.segments] == [
        ("start", 1, 200), ("header", 200, 300)]
    assert [(s.line, s.reason) for s in info.skipped] == [
        (11, "invalid JSON record"), (17, "truncated last line")]
    s = fr.series(info.run, "loss", raw=True)
    assert s.wall_time[0] == _utc("2023-01-01 12:00:00")


def test_fairseq_simple(misc: Path) -> None:
    path = misc / "fairseq_simple.log"
    assert sniff(path).name == "fairseq"
    fr = _frame(path)
    info = fr.runs[0]
    assert info.metadata.loss_units == "bits"
    steps, values = _raw(fr, "loss")
    assert steps == [100, 200] and values[0] == 9.876 and math.isnan(values[1])
    assert _raw(fr, "nll_loss")[0] == [100, 200]
    assert _raw(fr, "wps") == ([100, 200], [45678.9, 1234570.0])
    assert _raw(fr, "gnorm") == ([100, 200], [1.234, math.inf])
    assert _raw(fr, "valid_loss") == ([961], [9.123])
    assert _raw(fr, "valid_nll_loss") == ([961], [8.9])
    assert _raw(fr, "valid_best_loss") == ([961], [9.123])
    assert _raw(fr, "valid1_loss") == ([961], [9.5])
    assert _raw(fr, "train_loss") == ([961], [10.2])
    assert _raw(fr, "train_wall (epoch)") == ([961], [432.0])
    assert _raw(fr, "train_train_wall") == ([961], [410.0])
    assert info.roles["valid_loss"] == "val_loss" and info.roles["train_loss"] == "train_loss"
    assert [(s.line, s.reason) for s in info.skipped] == [(4, "no num_updates in record")]
    assert [s.reason for s in info.segments] == ["start"]


def test_metaseq_per_dataset_validation(misc: Path) -> None:
    path = misc / "metaseq.log"
    assert sniff(path).name == "fairseq"
    fr = _frame(path)
    info = fr.runs[0]
    meta = info.metadata
    assert (meta.framework, meta.loss_units, meta.precision, meta.lr, meta.train_iters) == (
        "metaseq", "bits", "fp16", 6e-05, 2000000)
    assert (meta.clip_grad, meta.adam_beta2, meta.extra["optimizer"]) == (1.0, 0.95, "adam")
    assert _raw(fr, "loss") == ([1234560, 1234570], [2.345, 2.301])
    assert _raw(fr, "valid/BookCorpusFair_loss") == ([1234560], [2.567])
    assert _raw(fr, "valid/combined_loss") == ([1234560], [2.601])
    assert info.roles["valid/BookCorpusFair_loss"] == "val_loss"
    assert info.roles["valid/combined_loss"] == "val_loss"
    assert info.roles["valid/BookCorpusFair_ppl"] == "other"
    assert info.skipped_count == 0


def test_fairseq_hydra_logging_prefix(tmp_path: Path) -> None:
    path = tmp_path / "hydra_train.log"
    path.write_text(
        '[2023-01-01 12:00:00,123][train_inner][INFO] - {"epoch": 1, "update": 0.1, "loss": "9.8", '
        '"num_updates": "100", "lr": "1e-05"}\n'
        "[2023-01-01 12:05:00,456][valid][INFO] - epoch 001 | valid on 'valid' subset | loss 9.1 | "
        "num_updates 100\n")
    assert sniff(path).name == "fairseq"
    fr = frame.build(fairseq.read(path, "h"))
    assert _raw(fr, "loss") == ([100], [9.8]) and _raw(fr, "valid_loss") == ([100], [9.1])
    assert fr.series("h", "loss").wall_time[0] == _utc("2023-01-01 12:00:00")


def test_fairseq_appended_run_is_a_header(misc: Path, tmp_path: Path) -> None:
    text = (misc / "fairseq_simple.log").read_text()
    path = tmp_path / "twice.log"
    path.write_text(text + text.replace("fairseq.trainer | begin training epoch 1",
                                        "fairseq_cli.train | Namespace(fp16=False, lr=[0.001])"))
    rec = fairseq.read(path, "t")[0]
    n = len(text.split("\n")) - 1
    assert rec.headers == (n + 1,)
    fr = frame.build([rec])
    assert [s.reason for s in fr.runs[0].segments] == ["start", "header"]
    assert rec.metadata.lr == 0.001 and rec.metadata.precision == "fp32"


def test_fairseq_tqdm_and_old_prints(tmp_path: Path) -> None:
    bar = "epoch 001:  {p}%|##   | {i}/1000 [01:23<09:45,  1.50it/s, loss=9.876, ppl=939.64, num_updates={n}, lr=1e-05]"
    text = ("\r".join([bar.format(p=10, i=100, n=100), bar.format(p=10, i=101, n=100),
                       bar.format(p=20, i=200, n=200)]) + "\n"
            + "| epoch 001 | valid on 'valid' subset | loss 9.1 | ppl 548.75 | num_updates 200\n"
            + "| loaded checkpoint checkpoints/checkpoint_last.pt (epoch 1 @ 100 updates)\n"
            + "| WARNING: overflow detected, setting loss scale to: 64.0\n"
            + "| epoch 001:    200 / 1000 loss=9.3, ppl=630.35, num_updates=200, lr=2e-05\n")
    path = tmp_path / "train.log"
    path.write_text(text)
    assert sniff(path).name == "fairseq"
    rec = fairseq.read(path, "r")[0]
    fr = frame.build([rec])
    assert _raw(fr, "loss") == ([100, 200, 200], [9.876, 9.876, 9.3])
    assert _raw(fr, "valid_loss") == ([200], [9.1])
    assert _raw(fr, "overflow") == ([101], [1.0])
    assert _raw(fr, "overflow loss_scale") == ([101], [64.0])
    assert rec.headers == (3,)
    assert [s.reason for s in fr.runs[0].segments] == ["start", "header"]


@pytest.mark.parametrize("name, prefix", [
    ("olmo_v1.log", "[default0]:"), ("olmo_core.log", "[rank0]:"), ("fairseq_json.log", "0: "),
    ("fairseq_simple.log", "[1,0]<stdout>:")])
def test_launcher_prefixes_change_nothing(misc: Path, tmp_path: Path, name: str,
                                          prefix: str) -> None:
    src = misc / name
    text = src.read_text()
    path = tmp_path / name
    path.write_text("\n".join(prefix + ln for ln in text.split("\n")))
    assert sniff(path).name == sniff(src).name
    a, b = read_records(src)[0], read_records(path)[0]
    assert (a.tags, a.step.tolist(), a.order.tolist()) == (b.tags, b.step.tolist(), b.order.tolist())
    assert np.array_equal(a.value, b.value, equal_nan=True)
    assert (a.headers, a.skipped_count) == (b.headers, b.skipped_count)
    assert [s.line for s in a.skipped] == [s.line for s in b.skipped]


# ----------------------------------------------------------------------------- Lightning

LIGHTNING = ("epoch,lr-AdamW,step,train_loss_epoch,train_loss_step,val_acc,val_loss\r\n"
             ",0.001,49,,,,\r\n"
             "0,,49,,2.2841103076934814,,\r\n"
             ",0.001,99,,,,\r\n"
             "0,,99,,nan,,\r\n"
             "0,,99,,,0.3812,1.8543050289154053\r\n"
             "0,,99,2.1015353202819824,,,\r\n"
             "1,,149,,inf,,\r\n")


def _lightning_dir(tmp_path: Path, text: str = LIGHTNING) -> Path:
    d = tmp_path / "lightning_logs" / "version_3"
    d.mkdir(parents=True)
    (d / "metrics.csv").write_bytes(text.encode())
    return d


def test_lightning_metrics_csv(tmp_path: Path) -> None:
    d = _lightning_dir(tmp_path)
    (d / "hparams.yaml").write_text("lr: 0.001\nhidden_size: 256\nname: tiny\n")
    path = d / "metrics.csv"
    assert sniff(path).name == "lightning-csv"
    fr = _frame(path)
    info = fr.runs[0]
    assert info.run == "lightning_logs/version_3"
    assert info.format == "lightning-csv"
    assert sorted(s.tag for s in info.series) == [
        "lr-AdamW", "train_loss_epoch", "train_loss_step", "val_acc", "val_loss"]
    assert _raw(fr, "lr-AdamW") == ([49, 99], [0.001, 0.001])
    steps, values = _raw(fr, "train_loss_step")
    assert steps == [49, 99, 149]  # "nan" is a value, empty cells are not
    assert _same(values, [2.2841103076934814, NAN, math.inf])
    assert _raw(fr, "val_loss") == ([99], [1.8543050289154053])
    assert _raw(fr, "val_acc") == ([99], [0.3812])
    assert _raw(fr, "train_loss_epoch") == ([99], [2.1015353202819824])
    roles = info.roles
    assert (roles["lr-AdamW"], roles["train_loss_step"], roles["val_loss"]) == (
        "lr", "train_loss", "val_loss")
    assert [s.reason for s in info.segments] == ["start"]
    assert info.skipped_count == 0
    meta = info.metadata
    assert (meta.framework, meta.lr, meta.hidden_size, meta.extra["name"]) == (
        "lightning", 0.001, 256, "tiny")
    rec = read_records(path)[0]
    code = rec.tags.index("val_loss")
    assert rec.order[rec.tag_code == code].tolist() == [6]  # line number (header is 1)


def test_lightning_walk_names_run_by_version_dir(tmp_path: Path) -> None:
    _lightning_dir(tmp_path)
    recs = read_records(tmp_path)
    assert [r.run for r in recs] == ["lightning_logs/version_3"]


def test_lightning_1x_unsorted_header_and_truncated_row(tmp_path: Path) -> None:
    text = ("train_loss,epoch,step,val_loss/dataloader_idx_0,val_loss/dataloader_idx_1\r\n"
            "2.5,0,49,,\r\n"
            ",0,49,2.7,2.9\r\n"
            "2.25,0,99,,\r\n"
            "2.1,1,1")  # the writer was killed mid-row
    path = _lightning_dir(tmp_path, text) / "metrics.csv"
    assert sniff(path).name == "lightning-csv"
    rec = read_records(path)[0]
    fr = frame.build([rec])
    assert _raw(fr, "train_loss") == ([49, 99], [2.5, 2.25])
    assert _raw(fr, "val_loss/dataloader_idx_0") == ([49], [2.7])
    assert _raw(fr, "val_loss/dataloader_idx_1") == ([49], [2.9])
    assert fr.runs[0].roles["val_loss/dataloader_idx_1"] == "val_loss"
    assert [(s.line, s.reason) for s in rec.skipped] == [(5, "truncated last line")]


# ----------------------------------------------------------------------------- generic CSV

def test_csv_wide_ragged_rows_and_nan_spellings(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    path.write_text(",global_step,loss,acc,note\n"
                    "0,10,2.5,0.1,x\n"
                    "1,20,NaN,0.2,y\n"
                    "2,30\n"
                    "3,40,-inf,0.3,z,extra\n"
                    "4,50,oops,0.4,w\n"
                    "5,60,1e-3,0.5,v\n"
                    "6,70,-Infinity,,u\n"
                    "7,80,INF,0.7,t\n")
    assert sniff(path).name == "csv"
    fr = _frame(path)
    info = fr.runs[0]
    assert sorted(s.tag for s in info.series) == ["acc", "loss"]  # index, step, text left out
    steps, values = _raw(fr, "loss")
    assert steps == [10, 20, 60, 70, 80]
    assert _same(values, [2.5, NAN, 0.001, -math.inf, math.inf])
    assert _raw(fr, "acc") == ([10, 20, 50, 60, 80], [0.1, 0.2, 0.4, 0.5, 0.7])
    assert [(s.line, s.reason) for s in info.skipped] == [
        (4, "expected 5 cells, found 2"), (5, "expected 5 cells, found 6"),
        (6, "column 'loss': not a number")]
    assert info.warnings == (f"{path}: column 'note' holds no numbers; left out",)


def test_yolov10_one_to_many_and_one_to_one_loss_columns_are_losses() -> None:
    # YOLOv10 writes train/box_om ... val/dfl_oo (its two heads); they were `other`, never analysed
    from losslens.roles import infer_role

    assert [infer_role(t) for t in ("train/box_om", "train/cls_oo", "val/dfl_om", "val/cls_oo",
                                     "metrics/mAP50(B)", "lr/pg0")] == [
        "train_loss", "train_loss", "val_loss", "val_loss", "other", "lr"]


def test_csv_appended_by_restarts_counts_header_lines_once(tmp_path: Path) -> None:
    # a training_history.csv appended to by restarted jobs repeats its header line: one skipped
    # line each, named as such (it was "40 line(s)" for 2 lines: one per cell of 20 columns)
    path = tmp_path / "training_history.csv"
    path.write_text("step,loss,ce,acc\n5,0.09,11.3,0.1\n10,0.08,10.6,0.2\n"
                    "step,loss,ce,acc\n15,0.07,9.9,0.3\n20,bad,worse,0.4\n25,0.06,9.7,0.5\n")
    info = _frame(path).runs[0]
    assert info.skipped_count == 2
    assert [(s.line, s.reason) for s in info.skipped] == [
        (4, "the header line again (a file appended to by a restarted job?)"),
        (6, "column 'loss': not a number (and 1 more column)")]
    assert _raw(_frame(path), "acc") == ([5, 10, 15, 20, 25], [0.1, 0.2, 0.3, 0.4, 0.5])


def test_csv_padded_header_names_are_stripped(tmp_path: Path) -> None:
    # YOLOv5/v8 results.csv pads its header for the eye; the padding is no part of the tag
    path = tmp_path / "results.csv"
    path.write_text("               epoch,      train/box_loss,        val/box_loss,   metrics/mAP50(B)\n"
                    "                   0,             0.11855,            0.09741,            0.01202\n"
                    "                   1,             0.10323,            0.08952,            0.03311\n")
    fr = _frame(path)
    info = fr.runs[0]
    assert [(s.tag, s.role) for s in info.series] == [
        ("train/box_loss", "train_loss"), ("val/box_loss", "val_loss"), ("metrics/mAP50(B)", "other")]
    assert _raw(fr, "val/box_loss") == ([0, 1], [0.09741, 0.08952])
    assert info.warnings == ()


def test_csv_long_form_with_runs(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text("step,tag,value,run,wall_time\n"
                    "1,loss,2.5,a,1700000000\n"
                    "1,loss,2.6,b,1700000001\n"
                    "2,loss,nan,a,1700000002\n"
                    "2,valid/c4 loss,3.0,a,1700000003\n"
                    "3,loss,,a,1700000004\n"
                    "3,loss,2.4,b,\n")
    assert sniff(path).name == "csv"
    fr = _frame(path)
    assert [r.run for r in fr.runs] == ["a", "b"]
    steps, values = _raw(fr, "loss", "a")
    assert steps == [1, 2] and values[0] == 2.5 and math.isnan(values[1])
    assert _raw(fr, "valid/c4 loss", "a") == ([2], [3.0])
    assert fr.run("a").roles["valid/c4 loss"] == "val_loss"
    assert _raw(fr, "loss", "b") == ([1, 3], [2.6, 2.4])
    assert fr.series("b", "loss").wall_time[0] == 1700000001.0
    assert math.isnan(fr.series("b", "loss").wall_time[1])
    assert [(s.line, s.reason) for s in fr.run("a").skipped] == [(6, "no value")]


def test_csv_step_column_choice(tmp_path: Path) -> None:
    monotone = tmp_path / "m.csv"
    monotone.write_text("epoch,batch,loss\n0,100,2.0\n0,200,1.9\n1,300,1.8\n")
    rec = table.read_csv(monotone, "m")[0]
    assert rec.tags == ("loss",) and rec.step.tolist() == [100, 200, 300]
    by_epoch = tmp_path / "e.csv"
    by_epoch.write_text("epoch,loss,acc\n0,2.0,0.5\n1,1.5,0.6\n")
    rec = table.read_csv(by_epoch, "e")[0]
    assert rec.tags == ("loss", "acc") and rec.step.tolist() == [0, 1, 0, 1]
    none = tmp_path / "n.csv"
    none.write_text("loss,acc\n2.0,0.5\n1.5,0.5\n")
    rec = table.read_csv(none, "n")[0]
    assert rec.step.tolist() == [0, 1, 0, 1]
    assert rec.warnings == (f"{none}: no step column; the row number (from 0) is used as the step",)


def test_csv_bad_input_raises_losslens_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(LossLensError, match="empty.csv"):
        table.read_csv(empty, "e")
    bad_bytes = tmp_path / "b.csv"
    bad_bytes.write_bytes(b"step,loss\n1,2.0\n2,\xff\xfe,3\n3,2.5\n")
    rec = table.read_csv(bad_bytes, "b")[0]
    assert rec.step.tolist() == [1, 3] and rec.value.tolist() == [2.0, 2.5]
    assert [(s.line, s.reason) for s in rec.skipped] == [(3, "expected 2 cells, found 3")]
    garbage = tmp_path / "g.csv"
    garbage.write_bytes(bytes(range(256)) * 4)
    for reader in (table.read_csv, jsonl.read_jsonl, table.read_lightning_csv,
                   olmo.read_olmo, olmo.read_olmo_core, fairseq.read):
        try:
            recs = reader(garbage, "g")
        except LossLensError as exc:
            assert "g.csv" in str(exc)
        else:
            assert sum(len(r) for r in recs) == 0


# ----------------------------------------------------------------------------- JSONL

def test_jsonl_fast_path(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.5, "train": {"acc": 0.1, "x": {"y": 1}}, "note": "a"}\n'
                    '{"step": 2, "loss": NaN, "train": {"acc": 0.2}}\n'
                    "\n"
                    '{"step": 3, "loss": Infinity, "timestamp": 1700000000.5}\n'
                    '{"_step": 4, "loss": -Infinity}\n'
                    '{"loss": 9}\n'
                    '{"step": 5, "loss": 1.5')
    assert sniff(path).name == "jsonl"
    rec = jsonl.read_jsonl(path, "j")[0]
    fr = frame.build([rec])
    steps, values = _raw(fr, "loss")
    assert steps == [1, 2, 3, 4] and _same(values, [2.5, NAN, math.inf, -math.inf])
    assert _raw(fr, "train/acc") == ([1, 2], [0.1, 0.2])
    assert _raw(fr, "train/x/y") == ([1], [1.0])
    assert sorted(rec.tags) == ["loss", "train/acc", "train/x/y"]
    code = rec.tags.index("loss")
    assert rec.order[rec.tag_code == code].tolist() == [1, 2, 4, 5]
    assert fr.series("j", "loss").wall_time[2] == 1700000000.5
    assert sorted((s.line, s.reason) for s in rec.skipped) == [
        (6, "no integer step in this row"), (7, "truncated last line")]


def test_jsonl_per_epoch_log_takes_epoch_as_step(tmp_path: Path) -> None:
    # DETR's `output/log.txt`: one JSON object per epoch, no step key, an integer `epoch`; it was
    # "not a log format" (and "no metric series found" with -i jsonl: every line set aside)
    path = tmp_path / "log.txt"
    rows = [{"train_lr": 1e-4, "train_loss": 29.5 - e, "test_loss": 20.0 + e / 10,
             "test_coco_eval_bbox": [0.1, 0.2], "epoch": e, "n_parameters": 41302368}
            for e in range(4)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert sniff(path).name == "jsonl"
    fr = _frame(path)
    assert _raw(fr, "train_loss") == ([0, 1, 2, 3], [29.5, 28.5, 27.5, 26.5])
    assert _raw(fr, "test_loss") == ([0, 1, 2, 3], [20.0, 20.1, 20.2, 20.3])
    assert "epoch" not in {s.tag for s in fr.runs[0].series}
    # a file with a step key keeps it: an integer epoch beside it is an axis, not the step
    path.write_text('{"step": 10, "epoch": 0, "loss": 2.0}\n{"step": 20, "epoch": 0, "loss": 1.5}\n'
                    '{"epoch": 1, "eval_loss": 1.7}\n')
    fr = _frame(path)
    assert _raw(fr, "loss") == ([10, 20], [2.0, 1.5])
    assert [(s.line, s.reason) for s in fr.runs[0].skipped] == [(3, "no integer step in this row")]


def test_jsonl_bad_lines_fall_back(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1, "loss": 2.5}\n'
                    '{"step": 2, "loss": "bad"}\n'
                    "not json\n"
                    '{"global_step": 3, "loss": 2.0, "wall_time": 1700000000.5, "lr": 1e-4}\n'
                    "[1, 2]\n"
                    '{"step": 4, "loss": NaN}\n')
    rec = jsonl.read_jsonl(path, "m")[0]
    fr = frame.build([rec])
    steps, values = _raw(fr, "loss")
    assert steps == [1, 3, 4] and _same(values, [2.5, 2.0, NAN])
    assert _raw(fr, "lr") == ([3], [1e-4])
    assert fr.series("m", "loss").wall_time[1] == 1700000000.5
    assert sorted((s.line, s.reason) for s in rec.skipped) == [
        (2, "loss: not a number"), (3, "invalid JSON line"), (5, "not a JSON object")]


def test_jsonl_many_lines_with_one_bad_line(tmp_path: Path) -> None:
    n = 60000
    lines = [f'{{"step": {i}, "loss": {i / n}}}' for i in range(n)]
    lines.insert(30000, '{"step": oops}')
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(lines) + "\n")
    rec = jsonl.read_jsonl(path, "b")[0]
    assert rec.step.tolist() == list(range(n))
    assert np.array_equal(rec.order, np.r_[np.arange(1, 30001), np.arange(30002, n + 2)])
    assert [(s.line, s.reason) for s in rec.skipped] == [(30001, "invalid JSON line")]


def test_jsonl_invalid_utf8_key(tmp_path: Path) -> None:
    path = tmp_path / "u.jsonl"
    path.write_bytes(b'{"step": 1, "lo\x8ass": 2.5}\n{"step": 2, "loss": 1}\n')
    rec = jsonl.read_jsonl(path, "u")[0]
    assert rec.tags == ("lo\ufffdss", "loss") and rec.step.tolist() == [1, 2]


def test_levanter_json_tracker_lines(tmp_path: Path) -> None:
    pre = "2025-01-01T12:0{}:00 - 0 - levanter.json_logger - json_logger.py:78 - INFO :: "
    path = tmp_path / "run.log"
    path.write_text(
        pre.format(0) + '{"tracker": "json_logger", "event": "hparams", "hparams": {"lr": 0.001}}\n'
        + pre.format(0) + '{"tracker": "json_logger", "event": "log", "step": 100, "metrics": '
        '{"train/loss": 3.2107, "global_step": 100, "run_progress": 0.01}}\n'
        "2025-01-01T12:00:30 - 0 - levanter.eval - eval.py:242 - INFO :: eval loss: 3.500\n"
        + pre.format(1) + '{"tracker": "json_logger", "event": "log", "step": 200, "metrics": '
        '{"train/loss": NaN, "eval": {"c4": {"loss": 3.5}}, "global_step": 200}}\n'
        + pre.format(2) + '{"tracker": "json_logger", "event": "log", "step": 300, "metr')
    assert sniff(path).name == "levanter"  # the jsonl reader hands such logs to it too
    rec = jsonl.read_jsonl(path, "lev")[0]
    fr = frame.build([rec])
    steps, values = _raw(fr, "train/loss")
    assert steps == [100, 200] and values[0] == 3.2107 and math.isnan(values[1])
    assert _raw(fr, "eval/c4/loss") == ([200], [3.5])
    assert sorted(rec.tags) == ["eval/c4/loss", "run_progress", "train/loss"]
    assert fr.runs[0].roles["eval/c4/loss"] == "val_loss"
    assert fr.series("lev", "train/loss").wall_time.tolist() == [
        _utc("2025-01-01 12:00:00"), _utc("2025-01-01 12:01:00")]
    assert rec.metadata.framework == "levanter" and rec.metadata.extra == {"lr": "0.001"}
    assert [(s.line, s.reason) for s in rec.skipped] == [(5, "truncated last line")]


# ----------------------------------------------------------------------------- sniffing

def test_generic_tables_sniff_low() -> None:
    assert table.sniff_csv("x.csv", b"step,loss\n1,2.0\n") == 0.25
    assert table.sniff_csv("x.txt", b"step,loss\n1,2.0\n") == 0.2
    assert table.sniff_csv("x.log", b"hello, world\nthis is text\n") == 0.0
    assert jsonl.sniff_jsonl("x.jsonl", b'{"step": 1, "loss": 2}\n') == 0.3
    assert jsonl.sniff_jsonl("x.jsonl", b'{"a": 1}\n') == 0.0
    assert jsonl.sniff_jsonl("trainer_state.json", b'{\n  "log_history": []\n}\n') == 0.0
    assert table.sniff_lightning_csv("metrics.csv", b"epoch,step,loss\r\n") == 0.8
    assert table.sniff_lightning_csv("other.csv", b"epoch,step,loss\r\n") == 0.0
    # a W&B UI export belongs to its own reader; the generic CSV reader only bids low
    head = b'"Step","run-1 - train/loss","run-1 - train/loss__MIN"\n"1","2.5","2.5"\n'
    assert table.sniff_csv("wandb_export.csv", head) == 0.25


def test_every_tag_role_checked(misc: Path) -> None:
    """Roles of everything these readers emit (tags with a known wrong role are listed)."""
    known_wrong = {"valid_wps", "valid_wpb", "valid_bsz", "valid_best_loss", "valid1_loss",
                   "train/Z loss"}
    for name in ("fairseq_json.log", "fairseq_simple.log", "metaseq.log", "olmo_core.log"):
        for rec in read_records(misc / name):
            for tag in rec.tags:
                role = infer_role(tag)
                if tag in known_wrong:
                    continue
                if "loss" in tag and "scale" not in tag and not tag.startswith("ewm"):
                    want = "val_loss" if tag.startswith(("valid", "eval")) else "train_loss"
                    assert role == want, tag


# JSON null: what pandas and orjson write for NaN, and what a wide file writes for "not logged"

def _jsonl(path: Path, rows: list) -> Path:
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _null_tail_rows() -> list:
    rows = [{"step": s, "loss": round(2.0 - s / 100, 2), "lr": 1e-3} for s in range(1, 11)]
    return rows + [{"step": s, "loss": None, "lr": 1e-3} for s in (11, 12, 13)]


@pytest.mark.parametrize("damaged", [False, True])
def test_jsonl_null_losses_at_the_end_are_nan_points(tmp_path: Path, damaged: bool) -> None:
    # orjson / pandas wrote the run's last three NaN losses as null, lr still logged beside
    path = _jsonl(tmp_path / "m.jsonl", _null_tail_rows())
    if damaged:  # a bad line sends the reader line by line: the same reading
        path.write_text(path.read_text().replace('{"step": 5,', '{"step": 5,,', 1))
    rec = jsonl.read_jsonl(path, "j")[0]
    fr = frame.build([rec])
    steps, values = _raw(fr, "loss")
    kept = [s for s in range(1, 14) if not (damaged and s == 5)]
    assert steps == kept
    assert _same(values, [round(2.0 - s / 100, 2) for s in kept if s <= 10] + [NAN] * 3)
    assert _raw(fr, "lr")[0] == kept
    assert rec.warnings == ()
    from losslens.pipeline import analyze

    (ev,) = [e for e in analyze(fr).runs[0].events if e.kind == "nonfinite"]
    assert (ev.tag, ev.start_step, ev.end_step, ev.severity) == ("loss", 11, 13, "critical")


def test_jsonl_nulls_of_a_wide_file_stay_not_logged(tmp_path: Path) -> None:
    # a pandas frame of train rows and eval rows: each row's other group is null
    rows = []
    for s in range(1, 13):
        rows.append({"step": s, "loss": 3.0 - s / 10, "lr": 1e-3, "eval_loss": None})
        if s % 4 == 0:
            rows.append({"step": s, "loss": None, "lr": None, "eval_loss": round(3.1 - s / 10, 2)})
    fr = frame.build([rec := jsonl.read_jsonl(_jsonl(tmp_path / "w.jsonl", rows), "j")[0]])
    assert _raw(fr, "loss")[0] == list(range(1, 13))
    assert _raw(fr, "eval_loss") == ([4, 8, 12], [2.7, 2.3, 1.9])
    assert not np.isnan(_raw(fr, "loss")[1]).any()
    assert rec.warnings == ()


def test_jsonl_nulls_that_cannot_be_read_are_said(tmp_path: Path) -> None:
    # loss logged alone on each line, then three lines that log only acc with loss null:
    # NaN losses or a change of what is logged? Kept out, with a warning; an all-null column too
    rows = [{"step": s, "loss": 2.0 - s / 100, "grad_norm": None} for s in range(1, 9)]
    rows += [{"step": s, "loss": None, "acc": 0.5, "grad_norm": None} for s in (9, 10, 11)]
    rec = jsonl.read_jsonl(_jsonl(tmp_path / "u.jsonl", rows), "j")[0]
    fr = frame.build([rec])
    assert _raw(fr, "loss")[0] == list(range(1, 9))
    assert sorted(rec.tags) == ["acc", "loss"]
    assert rec.warnings == (
        "'loss': 3 null value(s) after its last number (steps 9-11) read as not logged; "
        "JSON null stands for both NaN and a value not logged",
        "'grad_norm': every value is null (NaN or never logged?); not read")

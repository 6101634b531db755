"""torchtune: DiskLogger txt files and StdoutLogger lines, written from
torchtune/training/metric_logging.py (`log_dict`: "Step {step} | " then "{name}:{data} "), and
the recipes' progress bar (tqdm itself, described as the recipes describe it)."""
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
    # the bar's loss at step 1, then the logger's: one step written twice in a row (the frame
    # keeps the last write, the logger's)
    assert _series(rec, "loss") == ([1, 1, 2], [2.2638285160064697, 2.2638285160064697, 2.1])
    assert _series(rec, "epoch") == ([1], [1.0])
    assert _series(rec, "peak_memory_alloc") == ([1], [4.512502193450928])
    assert rec.skipped_count == 0
    (series,) = [s for s in losslens.read(path).runs[0].series if s.tag == "loss"]
    assert (series.points, series.raw_points) == (2, 3)


def _bar_console(steps: int, logger_every: int = 0) -> str:
    """A recipe's console as tqdm itself draws it (a file: no terminal), driven the way
    full_finetune_single_device.py drives it: update(1), then set_description(f"{epoch}|
    {global_step}|Loss: {loss:.4f}"); the StdoutLogger's line after it every `logger_every`."""
    import io

    from tqdm import tqdm

    out = io.StringIO()
    pbar = tqdm(total=steps, file=out, mininterval=0)
    for step in range(1, steps + 1):
        loss = 2.5 - step / 100
        pbar.update(1)
        pbar.set_description(f"1|{step}|Loss: {loss:.4f}")
        if logger_every and step % logger_every == 0:
            pbar.write(_log_dict(step, {"loss": loss, "lr": 2e-05}), file=out)
    pbar.close()
    return out.getvalue()


def test_progress_bar_of_a_recipe_written_by_tqdm(tmp_path):
    path = tmp_path / "stderr.log"
    path.write_text(_bar_console(40))
    assert sniff(path).name == "torchtune"
    (rec,) = read_records(path)
    # every redraw repeats a description until the next step's: one point per step
    assert _series(rec, "loss") == (list(range(1, 41)),
                                    [round(2.5 - s / 100, 4) for s in range(1, 41)])
    assert _series(rec, "epoch")[1] == [1.0] * 40 and rec.skipped_count == 0
    assert losslens.read(path).runs[0].roles["loss"] == "train_loss"


def test_progress_bar_and_stdout_logger_in_one_console(tmp_path):
    path = tmp_path / "console.log"
    path.write_text(_bar_console(40, logger_every=10))
    run = losslens.read(path).runs[0]
    (series,) = [s for s in run.series if s.tag == "loss"]
    assert (series.points, series.raw_points, series.first_step, series.last_step) == (
        40, 44, 1, 40)  # the logger's 4 writes land on steps the bar already gave
    assert [s.reason for s in run.segments] == ["start"]  # a double log, not a resume


def test_progress_bar_behind_a_multi_node_label(tmp_path):
    path = tmp_path / "stdout.log"
    path.write_text("".join(f"[trainer0|0]:1|{s}|Loss: {3 - s / 10}:  {s}%|█| {s}/101 "
                            f"[00:{s:02d}<17:27, 13.96s/it]\n" for s in (7, 8, 9)))
    (rec,) = read_records(path)
    assert _series(rec, "loss") == ([7, 8, 9], [2.3, 2.2, 2.1])


def test_progress_bar_console_followed_in_pieces_reads_like_the_whole_file(tmp_path):
    from follow_check import follow_in_pieces

    data = (_bar_console(300, logger_every=25) + "\n".join(
        f"[trainer0|0]:1|{s}|Loss: {3 - s / 1000}:  50%|█| {s}/600 [01:00<01:00,  1.0s/it]"
        for s in range(301, 401)) + "\n").encode()
    dst = tmp_path / "console.log"
    st = follow_in_pieces(dst, data, "torchtune", seed=3)
    frame = losslens.read(dst)
    s, ref = st.series["loss"], frame.series(frame.runs[0].run, "loss")
    assert list(s.step[:s.n]) == list(ref.step)
    assert list(s.value[:s.n]) == list(ref.value)
    assert list(frame.series(frame.runs[0].run, "loss").step) == list(range(1, 401))

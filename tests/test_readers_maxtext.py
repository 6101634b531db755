"""MaxText stdout, written from MaxText/metric_logger.py's `log_metrics` f-strings."""
from __future__ import annotations

import losslens
from losslens.readers import read_records, sniff


def _train(step, loss, extra=""):
    return (f"I1129 19:48:42.123456 140000 max_logging.py:27] completed step: {step}, "
            f"seconds: 1.150, TFLOP/s/device: 470.000, Tokens/s/device: 57000.000, "
            f"total_weights: 8192, loss: {loss:.3f}{extra}")


def test_maxtext_train_and_eval_lines(tmp_path):
    lines = ["I1129 19:48:00.000000 140000 train.py:100] Number of model params=1.104 billion"]
    for s in range(0, 10):
        lines.append(_train(s, 10.5 - s / 10, ", lm_loss: 1.000, perplexity: 2.718" if s == 9
                            else ""))
        if s == 4:
            lines.append("I1129 19:48:50.000000 140000 max_logging.py:27] eval metrics after "
                         "step: 4, loss=9.876, total_weights=5000.0, step_time_seconds=0.321")
    lines.append("completed step: 10, seconds: 1.150, TFLOP/s/device: oops, loss: 9.400")
    path = tmp_path / "maxtext.log"
    path.write_text("\n".join(lines) + "\ncompleted step: 11, seco")
    assert sniff(path).name == "maxtext"
    (rec,) = read_records(path)

    def series(tag):
        sel = rec.tag_code == rec.tags.index(tag)
        return rec.step[sel].tolist(), rec.value[sel].tolist()

    steps, loss = series("loss")
    assert steps == list(range(11)) and loss[0] == 10.5 and loss[-1] == 9.4
    assert series("eval/loss") == ([4], [9.876])
    assert series("eval/step_time_seconds") == ([4], [0.321])
    assert series("perplexity") == ([9], [2.718])
    assert series("TFLOP/s/device")[0] == list(range(10))  # step 10's is not a number
    assert [(s.line, s.reason) for s in rec.skipped] == [
        (13, "MaxText value of TFLOP/s/device is not a number"), (14, "truncated last line")]
    roles = losslens.read(path).runs[0].roles
    assert (roles["loss"], roles["eval/loss"], roles["seconds"], roles["Tokens/s/device"],
            roles["perplexity"], roles["lm_loss"]) == (
        "train_loss", "val_loss", "other", "other", "other", "train_loss")


def test_maxtext_save_lines_name_the_checkpoints(tmp_path):
    """`checkpointing.print_save_message`: `Saved a checkpoint at step {step}.` (synchronous) or
    `Started an asynchronous checkpoint save for step {step}`; older train.py: lowercase."""
    pre = "I1129 19:48:42.123456 140000 max_logging.py:27] "
    lines = []
    for s in range(0, 30):
        lines.append(_train(s, 10.5 - s / 10))
        if s == 0:
            lines.append(pre + "saved a checkpoint at step 0")
        if s == 10:
            lines.append(pre + "Saved a checkpoint at step 10.")
        if s == 20:
            lines.append(pre + "Started an asynchronous checkpoint save for step 20")
    path = tmp_path / "maxtext.log"
    path.write_text("\n".join(lines) + "\n")
    (rec,) = read_records(path)
    assert rec.metadata.checkpoints == (0, 10, 20)
    assert rec.metadata.checkpoint_source == "the log's save lines (MaxText)"
    assert rec.step[rec.tag_code == rec.tags.index("loss")].tolist() == list(range(30))


def test_maxtext_moe_load_balancing_loss_is_not_a_train_loss(tmp_path):
    """MoE runs print (and write to TensorBoard) `moe_lb_loss`, the router's load-balancing
    auxiliary loss, beside `loss`: it is role other, like `z_loss`."""
    path = tmp_path / "moe.log"
    path.write_text("".join(_train(s, 10.5 - s / 10, f", moe_lb_loss: {0.01 + s / 1000:.3f}")
                            + "\n" for s in range(5)))
    roles = losslens.read(path).runs[0].roles
    assert (roles["loss"], roles["moe_lb_loss"]) == ("train_loss", "other")
    from losslens.roles import infer_role

    assert [infer_role(t) for t in ("learning/loss", "learning/moe_lb_loss", "eval/avg_loss",
                                    "eval/avg_moe_lb_loss", "learning/z_loss")] == [
        "train_loss", "other", "val_loss", "other", "other"]

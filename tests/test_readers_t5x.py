"""t5x stdout: lines written with CLU's LoggingWriter.write_scalars format (logging_writer.py:
`"[%d]%s %s"`, ` collection=NAME`, `f"{k}={v:.6g}"` for floats, `f"{k}={v}"` otherwise, sorted
keys) behind absl's prefix; t5x's own `Saved checkpoint for step %d to %s` line."""
from __future__ import annotations

import math

import losslens
from losslens.readers import read_records, sniff

ABSL = "I0612 10:01:02.123456 140245 logging_writer.py:48] "


def clu(step: int, scalars: dict, collection: str | None = "train") -> str:
    coll = f" collection={collection}" if collection else ""
    values = [f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
              for k, v in sorted(scalars.items())]
    return ABSL + "[%d]%s %s" % (step, coll, ", ".join(values))


def _loss(s: int) -> float:
    return 2 + math.exp(-s / 3000)


def t5x_log(n: int = 10, every: int = 100) -> str:
    lines = ["I0612 10:00:00.000000 140245 train.py:360] Process ID: 0",
             ABSL + "[Hyperparameters] collection=train {'lr': 0.01}",
             clu(0, {"timing/train_iter_warmup": 1.90735e-06})]  # t5x train.py, before step 1
    for i in range(1, n + 1):
        s = i * every
        lines.append(clu(s, {"loss": _loss(s), "cross_ent_loss": _loss(s) - 0.01,
                             "z_loss": 0.01, "accuracy": 0.4, "learning_rate": 0.01,
                             "timing/seconds": 12.5, "timing/steps_per_second": 8.0}))
        if i % 5 == 0:
            lines.append(clu(s, {"loss": _loss(s) + 0.1, "accuracy": 0.38},
                             "training_eval/c4_v220_span_corruption"))
            lines.append(ABSL.replace("logging_writer.py:48", "checkpoints.py:832")
                         + f"Saved checkpoint for step {s} to gs://b/model/checkpoint_{s}")
    return "\n".join(lines) + "\n"


def test_t5x_train_and_training_eval_collections(tmp_path):
    path = tmp_path / "t5x.log"
    text = t5x_log()
    text += ABSL + "[1100] collection=train Got images: {'x': (1, 2, 3)}.\n"
    text += ABSL + "[1100] collection=train loss=oops, accuracy=0.5\n"
    text += ABSL + "[1100] collection=train loss is 3\n"
    text += ABSL + "[1200] collection=train loss=2.7"  # cut mid-line
    path.write_text(text)
    assert sniff(path).name == "t5x"
    (rec,) = read_records(path)

    def series(tag):
        sel = rec.tag_code == rec.tags.index(tag)
        return rec.step[sel].tolist(), rec.value[sel].tolist()

    steps, loss = series("loss")
    assert steps == list(range(100, 1001, 100)) + [] and len(loss) == 10
    assert loss[0] == float(f"{_loss(100):.6g}")
    assert series("accuracy") == (list(range(100, 1001, 100)) + [1100], [0.4] * 10 + [0.5])
    assert series("training_eval/c4_v220_span_corruption/loss")[0] == [500, 1000]
    assert len(rec.tags) == 10 and series("timing/train_iter_warmup") == ([0], [1.90735e-06])
    assert [(s.line, s.reason) for s in rec.skipped] == [
        (19, "CLU value of loss is not a number"),
        (20, "CLU scalar line that is not `key=value` pairs"),
        (21, "truncated last line")]
    assert rec.metadata.framework == "t5x"
    assert rec.metadata.checkpoints == (500, 1000)
    assert rec.metadata.checkpoint_dir == "gs://b/model"
    frame = losslens.read(path)
    roles = frame.runs[0].roles
    assert (roles["loss"], roles["cross_ent_loss"], roles["z_loss"], roles["learning_rate"],
            roles["accuracy"], roles["training_eval/c4_v220_span_corruption/loss"],
            roles["training_eval/c4_v220_span_corruption/accuracy"], roles["timing/seconds"]) == (
        "train_loss", "train_loss", "other", "lr", "train_acc", "val_loss", "val_acc", "other")


def test_clu_lines_without_collection_or_absl_prefix(tmp_path):
    path = tmp_path / "clu.log"
    path.write_text("".join(f"[{s}] loss={2.5 - s / 100:.6g}, learning_rate=0.001\n"
                            for s in range(1, 6)) + "[6] loss=nan, learning_rate=0.001\n")
    assert sniff(path).name == "t5x"
    (rec,) = read_records(path)
    sel = rec.tag_code == rec.tags.index("loss")
    assert rec.step[sel].tolist() == [1, 2, 3, 4, 5, 6] and math.isnan(rec.value[sel][-1])
    assert rec.metadata.framework == "clu"
    assert rec.skipped_count == 0

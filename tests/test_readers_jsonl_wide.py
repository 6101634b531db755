"""Wide, sparse JSON lines (a new key on every line): read line by line in linear time, with a
warning naming the file, instead of pyarrow's lines x keys table (quadratic: 20,000 such
lines took four minutes); ordinary files, evaluation keys included, keep the table path."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np

from losslens.readers import jsonl, read_records


def _write(path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_new_key_on_every_line_reads_in_linear_time(tmp_path):
    path = tmp_path / "sparse.jsonl"
    _write(path, ({"step": i, f"metric_{i}": i / 2} for i in range(20_000)))
    start = time.process_time()
    (rec,) = read_records(path)
    assert time.process_time() - start < 5.0
    assert len(rec.tags) == 20_000 and len(rec) == 20_000
    assert rec.step.tolist() == list(range(20_000))
    assert rec.value[rec.tag_code == rec.tags.index("metric_777")].tolist() == [388.5]
    assert rec.warnings == (f"{path}: 257 distinct keys in 256 sampled lines, new keys all "
                            "through the file (a wide, sparse file): read line by line",)


def test_the_line_by_line_read_gives_the_table_path_points(tmp_path, monkeypatch):
    rows = []
    for i in range(2_000):
        row = {"step": i, "loss": 3 - i / 1000, f"probe/{i}": float(i), "nested": {f"k{i}": 1}}
        if i % 7 == 0:
            row["lr"] = 1e-4
        rows.append(row)
    path = tmp_path / "sparse.jsonl"
    _write(path, rows)
    path.write_text(path.read_text() + "not json\n" + '{"step": 5000, "loss": NaN}\n')
    (wide,) = read_records(path)
    assert len(wide.warnings) == 1 and "a wide, sparse file" in wide.warnings[0]
    monkeypatch.setattr(jsonl, "wide_sparse", lambda body: None)
    (table,) = read_records(path)
    assert table.warnings == ()
    for tag in ("loss", "lr", "probe/1500", "nested/k3"):
        a = wide.tag_code == wide.tags.index(tag)
        b = table.tag_code == table.tags.index(tag)
        assert wide.step[a].tolist() == table.step[b].tolist()
        assert np.array_equal(wide.value[a], table.value[b], equal_nan=True)
        assert wide.order[a].tolist() == table.order[b].tolist()
    assert sorted(wide.tags) == sorted(table.tags)
    assert [(s.line, s.reason) for s in wide.skipped] == [
        (s.line, s.reason) for s in table.skipped] == [(2001, "invalid JSON line")]


def test_nulls_in_a_wide_file_are_read_as_not_logged_and_said(tmp_path):
    path = tmp_path / "sparse.jsonl"
    _write(path, ({"step": i, "loss": None if i == 900 else 1.0, f"m{i}": 1} for i in range(1000)))
    (rec,) = read_records(path)
    loss = rec.tag_code == rec.tags.index("loss")
    assert int(loss.sum()) == 999 and 900 not in rec.step[loss].tolist()
    assert rec.warnings[1:] == ("JSON null values read as not logged (in a file this sparse a "
                                "null cannot be told from a NaN)",)


def test_ordinary_files_keep_the_table_path(tmp_path):
    """Train lines with a few keys, evaluation lines every 1000 steps with 300 more, a
    metric that appears late: not wide and sparse."""
    rows = []
    for i in range(20_000):
        row = {"step": i, "loss": 3 - i / 1e4, "lr": 1e-4}
        if i % 1000 == 0:
            row.update({f"eval/task_{k}/loss": 2.0 for k in range(300)})
        if i > 15_000:
            row["late/metric"] = 1.0
        rows.append(row)
    path = tmp_path / "normal.jsonl"
    _write(path, rows)
    assert jsonl.wide_sparse(path.read_bytes()) is None
    (rec,) = read_records(path)
    assert rec.warnings == () and len(rec.tags) == 303
    # 300 keys that each appear once, all at the start: no new keys later on
    rows = [{"step": i, **({f"hp/{k}": k for k in range(300)} if i == 0 else {}), "loss": 1.0}
            for i in range(5000)]
    _write(path, rows)
    assert jsonl.wide_sparse(path.read_bytes()) is None


def test_cli_analyses_a_wide_sparse_file_in_seconds(tmp_path):
    path = tmp_path / "sparse.jsonl"
    _write(path, ({"step": i, f"metric_{i}": 1.0} for i in range(10_000)))
    start = time.time()
    res = subprocess.run([sys.executable, "-m", "losslens", "analyze", str(path), "--format",
                          "json"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0
    assert res.stderr == (f"Warning: {path}: 257 distinct keys in 256 sampled lines, new keys "
                          "all through the file (a wide, sparse file): read line by line\n")
    doc = json.loads(res.stdout)
    from tests.schema_check import validate
    validate(doc)
    assert len(doc["runs"][0]["series"]) == 10_000
    assert time.time() - start < 60  # (before: the read alone took about 40 s)

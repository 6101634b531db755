"""`analyze --jobs N` and `--scheduler`: the same report as the serial run, the fleet summary."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from losslens.cli import app
from losslens.parallel import Work, analyze_unit, plan_units
from losslens.synthetic import Spike, make_curve

SPIKED = (0, 2, 4)


def _jsonl(path: Path, seed: int, spike: bool) -> None:
    spikes = [Spike(1500 + 100 * seed, height=3.0, recovery="fast")] if spike else []
    steps, loss, _ = make_curve(3000, seed=seed, spikes=spikes)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"step": int(s), "loss": float(v), "lr": 1e-3}) + "\n"
                            for s, v in zip(steps, loss)))


def _megatron(path: Path) -> None:
    """A Megatron-LM log (Megatron-LM's training_log line): iterations 1-300, a resume at 240, on to 400; the
    loss jumps up for good at 350."""
    lines = []
    for it in list(range(1, 301)) + list(range(241, 401)):
        if it == 241 and len(lines) == 300:
            lines.append(" successfully loaded checkpoint from /ckpt [ t 0/1, p 0/1 ] at "
                         "iteration 240")
        loss = 5.0 - it * 0.002 + (4.0 if it >= 350 else 0.0)
        lines.append(f" iteration {it:8d}/    1000 | consumed samples: {it * 8:12d} | "
                     f"elapsed time per iteration (ms): 100.0 | learning rate: 1.000E-04 | "
                     f"global batch size:     8 | lm loss: {loss:.6E} | loss scale: 1.0 | "
                     f"grad norm: 1.000 | number of skipped iterations:   0 | "
                     f"number of nan iterations:   0 |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    """Six JSONL runs (three with a spike), a Megatron run, a damaged file, a stray text."""
    root = tmp_path / "fleet"
    for i in range(6):
        _jsonl(root / f"run{i}" / "metrics.jsonl", i, i in SPIKED)
    _megatron(root / "mega" / "train.log")
    (root / "bad").mkdir()
    (root / "bad" / "trainer_state.json").write_text('{"global_step": 3, "log_history": 5}')
    (root / "notes.txt").write_text("hello\n")
    return root


def _json(runner, *args: str, code: int = 0) -> tuple[dict, str]:
    result = runner.invoke(app, ["analyze", *args, "--format", "json"])
    assert result.exit_code == code, result.stderr
    return json.loads(result.stdout), result.stderr


def _bad(fleet: Path) -> str:
    """The damaged unit of the fleet: a failed run in the report, its error on stderr."""
    return f"{fleet / 'bad' / 'trainer_state.json'}: not a trainer_state.json (no log_history list)"


def test_jobs_gives_the_serial_report(runner, fleet):
    serial, serial_err = _json(runner, str(fleet), "--jobs", "1", code=2)
    para, para_err = _json(runner, str(fleet), "--jobs", "2", code=2)
    assert para == serial
    assert [r["run"] for r in para["runs"]] == [
        "bad/trainer_state.json", "mega/train.log", *(f"run{i}/metrics.jsonl" for i in range(6))]
    assert [r["error"] for r in para["runs"]] == [_bad(fleet)] + [None] * 7
    spiked = [r["run"] for r in para["runs"] if any(e["kind"] == "spike" for e in r["events"])]
    assert spiked == ["mega/train.log", *(f"run{i}/metrics.jsonl" for i in SPIKED)]
    assert serial_err == para_err == f"Error: {_bad(fleet)}\n"


def test_jobs_with_checkpoints_and_several_paths(runner, fleet):
    args = [str(fleet / "mega"), str(fleet / "run0"), str(fleet / "run1" / "metrics.jsonl"),
            "--checkpoint-every", "25", "--global-batch-size", "8"]
    serial, _ = _json(runner, *args)
    para, _ = _json(runner, *args, "--jobs", "0")
    assert para == serial
    assert [r["run"] for r in para["runs"]] == ["train.log", "metrics.jsonl", "metrics.jsonl#2"]
    mega = para["runs"][0]
    assert [s["reason"] for s in mega["segments"]] == ["start", "header"]
    assert mega["skip_plan"]["restart_from_step"] == 250
    assert mega["skip_plan"]["samples"] == [[250 * 8, 450 * 8 - 1]]


def test_duplicate_run_names_across_units_match_build(runner, fleet):
    a, b = fleet / "run0" / "metrics.jsonl", fleet / "run1" / "metrics.jsonl"
    serial, _ = _json(runner, str(a), str(b), str(a))
    para, _ = _json(runner, str(a), str(b), str(a), "--jobs", "3")
    assert para == serial
    runs = para["runs"]
    assert [r["run"] for r in runs] == ["metrics.jsonl", "metrics.jsonl#2", "metrics.jsonl#3"]
    assert runs[0]["events"] == runs[2]["events"]  # the events moved with the renamed run


def test_html_report_keeps_the_points(runner, fleet, tmp_path):
    out = {}
    for jobs in ("1", "2"):
        target = tmp_path / f"r{jobs}.html"
        result = runner.invoke(app, ["analyze", str(fleet / "run0"), str(fleet / "run2"),
                                     "--format", "html", "-o", str(target), "--jobs", jobs])
        assert result.exit_code == 0, result.stderr
        out[jobs] = target.read_text()
    assert out["2"] == out["1"] and out["2"].count("<svg") >= 2


def test_text_report_starts_with_the_fleet_summary(runner, fleet):
    result = runner.invoke(app, ["analyze", str(fleet), "--jobs", "2"])
    assert result.exit_code == 2, result.stderr  # the damaged unit: a failed run, exit 2
    serial = runner.invoke(app, ["analyze", str(fleet)])
    assert result.stdout == serial.stdout  # the loss plots too: the points came back
    lines = result.stdout.splitlines()
    assert lines[0].startswith("8 runs")  # the damaged unit is a failed run
    header = lines[1].split()
    assert header == ["run", "worst", "finding", "events", "last", "step"]
    # columns by the header's positions (left-aligned text, right-aligned numbers); a long
    # cell wraps onto continuation lines (an empty run cell)
    at = [lines[1].index(h) for h in ("worst", "finding", "events")]
    ends = [lines[1].index("events") + len("events"), len(lines[1])]
    parsed: list[list[str]] = []
    for line in lines[3:]:
        if not line.strip():
            break
        cells = [line[:at[0]], line[at[0]:at[1]], line[at[1]:ends[0] - len("events")],
                 line[ends[0] - len("events"):ends[0]], line[ends[0]:ends[1]]]
        cells = [c.strip() for c in cells]
        if cells[1] or not parsed:
            parsed.append(cells)
        else:  # a continuation line: the run name goes on (cut anywhere), the finding too
            prev = parsed[-1]
            parsed[-1] = [prev[0] + cells[0]] + [f"{a} {b}" if b else a
                                                 for a, b in zip(prev[1:], cells[1:])]
    rows = {cells[0]: cells for cells in parsed}
    assert len(rows) == 8
    assert rows["bad/trainer_state.json"][1] == "failed"
    assert rows["run1/metrics.jsonl"][1:] == ["clean", "", "0", "3,000"]
    assert rows["run0/metrics.jsonl"][1] == "info"
    assert rows["run0/metrics.jsonl"][2] == "1 fast-recovering spike(s)"
    assert rows["mega/train.log"][4] == "400"


def test_one_run_has_no_fleet_summary(runner, fleet):
    result = runner.invoke(app, ["analyze", str(fleet / "run1"), "--jobs", "2"])
    assert result.exit_code == 0, result.stderr
    assert "runs" not in result.stdout.splitlines()[0]


def test_worker_sends_back_no_points(fleet):
    (unit,) = plan_units([fleet / "run0"])
    assert (unit.run, unit.format, unit.direct) == ("metrics.jsonl", None, False)  # sniffed there
    res = analyze_unit(unit, Work())
    assert res.frame is None and res.names == ("metrics.jsonl",)
    assert [e.kind for e in res.runs[0].events] == ["changepoint", "spike"]
    assert analyze_unit(unit, Work(keep_frames=True)).frame is not None


def test_errors_stay_one_line(runner, fleet, tmp_path):
    missing = tmp_path / "nope"
    result = runner.invoke(app, ["analyze", str(fleet), str(missing), "--jobs", "2"])
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == f"Error: {missing}: no such file or directory\n"
    prose, other = fleet / "notes.txt", tmp_path / "other.txt"
    other.write_text("not a log either\n")
    for args in ([prose], [prose, other], [fleet / "run0", prose, fleet / "run1", other]):
        result = runner.invoke(app, ["analyze", *map(str, args), "--jobs", "2"])
        assert result.exit_code == 2
        # the first failing path, as the serial read reports it
        assert result.stderr.startswith(f"Error: {prose}: not a log format losslens knows")
        assert result.stderr.count("\n") == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["analyze", str(fleet / "run0"), str(empty), "--jobs", "2"])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {empty}: no metric series found")
    result = runner.invoke(app, ["analyze", str(fleet), "--jobs", "-1"])
    assert (result.exit_code, result.stderr) == (2, "Error: --jobs must be >= 0, got -1\n")


def test_scheduler_without_dask_is_a_one_line_error(runner, fleet, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    result = runner.invoke(app, ["analyze", str(fleet), "--scheduler", "tcp://127.0.0.1:1"])
    assert result.exit_code == 2
    assert result.stderr == "Error: --scheduler needs Dask: pip install 'losslens[dask]'\n"


def test_scheduler_runs_on_a_dask_cluster(runner, fleet):
    distributed = pytest.importorskip("distributed")
    serial, serial_err = _json(runner, str(fleet), code=2)
    with distributed.LocalCluster(processes=False, n_workers=1, threads_per_worker=2,
                                  dashboard_address=None) as cluster:
        para, para_err = _json(runner, str(fleet), "--scheduler", cluster.scheduler_address,
                               code=2)
    assert para == serial and para_err == serial_err


def test_unreachable_scheduler(runner, fleet, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr("losslens.parallel.CONNECT_TIMEOUT", "1s")
    result = runner.invoke(app, ["analyze", str(fleet), "--scheduler", "tcp://127.0.0.1:9"])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --scheduler tcp://127.0.0.1:9: cannot connect")
    assert result.stderr.count("\n") == 1

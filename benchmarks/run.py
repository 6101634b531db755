"""Speed and scale of losslens, against the tools users would otherwise pick, in one run.

Generates its own inputs — a TensorBoard event file (4 tags x 1M steps), a Megatron-LM log
(1M lines), a JSONL log (1M steps, 4 series) and a folder of 200 runs (TensorBoard, Megatron
and JSONL, one each in turn) — and measures, each in a fresh process (wall, CPU, peak RSS):

- read throughput: `losslens.read` against tensorboard's EventAccumulator and tbparse
  (events/s; `read_tensorboard.py`), and against a per-line Python regex on the Megatron log
  (MB/s; `read_text.py`);
- `losslens analyze` end to end (the whole command, imports included) on each big input, and
  against a bare per-line regex that only parses the file (same fields, whole process too);
- the changepoint detector alone on 1M points (after its import, which is shown apart);
- the cost of a `watch` update of 1,000 new lines on the 1M-line log (`watch_update.py`);
- a small log: `losslens analyze` of a 1,000-line Megatron log (whole process) against
  `python -c "import pandas"` in the same run (it imports only what the run needs: no SciPy,
  ruptures or TensorBoard protobufs);
- the HTML report of a 1M-step run (`report_shots.py`): file size and the time headless
  Chromium takes to load it and draw every chart (median of 3);
- `losslens --help`, and `losslens analyze DIR` on the folder with `--jobs 1` and `--jobs N`
  (the two JSON reports compared).

Targets (speeds of the tools users would otherwise pick, measured on this kind of
machine) are printed next to each number.

    python benchmarks/run.py             # full size (several minutes)
    python benchmarks/run.py --quick     # 1/10 of the sizes, 40 runs
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import read_tensorboard as rtb  # noqa: E402
import report_shots  # noqa: E402
import read_text as rtx  # noqa: E402

#: A JSONL record as a training script prints it; the bare regex reads the same fields.
JSONL_RE = (r'"step": (\d+), "loss": (\S+), "lr": (\S+), "grad_norm": (\S+), '
            r'"loss_scale": (\S+)\}')
TB_NAME = "events.out.tfevents.1700000000.bench.1.0"


@dataclass(frozen=True)
class Sizes:
    steps: int  # TensorBoard steps (x4 events), JSONL steps
    lines: int  # Megatron log lines
    baseline_events: int  # EventAccumulator / tbparse file
    runs: int  # folder of runs
    run_steps: int  # steps (or lines) per run of the folder
    watch_lines: int

    @classmethod
    def of(cls, quick: bool) -> "Sizes":
        if quick:
            return cls(100_000, 100_000, 40_000, 40, 2_000, 100_000)
        return cls(1_000_000, 1_000_000, 400_000, 200, 10_000, 1_000_000)


# ---------------------------------------------------------------- inputs


def write_jsonl(path: Path, steps: int, seed: int = 0) -> None:
    """`steps` JSON lines (step, loss, lr, grad_norm, loss_scale), three loss spikes."""
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(1, steps + 1)
    loss = 2.0 + 8.0 * (1 + t / 2000.0) ** -0.5 + rng.normal(0, 0.02, steps)
    for at in (steps // 4, steps // 2, 3 * steps // 4):
        loss[at:at + 30] *= np.linspace(2.5, 1.0, loss[at:at + 30].shape[0])
    lr = 3e-4 * np.minimum(1.0, t / 2000.0)
    gnorm = 0.3 + np.abs(rng.normal(0, 0.05, steps))
    with open(path, "w") as fh:
        for k in range(0, steps, 100_000):
            sl = slice(k, k + 100_000)
            fh.write("".join(
                f'{{"step": {s}, "loss": {a:.6f}, "lr": {b:.6e}, "grad_norm": {c:.4f}, '
                f'"loss_scale": 1.0}}\n'
                for s, a, b, c in zip(t[sl].tolist(), loss[sl].tolist(), lr[sl].tolist(),
                                      gnorm[sl].tolist())))


def write_fleet(root: Path, runs: int, steps: int) -> None:
    """`runs` runs in turn: a TensorBoard folder, a Megatron log, a JSONL log."""
    for i in range(runs):
        d = root / f"run{i:04d}"
        d.mkdir(parents=True, exist_ok=True)
        kind = i % 3
        if kind == 0:
            rtb.write_events(d / TB_NAME, steps * len(rtb.TAGS), seed=i)
        elif kind == 1:
            rtx.write_log(d / "train.log", steps, seed=i)
        else:
            write_jsonl(d / "metrics.jsonl", steps, seed=i)


def input_paths(root: Path, sz: Sizes) -> dict[str, Path]:
    return {"tb": root / "tb" / TB_NAME, "tb_small": root / "tb_small" / TB_NAME,
            "megatron": root / f"megatron_{sz.lines}.log",
            "jsonl": root / f"steps_{sz.steps}.jsonl", "fleet": root / f"fleet_{sz.runs}"}


def prepare(root: Path, sz: Sizes) -> None:
    """The inputs under `root`, written once (kept when `--dir` is given)."""
    paths = input_paths(root, sz)
    jobs = [
        (paths["tb"], lambda p: rtb.write_events(p, sz.steps * len(rtb.TAGS))),
        (paths["tb_small"], lambda p: rtb.write_events(p, sz.baseline_events)),
        (paths["megatron"], lambda p: rtx.write_log(p, sz.lines)),
        (paths["jsonl"], lambda p: write_jsonl(p, sz.steps)),
        (paths["fleet"], lambda p: write_fleet(p, sz.runs, sz.run_steps)),
    ]
    for path, write in jobs:
        done = path.with_name(path.name + f".{sz.steps}.{sz.run_steps}.ok")
        if done.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        write(path)
        done.touch()
        _note(f"wrote {path.name} in {time.perf_counter() - t:.1f} s")


# ---------------------------------------------------------------- processes


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def process(cmd: list[str], stdout: Path | None = None) -> dict:
    """Run a whole process: wall, CPU (user + sys) and peak RSS of that process alone."""
    with open(stdout or os.devnull, "wb") as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode:
            err.seek(0)
            raise RuntimeError(f"{cmd}: exit {p.returncode}: {err.read().decode()[-2000:]}")
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "peak_mb": ru.ru_maxrss / 1024}


def median_of(repeat: int, fn) -> dict:
    runs = sorted((fn() for _ in range(repeat)), key=lambda r: r["wall_s"])
    return runs[len(runs) // 2]


def losslens_cmd(*args: str) -> list[str]:
    """The installed entry point when there is one (what a user runs), else -m."""
    script = Path(sys.executable).parent / "losslens"
    if script.is_file():
        return [sys.executable, str(script), *args]
    return [sys.executable, "-m", "losslens", *args]


def measure_self(kind: str, *args: str) -> dict:
    """One in-process measurement of this file (`--measure`), in a fresh process."""
    out = subprocess.run([sys.executable, __file__, "--measure", kind, *args], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- in-process measurements


def _regex(path: str, pattern: str) -> dict:
    """The bare baseline: a per-line regex pulling every field, floats into lists."""
    rx = re.compile(pattern)
    cols: list[list[float]] = [[] for _ in range(rx.groups)]
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = rx.search(line)
            if m:
                for c, g in zip(cols, m.groups()):
                    c.append(float(g) if g else math.nan)
    return {"points": sum(len(c) for c in cols)}


def _changepoint(n: str) -> dict:
    import numpy as np

    t0 = time.perf_counter()
    from losslens.detectors.changepoint import ChangepointDetector
    from losslens.frame import Series

    imported = time.perf_counter() - t0
    steps = np.arange(1, int(n) + 1, dtype=np.int64)
    rng = np.random.default_rng(0)
    loss = 2.0 + 8.0 * (1 + steps / 2000.0) ** -0.5 + rng.normal(0, 0.02, steps.shape[0])
    loss[steps > int(n) * 0.6] *= 0.9  # an LR drop: a level change the detector must find
    s = Series("bench", "loss", "train_loss", steps, loss, np.full(steps.shape[0], np.nan),
               np.zeros(steps.shape[0], np.int32))
    det = ChangepointDetector()
    t1, c1 = time.perf_counter(), time.process_time()
    events = det.detect(s)
    return {"wall_s": time.perf_counter() - t1, "cpu_s": time.process_time() - c1,
            "import_s": imported, "events": len(events),
            "found": [int(e.start_step) for e in events]}


def _in_process(kind: str, args: list[str]) -> dict:
    if kind == "changepoint":
        return _changepoint(*args)
    pattern = {"regex-jsonl": JSONL_RE, "regex-megatron": rtx.BASELINE_RE}[kind]
    return _regex(args[0], pattern)


# ---------------------------------------------------------------- the suite


def bench_reads(paths: dict[str, Path], repeat: int) -> dict:
    tb_dir, small_dir = str(paths["tb"].parent), str(paths["tb_small"].parent)
    _note("reading TensorBoard (losslens, EventAccumulator, tbparse)...")
    ll = median_of(repeat, lambda: rtb._run("losslens", tb_dir))
    ea, tbp = rtb._run("ea", small_dir), rtb._run("tbparse", small_dir)
    _note("reading the Megatron log (losslens, per-line regex)...")
    text = {k: median_of(repeat, lambda k=k: rtx._run(k, paths["megatron"]))
            for k in ("baseline", "losslens")}
    return {"tb": ll, "ea": ea, "tbparse": tbp, "text": text,
            "text_mb": paths["megatron"].stat().st_size / 1e6}


def bench_analyze(paths: dict[str, Path], repeat: int, tmp: Path) -> dict:
    out: dict[str, dict] = {}
    for name, src, fmt in (("tb", paths["tb"].parent, None), ("megatron", paths["megatron"],
                                                              "megatron"),
                           ("jsonl", paths["jsonl"], None)):
        _note(f"analyze {name}...")
        args = ["analyze", str(src), "--format", "json"] + (["-i", fmt] if fmt else [])
        out[name] = median_of(repeat, lambda a=args, n=name: process(
            losslens_cmd(*a), tmp / f"{n}.json"))
        out[name]["events"] = sum(len(r["events"]) for r in
                                  json.loads((tmp / f"{name}.json").read_text())["runs"])
    for name, kind in (("megatron", "regex-megatron"), ("jsonl", "regex-jsonl")):
        out[f"{name}_regex"] = median_of(repeat, lambda k=kind, n=name: process(
            [sys.executable, __file__, "--measure", k, str(paths[n])]))
    return out


def bench_fleet(paths: dict[str, Path], jobs: int, tmp: Path) -> dict:
    _note(f"analyze the folder, --jobs 1 and --jobs {jobs}...")
    out = {}
    for j in (1, jobs):
        out[j] = process(losslens_cmd("analyze", str(paths["fleet"]), "--format", "json",
                                      "--jobs", str(j)), tmp / f"fleet{j}.json")
    out["same"] = (tmp / "fleet1.json").read_bytes() == (tmp / f"fleet{jobs}.json").read_bytes()
    doc = json.loads((tmp / "fleet1.json").read_text())
    out["runs"] = len(doc["runs"])
    out["points"] = sum(s["raw_points"] for r in doc["runs"] for s in r["series"])
    return out


def bench_small(root: Path, repeat: int) -> dict:
    """`analyze` of a 1,000-line log, whole process, against `python -c "import pandas"`."""
    _note("analyze a 1,000-line log; import pandas...")
    log = root / "small_1000.log"
    if not log.exists():
        rtx.write_log(log, 1000)
    cmd = losslens_cmd("analyze", str(log), "--format", "json")
    return {"analyze": median_of(repeat, lambda: process(cmd)),
            "pandas": median_of(repeat, lambda: process([sys.executable, "-c",
                                                         "import pandas"]))}


def bench_help(repeat: int) -> dict:
    _note("losslens --help...")
    return {"help": median_of(repeat, lambda: process(losslens_cmd("--help"))),
            "python": median_of(repeat, lambda: process([sys.executable, "-c", "pass"]))}


def bench_watch(lines: int, updates: int) -> dict:
    """`watch_update.py` in its own process; its printed medians are read back."""
    _note(f"watch: {updates} updates of 1,000 lines on a {lines:,}-line log...")
    script = HERE / "watch_update.py"
    if not script.exists():
        return {"missing": True}
    out = subprocess.run([sys.executable, str(script), "--lines", str(lines), "--batch", "1000",
                          "--updates", str(updates), "--latency", "0"],
                         capture_output=True, text=True)
    m = re.search(r"update of (\d+) new lines .*?median ([\d.]+) ms, p90 ([\d.]+) ms",
                  out.stdout)
    if out.returncode or not m:
        return {"failed": (out.stdout + out.stderr)[-1500:]}
    return {"lines": int(m[1]), "median_ms": float(m[2]), "p90_ms": float(m[3]),
            "output": out.stdout.strip()}


# ---------------------------------------------------------------- report


def _row(what: str, value: str, against: str, ratio: str, target: str, ok: bool | None) -> str:
    mark = "" if ok is None else ("ok" if ok else "MISSED")
    return f"| {what} | {value} | {against} | {ratio} | {target} | {mark} |"


def report(sz: Sizes, reads: dict, ana: dict, cp: dict, fleet: dict, helps: dict,
           watch: dict, jobs: int, small: dict | None = None,
           html: dict | None = None) -> None:
    rows = ["| what | losslens | against | ratio | target | |", "|---|---:|---|---:|---|---|"]
    tb, ea, tbp = reads["tb"], reads["ea"], reads["tbparse"]
    ll_eps = tb["events"] / tb["wall_s"]
    for name, r in (("EventAccumulator", ea), ("tbparse", tbp)):
        eps = r["events"] / r["wall_s"]
        rows.append(_row(f"TB read, {tb['events']:,} events (losslens.read)",
                         f"{ll_eps:,.0f} ev/s", f"{name} {eps:,.0f} ev/s "
                         f"({r['events']:,} ev)", f"{ll_eps / eps:.1f}×", "≥ 30× EA",
                         ll_eps / eps >= 30 if name == "EventAccumulator" else None))
    mb, txt = reads["text_mb"], reads["text"]
    base, ll = txt["baseline"], txt["losslens"]
    rows.append(_row(f"Megatron read, {sz.lines:,} lines, {mb:.0f} MB (losslens.read)",
                     f"{mb / ll['wall_s']:.0f} MB/s", f"per-line regex {mb / base['wall_s']:.0f}"
                     " MB/s", f"{base['wall_s'] / ll['wall_s']:.1f}×", "≥ 3×",
                     base["wall_s"] / ll["wall_s"] >= 3))
    for name, label in (("jsonl", f"JSONL {sz.steps:,} steps × 4 series"),
                        ("megatron", f"Megatron {sz.lines:,} lines"),
                        ("tb", f"TensorBoard {sz.steps:,} steps × 4 tags")):
        a = ana[name]
        rx = ana.get(f"{name}_regex")
        ratio = a["wall_s"] / rx["wall_s"] if rx else None
        rows.append(_row(f"`analyze` {label} (whole process, {a['events']} events)",
                         f"{a['wall_s']:.2f} s (cpu {a['cpu_s']:.2f} s)",
                         f"bare regex {rx['wall_s']:.2f} s" if rx else "",
                         f"{ratio:.2f}× the regex" if ratio else "",
                         "≤ 2× regex" if rx else "", ratio <= 2 if ratio else None))
        rows.append(_row(f"`analyze` {label}: peak RSS", f"{a['peak_mb']:,.0f} MB",
                         f"regex {rx['peak_mb']:,.0f} MB" if rx else "", "", "≤ 2 GB",
                         a["peak_mb"] <= 2048))
    rows.append(_row(f"changepoints alone, {sz.steps:,} points", f"{cp['wall_s']:.2f} s",
                     f"(its import {cp['import_s']:.2f} s, apart)", "", "≤ 2 s",
                     cp["wall_s"] <= 2))
    if "median_ms" in watch:
        rows.append(_row(f"`watch` update, {watch['lines']:,} new lines on {sz.watch_lines:,}",
                         f"{watch['median_ms']:.1f} ms (p90 {watch['p90_ms']:.1f})", "", "",
                         "≤ 50 ms", watch["median_ms"] <= 50))
    else:
        rows.append(_row("`watch` update", "not measured", str(watch)[:80], "", "≤ 50 ms", None))
    if small:
        a, pd_ = small["analyze"], small["pandas"]
        r = a["wall_s"] / pd_["wall_s"]
        rows.append(_row("`analyze` a 1,000-line Megatron log (whole process)",
                         f"{a['wall_s']:.2f} s (cpu {a['cpu_s']:.2f} s)",
                         f"python -c 'import pandas' {pd_['wall_s']:.2f} s", f"{r:.2f}×",
                         "≤ 2× import pandas", r <= 2))
    if html:
        rows.append(_row(f"HTML report of a {html['steps']:,}-step run: size",
                         f"{html['bytes'] / 1e6:.2f} MB", "", "", "one offline file", None))
        rows.append(_row(f"HTML report of a {html['steps']:,}-step run: load + draw in "
                         "Chromium", f"{html['render_s']:.2f} s",
                         f"`analyze -f html` {html['analyze_html_s']:.1f} s", "", "≤ 2 s",
                         html["render_s"] <= 2))
    h, py = helps["help"], helps["python"]
    rows.append(_row("`losslens --help`", f"{h['wall_s']:.2f} s (cpu {h['cpu_s']:.2f} s)",
                     f"python -c pass {py['wall_s']:.2f} s", "", "≤ 0.3 s", h["wall_s"] <= 0.3))
    one, many = fleet[1], fleet[jobs]
    rows.append(_row(f"`analyze` folder of {fleet['runs']} runs ({fleet['points']:,} points), "
                     f"--jobs {jobs}", f"{many['wall_s']:.1f} s", f"--jobs 1 {one['wall_s']:.1f} s",
                     f"{one['wall_s'] / many['wall_s']:.2f}× faster",
                     "same JSON", fleet["same"]))
    rows.append(_row("`analyze` folder: peak RSS (parent)", f"{many['peak_mb']:,.0f} MB",
                     f"--jobs 1 {one['peak_mb']:,.0f} MB", "", "", None))
    print("\n".join(rows))
    print(f"\nTB baselines read a {reads['ea']['events']:,}-event file (ratios on events/s). "
          f"Whole-process times include Python start-up and imports. CPUs: {os.cpu_count()}.")
    if "output" in watch:
        print("\nwatch_update.py:\n" + watch["output"])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1/10 of the sizes, 40 runs")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each (median shown)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="for the folder")
    ap.add_argument("--watch-updates", type=int, default=20)
    ap.add_argument("--dir", type=Path, default=None, help="where to write the inputs (kept)")
    ap.add_argument("--small", action="store_true",
                    help="only the small-log row (a 1,000-line log against import pandas)")
    ap.add_argument("--measure", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    sz = Sizes.of(args.quick)
    if args.measure:
        print(json.dumps(_in_process(args.measure[0], args.measure[1:])))
        return
    if args.prepare:
        prepare(args.prepare, sz)
        return
    if args.small:
        with tempfile.TemporaryDirectory(prefix="losslens-bench-") as tmp:
            small = bench_small(Path(tmp), max(5, args.repeat))
        a, p = small["analyze"], small["pandas"]
        print(f"analyze 1,000-line log: {a['wall_s']:.2f} s wall (cpu {a['cpu_s']:.2f} s); "
              f"import pandas: {p['wall_s']:.2f} s (cpu {p['cpu_s']:.2f} s); "
              f"ratio {a['wall_s'] / p['wall_s']:.2f}x (target <= 2x)")
        return
    with tempfile.TemporaryDirectory(prefix="losslens-bench-") as tmp:
        root = args.dir or Path(tmp) / "inputs"
        # written by a child: a parent's peak RSS would count in every child's (ru_maxrss
        # is inherited through fork and exec)
        subprocess.run([sys.executable, __file__, "--prepare", str(root)]
                       + (["--quick"] if args.quick else []), check=True)
        paths = input_paths(root, sz)
        reads = bench_reads(paths, args.repeat)
        ana = bench_analyze(paths, args.repeat, Path(tmp))
        _note("changepoints alone...")
        cp = median_of(args.repeat, lambda: measure_self("changepoint", str(sz.steps)))
        fleet = bench_fleet(paths, max(2, args.jobs), Path(tmp))
        helps = bench_help(max(3, args.repeat))
        small = bench_small(root, max(3, args.repeat))
        html = None
        if report_shots.chromium():
            _note("HTML report of a 1M-step run in Chromium...")
            html = report_shots.html_1m(sz.steps)
        watch = bench_watch(sz.watch_lines, args.watch_updates)
        report(sz, reads, ana, cp, fleet, helps, watch, max(2, args.jobs), small, html)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()

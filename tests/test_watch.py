"""`losslens watch`: following live logs (text and TensorBoard) and reporting events as they come.

The text fixtures are Megatron-LM training lines composed from Megatron-LM's training_log format
(` iteration {:8d}/{:8d} | ... | lm loss: {:.6E} | loss scale: ... |`), validation lines
(` validation loss at iteration N | lm loss value: ... |`) and the resume line
(`successfully loaded checkpoint from {dir} at iteration {N}`).
"""
from __future__ import annotations

import json
import math
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import losslens
from losslens.pipeline import analyze
from losslens.cli import app
from losslens.detectors import DETECTORS, detector_class
from losslens.watch import Follower, follow, run_hook

#: The detectors that declare themselves causal: watch must agree with analyze on these.
CAUSAL = {n for n in DETECTORS if getattr(detector_class(n), "causal", False)}


# ------------------------------------------------------------------------------ fixtures


def megatron(n: int, start: int = 1, spikes=(), nan=(), drops=(), val_every: int = 0,
             diverge_at: int | None = None, seed: int = 0) -> list[str]:
    """`n` Megatron-LM iteration lines from `start`; spikes = (step, factor, length)."""
    rnd = random.Random(seed)
    out, scale = [], 65536.0
    for it in range(start, start + n):
        loss = 2.5 + 8 * math.exp(-it / 2000) + rnd.random() * 0.05
        for s, factor, length in spikes:
            if s <= it < s + length:
                loss *= factor
        if diverge_at is not None and it >= diverge_at:
            loss *= 1 + (it - diverge_at) * 0.01
        if it in drops:
            scale /= 2
        lm = "nan" if it in nan else f"{loss:.6E}"
        out.append(f" iteration {it:8d}/   20000 | consumed samples: {it * 512:12d} | "
                   f"elapsed time per iteration (ms): 1523.4 | learning rate: 3.000000E-04 | "
                   f"global batch size:   512 | lm loss: {lm} | loss scale: {scale} | "
                   f"grad norm: {0.2 + rnd.random():.3f} | number of skipped iterations: "
                   f"{int(it in drops):3d} | number of nan iterations: {int(it in nan):3d} |")
        if val_every and it % val_every == 0:
            out.append(f" validation loss at iteration {it} on validation set | lm loss value: "
                       f"{loss:.6E} | lm loss PPL: {math.exp(min(loss, 20.0)):.6E} | ")
    return out


def append(path: Path, lines: list[str]) -> None:
    with open(path, "a") as fh:
        fh.write("".join(line + "\n" for line in lines))


def key(e) -> tuple:
    return (e.kind, e.tag, e.start_step, e.peak_step, e.end_step, e.severity, e.recovery)


def analyzed(path: Path) -> list[tuple]:
    """The causal events `losslens analyze` finds in the file as it is now."""
    frame = losslens.read(path)
    return sorted(key(e) for e in analyze(frame, detectors=sorted(CAUSAL)).runs[0].events)


def watched(f: Follower, run: str) -> list[tuple]:
    return sorted(key(e) for e in f.events()[run])


# ------------------------------------------------------------------------------ equivalence

SCENARIOS = {
    # a fast spike, a slow one, a level shift that never comes back, NaN, fp16 overflows
    "spikes": megatron(3200, spikes=[(900, 2.0, 2), (1700, 1.5, 300), (2600, 1.3, 5000)],
                       nan=range(1200, 1203), drops={100, 101, 102, 2000}, val_every=100),
    # a resume from an earlier checkpoint (rollback), then a spike and a divergence
    "resume": megatron(1500, seed=1) + [
        "  successfully loaded checkpoint from /ckpt at iteration 1200"]
    + megatron(2000, start=1201, seed=2, spikes=[(2500, 1.8, 3)], diverge_at=2510),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_events_on_every_prefix_equal_analyze(tmp_path, name):
    lines, path = SCENARIOS[name], tmp_path / "train.log"
    path.write_text("")
    rnd, i, checked = random.Random(7), 0, 0
    with Follower(path) as f:
        while i < len(lines):
            j = min(len(lines), i + rnd.choice([1, 9, 80, 700]))
            append(path, lines[i:j])
            i = j
            f.poll()
            if rnd.random() < 0.25 or i == len(lines):
                assert watched(f, "train.log") == analyzed(path), f"after line {i}"
                checked += 1
        frame = losslens.read(path)
        assert f.states["train.log"].segments.segments() == frame.runs[0].segments
    assert checked >= 4
    assert [(k[0], k[1], k[2], k[6]) for k in analyzed(path)] == EXPECTED[name]


EXPECTED = {
    "spikes": [("nonfinite", "lm loss", 1200, None),  # three NaN in a row: no rise, no divergence
               ("nonfinite", "number of nan iterations", 1200, None),
               ("overflow", "loss scale", 100, None), ("overflow", "loss scale", 2000, None),
               ("spike", "lm loss", 900, "fast"), ("spike", "lm loss", 1700, "slow"),
               ("spike", "lm loss", 2600, "none"), ("spike", "lm loss validation", 900, "fast"),
               # the x1.5 hump over 300 steps is also in the validation loss (3 of its 32
               # evals, the 17th to 19th): found since the first points are judged with the
               # points after them (spike_early); the trailing statistic had too few evals
               ("spike", "lm loss validation", 1700, "slow")],
    "resume": [("divergence", "lm loss", 2512, None), ("rollback", "lm loss", 1201, None),
               ("spike", "lm loss", 2500, "fast")],
}


def test_reported_stream_matches_analyze(tmp_path):
    """What was printed (the latest line per event) is what analyze finds at the end."""
    lines, path = SCENARIOS["spikes"], tmp_path / "train.log"
    path.write_text("")
    latest, updates = {}, 0
    with Follower(path) as f:
        for i in range(0, len(lines), 250):
            append(path, lines[i:i + 250])
            for r in f.poll().events:
                updates += r.update
                latest[(r.event.kind, r.event.tag, r.event.start_step)] = r.event
    assert sorted(key(e) for e in latest.values()) == analyzed(path)
    assert updates >= 1  # the slow spike was first seen before it came back


# ------------------------------------------------------------------------------ live file


def test_live_writer_thread_reports_spike_within_a_second(tmp_path):
    path = tmp_path / "live.log"
    lines = megatron(700, spikes=[(650, 2.5, 2)])
    append(path, lines[:600])
    written: dict[int, float] = {}  # last step of each write -> when it was written
    stop = threading.Event()

    def writer() -> None:
        for k in range(600, 700, 5):
            append(path, lines[k:k + 5])
            written[k + 5] = time.monotonic()
            time.sleep(0.05)

    thread = threading.Thread(target=writer)
    seen: list[tuple] = []
    thread.start()
    try:
        for update in follow(path, interval=0.2, stop=stop, timeout=15):
            seen += [(r.event.kind, r.event.start_step, r.event.peak_step, time.monotonic())
                     for r in update.events if not r.update]
            if any(s[0] == "spike" for s in seen):
                stop.set()
    finally:
        thread.join()
    spikes = [s for s in seen if s[0] == "spike"]
    assert [s[1] for s in spikes] == [650]
    line_written = min(t for end, t in written.items() if end >= 650)
    assert spikes[0][3] - line_written <= 1.0


def test_truncated_file_starts_over_as_a_new_segment(tmp_path):
    path = tmp_path / "t.log"
    append(path, megatron(400))
    with Follower(path) as f:
        f.poll()
        path.write_text("")
        append(path, megatron(50, start=101, seed=3))
        u = f.poll()
        assert any("truncated" in n for n in u.notices)
        st = f.states["t.log"]
        # steps 101..150 rewritten in place; the run now stands at 150: the replaced run's
        # 151..400 are kept (`total`) but are not its series
        assert (st.series["lm loss"].n, st.series["lm loss"].total) == (150, 400)
        segs = st.segments.segments()
        assert [(s.first_step, s.last_step, s.reason) for s in segs] == \
            [(1, 400, "start"), (101, 150, "step_back")]
        assert [(e.kind, e.start_step, e.details["from_step"]) for e in f.events()["t.log"]] \
            == [("rollback", 101, 400)]


def test_rotation_reads_the_old_files_rest_then_the_new_file(tmp_path):
    path = tmp_path / "r.log"
    lines = megatron(300)
    append(path, lines[:200])
    with Follower(path) as f:
        f.poll()
        append(path, lines[200:250])  # written just before the rotation
        path.rename(tmp_path / "r.log.1")
        append(path, lines[250:])
        u = f.poll()
        assert any("rotated" in n for n in u.notices)
        st = f.states["r.log"]
        s = st.series["lm loss"]
        assert s.n == 300 and list(s.step[:s.n]) == list(range(1, 301))
        # a new segment at the new file (a header), the step counter going on
        assert [(g.first_step, g.last_step, g.reason) for g in st.segments.segments()] == \
            [(1, 250, "start"), (251, 300, "header")]


def test_deleted_and_recreated_file(tmp_path):
    path = tmp_path / "d.log"
    append(path, megatron(100))
    with Follower(path) as f:
        f.poll()
        path.unlink()
        u = f.poll()
        assert any("deleted" in n for n in u.notices)
        assert f.poll().units == 0
        append(path, megatron(20, start=101, seed=4))
        u = f.poll()
        assert u.units == 20
        assert f.states["d.log"].series["lm loss"].n == 120


def test_half_written_last_line_waits_for_its_newline(tmp_path):
    path = tmp_path / "h.log"
    full = megatron(30)
    append(path, full[:29])
    last = full[29]
    cut = last.index("lm loss: ") + len("lm loss: ") + 3  # inside the number
    with open(path, "a") as fh:
        fh.write(last[:cut])
    with Follower(path) as f:
        assert f.poll().units == 29
        s = f.states["h.log"].series["lm loss"]
        assert s.n == 29
        with open(path, "a") as fh:
            fh.write(last[cut:] + "\n")
        assert f.poll().units == 1
        expected = float(last.split("lm loss: ")[1].split(" ")[0])
        assert s.n == 30 and s.step[29] == 30 and s.value[29] == expected


def test_file_that_does_not_exist_yet_is_waited_for(tmp_path):
    path = tmp_path / "later.log"
    with Follower(path) as f:
        assert "waiting" in f.poll().notices[0]
        append(path, megatron(900, spikes=[(800, 2.0, 1)]))
        assert [(r.event.kind, r.event.start_step) for r in f.poll().events] == [("spike", 800)]


def test_from_end_reports_only_what_comes_later(tmp_path):
    path = tmp_path / "e.log"
    lines = megatron(1600, spikes=[(800, 2.0, 1), (1500, 2.0, 1)])
    append(path, lines[:1000])
    with Follower(path, from_end=True) as f:
        assert f.poll().events == []
        assert [e.start_step for e in f.events()["e.log"]] == [800]
        append(path, lines[1000:])
        got = f.poll().events
    assert [(r.event.kind, r.event.start_step, r.event.id, r.update) for r in got] == \
        [("spike", 1500, "spike-2", False)]


def test_whole_file_format_is_reread_when_it_changes(tmp_path):
    """trainer_state.json is rewritten whole at each save; watch re-reads it."""
    path = tmp_path / "trainer_state.json"
    rnd = random.Random(5)

    def save(last: int) -> None:
        hist = [{"step": s, "loss": (3.0 + rnd.random() * 0.01) * (2.0 if s == 700 else 1.0),
                 "grad_norm": 1.0} for s in range(1, last + 1)]
        path.write_text(json.dumps({"global_step": last, "log_history": hist}))

    save(600)
    with Follower(path) as f:
        assert f.poll().events == []
        assert f.poll().units == 0  # unchanged: not read again
        save(900)
        got = f.poll().events
        assert [(r.event.kind, r.event.tag, r.event.start_step) for r in got] == \
            [("spike", "loss", 700)]
        assert watched(f, "trainer_state.json") == analyzed(path)


# ------------------------------------------------------------------------------ TensorBoard


def _scalar_events(steps, spike_at=None, seed=0):
    from tensorboard.compat.proto import event_pb2, summary_pb2

    rnd = random.Random(seed)
    for s in steps:
        v = 2.0 + 4 * math.exp(-s / 300) + rnd.random() * 0.02
        v *= 2.0 if s == spike_at else 1.0
        yield event_pb2.Event(step=s, wall_time=1.7e9 + s, summary=summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag="train/loss", simple_value=v)]))


def test_tensorboard_folder_appended_records_and_a_second_file(tmp_path):
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    run = tmp_path / "tb"
    run.mkdir()
    w1 = EventFileWriter(str(run))
    for ev in _scalar_events(range(1, 301)):
        w1.add_event(ev)
    w1.flush()
    with Follower(run) as f:
        assert f.poll().events == []
        for ev in _scalar_events(range(301, 601), spike_at=500, seed=1):
            w1.add_event(ev)
        w1.flush()
        got = f.poll().events
        assert [(r.event.kind, r.event.tag, r.event.start_step) for r in got] == \
            [("spike", "train/loss", 500)]
        w1.close()
        w2 = EventFileWriter(str(run))  # a resumed session: new file, steps from 551
        for ev in _scalar_events(range(551, 901), spike_at=800, seed=2):
            w2.add_event(ev)
        w2.close()
        got = f.poll().events
        assert sorted((r.event.kind, r.event.start_step) for r in got) == \
            [("rollback", 551), ("spike", 800)]
        frame = losslens.read(run)
        assert sorted(key(e) for e in f.events()["tb"]) == sorted(
            key(e) for e in analyze(frame, detectors=sorted(CAUSAL)).runs[0].events)
        assert f.states["tb"].segments.segments() == frame.runs[0].segments


def test_tensorboard_record_cut_mid_write_waits(tmp_path):
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    src = tmp_path / "src"
    src.mkdir()
    w = EventFileWriter(str(src))
    for ev in _scalar_events(range(1, 101)):
        w.add_event(ev)
    w.close()
    data = Path(w._file_name).read_bytes()
    live = tmp_path / "live"
    live.mkdir()
    target = live / Path(w._file_name).name
    target.write_bytes(data[:len(data) // 2 + 3])
    with Follower(live) as f:
        first = f.poll().units
        target.write_bytes(data)  # the same file, completed
        second = f.poll().units
        s = f.states["live"].series["train/loss"]
        assert first + second == 101  # the file_version record and 100 scalars, once each
        assert list(s.step[:s.n]) == list(range(1, 101))


# ------------------------------------------------------------------------------ hooks, CLI


def test_on_event_gets_the_event_json_on_stdin(tmp_path, runner):
    path, out = tmp_path / "o.log", tmp_path / "hook.json"
    append(path, megatron(1000, spikes=[(900, 2.0, 1)]))
    hook = f"{sys.executable} -c \"import sys; open(r'{out}', 'a').write(sys.stdin.read())\""
    res = runner.invoke(app, ["watch", str(path), "--once", "--on-event", hook])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert (doc["run"], doc["kind"], doc["tag"], doc["start_step"], doc["id"], doc["update"]) \
        == ("o.log", "spike", "lm loss", 900, "spike-1", False)


def test_failing_or_slow_hook_is_reported_never_fatal(tmp_path):
    payload = json.dumps({"kind": "spike"})
    assert run_hook(f"{sys.executable} -c \"import sys; sys.exit(0)\"", payload) is None
    msg = run_hook(f"{sys.executable} -c \"import sys; sys.stderr.write('boom'); sys.exit(3)\"",
                   payload)
    assert msg is not None and "status 3" in msg and "boom" in msg
    assert "cannot run" in run_hook("/no/such/program", payload)
    slow = run_hook(f"{sys.executable} -c \"import time; time.sleep(5)\"", payload, timeout=0.5)
    assert slow is not None and "did not finish within 0.5 s" in slow


def test_cli_once_text_and_json(tmp_path, runner):
    path = tmp_path / "c.log"
    append(path, megatron(1300, spikes=[(900, 2.0, 1)], nan=(1200,)))
    res = runner.invoke(app, ["watch", str(path), "--once"])
    assert res.exit_code == 0
    assert res.stdout.splitlines() == [
        "step 900  spike  lm loss  x2.00  info  peak 900, back at 901 (fast, 1 steps)",
        "step 1200  nonfinite  lm loss  critical  1 non-finite through step 1200",
        "step 1200  nonfinite  number of nan iterations  critical  1 non-finite through step 1200",
    ]
    res = runner.invoke(app, ["watch", str(path), "--once", "--format", "json"])
    docs = [json.loads(line) for line in res.stdout.splitlines()]
    assert [(d["id"], d["start_step"]) for d in docs] == \
        [("spike-1", 900), ("nonfinite-1", 1200), ("nonfinite-2", 1200)]
    missing = runner.invoke(app, ["watch", str(tmp_path / "nope.log"), "--once"])
    assert missing.exit_code == 2 and "no such file" in missing.stderr


def test_cli_ctrl_c_exits_quietly(tmp_path):
    import select

    path = tmp_path / "k.log"
    append(path, megatron(900, spikes=[(800, 2.0, 1)]))
    # The child must not inherit an ignored SIGINT: a library in the test process can leave
    # SIGINT ignored (Lightning's Trainer does after a KeyboardInterrupt in `fit`), and a child
    # started with SIGINT ignored keeps ignoring it (Python installs its handler only when it
    # is not). In the full suite this watch then never stopped (reproduced by running this test
    # from a parent that ignores SIGINT); a user's shell starts it with SIGINT at its default.
    proc = subprocess.Popen([sys.executable, "-m", "losslens", "watch", str(path),
                             "--interval", "0.1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        first = proc.stdout.readline() if ready else b""  # watch is following by now
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert first.startswith(b"step 800  spike  lm loss")
    assert (proc.returncode, out, err) == (0, b"", b"")


def test_cli_started_with_sigint_ignored_keeps_it_and_stops_on_sigterm(tmp_path):
    """A `&` job of a script (no job control) starts with SIGINT ignored, so that Ctrl-C at
    the terminal stops only the foreground command; watch keeps that, as `tail -f` does
    (Python installs its Ctrl-C handler only where SIGINT is not ignored, and the CLI does
    not undo the shell's choice), and SIGTERM (`kill`) stops it as Ctrl-C would: exit 0,
    nothing on stderr."""
    import select

    path = tmp_path / "k.log"
    append(path, megatron(900, spikes=[(800, 2.0, 1)]))
    proc = subprocess.Popen([sys.executable, "-m", "losslens", "watch", str(path),
                             "--interval", "0.1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        first = proc.stdout.readline() if ready else b""  # watch is following by now
        proc.send_signal(signal.SIGINT)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=1.5)  # ignored, as the shell asked
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert first.startswith(b"step 800  spike  lm loss")
    assert (proc.returncode, out, err) == (0, b"", b"")


# ------------------------------------------------------------------------------ other formats


def _replay(src: Path, dst: Path, sizes: list[int], seed: int = 0):
    """Append `src` to `dst` in pieces of random byte sizes (cut anywhere), polling after each;
    yields the follower after each poll."""
    data, rnd, pos = src.read_bytes(), random.Random(seed), 0
    dst.write_bytes(b"")
    with Follower(dst) as f:
        while pos < len(data):
            nxt = min(len(data), pos + rnd.choice(sizes))
            with open(dst, "ab") as fh:
                fh.write(data[pos:nxt])
            pos = nxt
            f.poll()
            yield f


@pytest.mark.parametrize("name", ["olmo_v1.log", "olmo_core.log", "olmo_core_tty.log",
                                  "fairseq_json.log", "fairseq_simple.log", "metaseq.log"])
def test_line_batches_read_like_the_whole_file(data_dir, tmp_path, name):
    """Formats read a batch of lines at a time (with a few lines of context) give the same
    stitched series as reading the whole file, wherever the batches were cut."""
    dst = tmp_path / name
    for f in _replay(data_dir / "misc" / name, dst, [40, 300, 2000]):
        pass
    frame = losslens.read(dst)
    st = f.states[name]
    assert st.series, "no series of a watched role"
    for tag, s in st.series.items():
        ref = frame.series(name, tag)
        assert list(s.step[:s.n]) == list(ref.step), tag
        assert list(s.value[:s.n]) == pytest.approx(list(ref.value), nan_ok=True), tag


@pytest.mark.parametrize("rel,events", [
    # (one-point x1.5-x2.5 blips of a heavy-tailed grad norm are no longer grad spikes)
    ("llmc-gpt2-stdout-ok/gpt2_train.11685414.log", 18),
    ("llmc-gpt2-124m-mainlog/main.log", 5),
    ("llmc-gpt2-stdout-nan/gpt2_train.11672255.log", 3),
    ("pix2pix-restarts/loss_log.txt", 3),
])
def test_corpus_logs_replayed_in_pieces_equal_analyze(corpus, tmp_path, rel, events):
    src = corpus / rel
    dst = tmp_path / src.name
    checks = 0
    size = src.stat().st_size
    for k, f in enumerate(_replay(src, dst, [size // 40, size // 7, size // 4], seed=3)):
        if k == 2 or dst.stat().st_size == size:
            assert watched(f, src.name) == analyzed(dst)
            checks += 1
    assert len(analyzed(dst)) == events and checks >= 2

"""Structure-aware fuzzing: inputs built to hurt, each case in a forked child with a memory cap.

`benchmarks/fuzz.py` mutates real logs byte by byte; the inputs that broke losslens were
shaped on purpose instead: nesting past any parser, lengths that claim gigabytes, YAML alias
bombs, lone surrogates, shuffled and interleaved lines, control characters in names (terminal
and CI injection), unreadable and vanishing files, files truncated while they are read. Each
category below generates such inputs; every case runs one CLI command in a child forked from
a warm parent, with RLIMIT_AS capped (`--memory-cap`, default 3 GiB), a wall-clock limit, and
its peak RSS (wait4) and time measured.

Failures: `crash` (exit outside 0/1/2, a signal, a traceback), `injection` (a raw ESC or BEL
in stdout, or a line starting with a workflow command the input planted), `slow` (over
`--slow` seconds, default 10), `memory` (peak RSS over `--max-rss`, default 1 GiB).

    python benchmarks/fuzz_structured.py --n 5000 --jobs 2    # per-category table at the end
    python benchmarks/fuzz.py --structured --n 5000 --jobs 2  # the same, from fuzz.py
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import struct
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MARK = "::error::planted"  # a workflow command hidden in names; must never start a line
OSC52 = "\x1b]52;c;ZXZpbA==\x07"

# ---------------------------------------------------------------------------- helpers


def _llmc(n: int, rng: random.Random, start: int = 0) -> list[str]:
    return [f"s:{s} trl:{3 + 8 * 0.999 ** s + rng.gauss(0, 0.02):.4f} lr:0.0006 norm:1.0"
            for s in range(start, start + n)]


def _megatron(n: int, rng: random.Random) -> list[str]:
    return [f" iteration {i:8d}/  100000 | consumed samples: {i * 512:12d} | elapsed time per "
            f"iteration (ms): 1000.0 | learning rate: 1.000E-04 | global batch size:   512 | "
            f"lm loss: {3 + rng.random():.6E} | loss scale: 1.0 | grad norm: 1.000 | number of "
            "skipped iterations:   0 | number of nan iterations:   0 |" for i in range(1, n + 1)]


def _jsonl(n: int, rng: random.Random, key: str = "loss") -> list[str]:
    k = json.dumps(key)
    return [f'{{"step": {i}, {k}: {3 - i / (n + 1) + rng.gauss(0, 0.01):.5f}}}'
            for i in range(n)]


def _nest(depth: int, rng: random.Random) -> str:
    kind = rng.choice(("list", "dict", "mixed"))
    if kind == "list":
        return "[" * depth + "1" + "]" * depth
    if kind == "dict":
        return '{"a": ' * depth + "1" + "}" * depth
    return '[{"a": ' * (depth // 2) + "1" + "}]" * (depth // 2)


def masked_crc(data: bytes) -> int:
    from losslens.readers.tfrecord import crc32c, mask

    return int(mask(crc32c(data))) & 0xFFFFFFFF


# ---------------------------------------------------------------------------- categories
# each returns (files: {relative path: bytes}, target: relative path or "." for the folder)

Files = dict[str, bytes]


def gen_nesting(rng: random.Random) -> tuple[Files, str]:
    depth = rng.choice((65, 500, 1000, 5000, 20_000, 40_000, 100_000))
    deep = _nest(depth, rng)
    lines = _jsonl(rng.randint(5, 200), rng)
    where = rng.randrange(len(lines))
    shape = rng.choice(("jsonl-line", "jsonl-value", "trainer_state", "fairseq", "history",
                        "yaml"))
    if shape == "jsonl-line":
        lines[where] = deep
        return {"m.jsonl": ("\n".join(lines) + "\n").encode()}, "m.jsonl"
    if shape == "jsonl-value":
        lines[where] = f'{{"step": {where}, "x": {deep}}}'
        return {"m.jsonl": ("\n".join(lines) + "\n").encode()}, "m.jsonl"
    if shape == "trainer_state":
        body = '{"log_history": [{"step": 1, "loss": 2.5}, ' + deep + "]}"
        return {"trainer_state.json": body.encode()}, "trainer_state.json"
    if shape == "fairseq":
        text = "".join(f'2023-01-01 12:00:{i % 60:02d} | INFO | train_inner | {{"loss": "'
                       f'{3 - i / 100:.3f}", "num_updates": "{i}"}}\n' for i in range(1, 40))
        text += f"2023-01-01 12:01:00 | INFO | train_inner | {{\"epoch\": {deep}}}\n"
        return {"train.log": text.encode()}, "train.log"
    hist = "".join(f'{{"_step": {i}, "loss": {2 - i / 100}}}\n' for i in range(30))
    if shape == "history":
        hist += f'{{"_step": 31, "loss": {deep}}}\n'
        return {"wandb-history.jsonl": hist.encode()}, "wandb-history.jsonl"
    yaml = "a: " + "[" * min(depth, 50_000) + "]" * min(depth, 50_000) + "\n"
    return {"wandb-history.jsonl": hist.encode(), "config.yaml": yaml.encode()}, "."


def gen_huge_lengths(rng: random.Random) -> tuple[Files, str]:
    shape = rng.choice(("tfrecord-claim", "tfrecord-bogus", "wandb-length", "csv-header",
                        "long-line", "long-tail"))
    if shape.startswith("tfrecord"):
        from fuzz import tensorboard_bytes  # type: ignore[import-not-found]

        good = tensorboard_bytes()
        claim = rng.choice((1 << 28, 1 << 32, (1 << 63) - 1, 1 << 20))
        head = struct.pack("<Q", claim)
        bogus = head + struct.pack("<I", masked_crc(head)) + os.urandom(rng.randint(0, 8192))
        cut = rng.randint(0, len(good))
        if shape == "tfrecord-claim":
            data = good[:cut] + bogus
        else:  # a bogus length with a valid CRC in front of intact records
            data = good[:cut] + bogus + good[cut:]
        return {"events.out.tfevents.1700000000.host": data}, "."
    if shape == "wandb-length":
        from fuzz import wandb_bytes  # type: ignore[import-not-found]

        data = bytearray(wandb_bytes())
        for _ in range(rng.randint(1, 20)):
            at = rng.randrange(7, len(data) - 7)
            data[at + 4:at + 6] = b"\xff\x7f"
        return {"run-x.wandb": bytes(data)}, "run-x.wandb"
    if shape == "csv-header":  # over 1 MB: long names (16k columns) or 400k short ones
        if rng.random() < 0.5:
            head = "step," + ",".join(f"eval/task_{i:06d}/" + "x" * 45 + "/loss"
                                      for i in range(rng.choice((2000, 16_000))))
        else:
            head = "step," + ",".join(f"c{i}" for i in range((3 << 20) // 8))
        return {"m.csv": (head + "\n1,2\n2,3\n").encode()}, "m.csv"
    lines = _megatron(rng.randint(10, 400), rng)
    blob = rng.choice(("9", "x", "[", "{", "\r")) * rng.choice((1 << 20, 4 << 20, 8 << 20))
    if shape == "long-line":
        lines.insert(rng.randrange(len(lines)), blob)
        return {"train.log": ("\n".join(lines) + "\n").encode()}, "train.log"
    return {"train.log": ("\n".join(lines) + "\n" + blob).encode()}, "train.log"


def _alias_bomb(levels: int, width: int) -> str:
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def gen_aliases(rng: random.Random) -> tuple[Files, str]:
    bomb = _alias_bomb(rng.randint(3, 12), rng.randint(2, 12)).encode()
    if rng.random() < 0.5:
        hist = "".join(f'{{"_step": {i}, "loss": {2 - i / 100}}}\n' for i in range(50))
        return {"wandb-history.jsonl": hist.encode(), "config.yaml": bomb}, "."
    rows = "step,train_loss\n" + "".join(f"{i},{2 - i / 100}\n" for i in range(50))
    return {"version_0/metrics.csv": rows.encode(), "version_0/hparams.yaml": bomb}, "."


def gen_surrogates(rng: random.Random) -> tuple[Files, str]:
    shape = rng.choice(("key", "value", "name", "bytes"))
    sur = rng.choice(("\\ud800", "\\udfff", "\\udbff\\udc00x\\ud800", "\\u0000"))
    if shape == "key":
        lines = [f'{{"step": {i}, "loss{sur}": {2 - i / 100}}}' for i in range(30)]
        return {"m.jsonl": ("\n".join(lines) + "\n").encode()}, "m.jsonl"
    if shape == "value":
        lines = [f'{{"step": {i}, "loss": {2 - i / 100}, "note": "{sur}"}}' for i in range(30)]
        return {"m.jsonl": ("\n".join(lines) + "\n").encode()}, "m.jsonl"
    lines = _llmc(rng.randint(20, 300), rng)
    if shape == "name":  # a file name that is not UTF-8 (surrogateescape on the way in)
        return {os.fsdecode(b"run\xff\xfe/main.log"): ("\n".join(lines) + "\n").encode()}, "."
    data = bytearray(("\n".join(lines) + "\n").encode())
    for _ in range(rng.randint(1, 30)):
        data[rng.randrange(len(data))] = rng.choice((0xff, 0xc0, 0xed, 0x80))
    return {"main.log": bytes(data)}, "main.log"


def gen_shuffled(rng: random.Random) -> tuple[Files, str]:
    n = rng.choice((200, 1000, 3000, 5000))
    shape = rng.choice(("llmc", "megatron", "interleaved", "reversed", "jsonl"))
    if shape == "megatron":
        lines = _megatron(n, rng)
    elif shape == "jsonl":
        lines = _jsonl(n, rng)
    elif shape == "interleaved":  # two ranks appending to one file, out of step
        a, b = _llmc(n, rng), _llmc(n, rng, start=rng.randint(-50, 50) + 50)
        lines = [x for pair in zip(a, b) for x in pair]
    else:
        lines = _llmc(n, rng)
    if shape == "reversed":
        lines.reverse()
    elif shape != "interleaved":
        k = rng.choice((len(lines), len(lines) // 10 or 1))  # all, or a tenth of them
        idx = rng.sample(range(len(lines)), k)
        moved = [lines[i] for i in idx]
        rng.shuffle(moved)
        for i, line in zip(idx, moved):
            lines[i] = line
    name = {"megatron": "train.log", "jsonl": "m.jsonl"}.get(shape, "main.log")
    return {name: ("\n".join(lines) + "\n").encode()}, name


CONTROL = (OSC52, "\x1b[2J", "\x1b[31m", f"\n{MARK}", f"\r\n{MARK}", "[/]", "[bold]",
           "=HYPERLINK(\"http://evil\")", "\u202e", "\x00", "\x9b2J", "|a|b|", "<script>", "`")


def gen_control(rng: random.Random) -> tuple[Files, str]:
    bad = "".join(rng.sample(CONTROL, rng.randint(1, 4)))
    shape = rng.choice(("tag", "run", "both"))
    key = f"loss{bad}" if shape in ("tag", "both") else "loss"
    lines = _jsonl(60, rng, key)
    lines += [f'{{"step": {60 + i}, {json.dumps(key)}: 9.0}}' for i in range(3)]
    run = f"run{bad}" if shape in ("run", "both") else "run"
    run = run.replace("/", "_").replace("\x00", "0")
    return {f"{run}/m.jsonl": ("\n".join(lines) + "\n").encode()}, "."


def gen_permission(rng: random.Random) -> tuple[Files, str]:
    lines = ("\n".join(_llmc(100, rng)) + "\n").encode()
    return {"a/main.log": lines, "b/main.log": lines, "c/sub/main.log": lines,
            "#perm": rng.choice(("file", "folder", "search", "link", "fifo", "vanish")).encode()}, "."


def gen_truncation(rng: random.Random) -> tuple[Files, str]:
    shape = rng.choice(("megatron", "llmc", "jsonl", "wandb", "tensorboard"))
    if shape == "megatron":
        name, data = "train.log", ("\n".join(_megatron(rng.randint(2000, 8000), rng)) + "\n")
    elif shape == "llmc":
        name, data = "main.log", "\n".join(_llmc(rng.randint(2000, 8000), rng)) + "\n"
    elif shape == "jsonl":
        name, data = "m.jsonl", "\n".join(_jsonl(rng.randint(2000, 8000), rng)) + "\n"
    elif shape == "wandb":
        from fuzz import wandb_bytes  # type: ignore[import-not-found]

        name, data = "run-x.wandb", wandb_bytes(rng.randint(100, 3000))
    else:
        from fuzz import tensorboard_bytes  # type: ignore[import-not-found]

        name, data = "events.out.tfevents.1700000000.host", tensorboard_bytes()
    raw = data.encode() if isinstance(data, str) else data
    return {name: raw, "#truncate": str(rng.uniform(0, 0.05)).encode()}, name


CATEGORIES: dict[str, Callable[[random.Random], tuple[Files, str]]] = {
    "nesting": gen_nesting, "huge-lengths": gen_huge_lengths, "aliases": gen_aliases,
    "surrogates": gen_surrogates, "shuffled": gen_shuffled, "control-chars": gen_control,
    "permission": gen_permission, "truncation": gen_truncation,
}

#: The commands a case runs, weighted: `series` (read + every output path of the frame) is
#: ~0.1 s, `analyze` and `check` (every detector) ~1 s; one case in 30 runs `--jobs 2`.
COMMANDS = ((["series"], ["series", "-f", "json"], ["series", "-f", "csv"]) * 6
            + (["analyze"], ["analyze", "-f", "json"], ["analyze", "-f", "markdown"],
               ["check"], ["check", "-f", "github"], ["check", "-f", "junit"]) * 2
            + (["analyze", "--jobs", "2"],))

# ---------------------------------------------------------------------------- one case


def _place(folder: Path, files: Files, rng: random.Random) -> tuple[str | None, float | None]:
    """Write the files; returns (permission trick, truncation delay)."""
    trick = files.pop("#perm", b"").decode() or None
    delay = files.pop("#truncate", None)
    for rel, data in files.items():
        p = folder / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    if trick == "file":
        os.chmod(folder / "a" / "main.log", 0)
    elif trick == "folder":
        os.chmod(folder / "c", 0)
    elif trick == "search":
        os.chmod(folder / "c", 0o644)
    elif trick == "link":
        (folder / "a" / "loop.log").symlink_to(folder / "a" / "loop.log")
        (folder / "b" / "dangling.log").symlink_to(folder / "nowhere.log")
    elif trick == "fifo":
        os.mkfifo(folder / "b" / "pipe.log")
    return trick, float(delay) if delay is not None else None


def _child(folder: Path, target: str, command: list[str], trick: str | None,
           delay: float | None, out_fd: int, cap: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    out = _invoke(folder, target, command, trick, delay)
    os.write(out_fd, json.dumps(out).encode())
    os._exit(0)


def _invoke(folder: Path, target: str, command: list[str], trick: str | None,
            delay: float | None) -> dict:
    """One CLI command on the case's input, in this process: verdict, exit, stderr tail."""
    from typer.testing import CliRunner

    from losslens.cli import app

    path = folder / target if target != "." else folder
    if delay is not None:  # truncate (or rewrite shorter) while the command reads
        def cut() -> None:
            time.sleep(delay)
            try:
                os.truncate(path, max(0, path.stat().st_size // random.choice((1, 2, 3, 7))))
            except OSError:
                pass
        threading.Thread(target=cut, daemon=True).start()
    if trick == "vanish":
        threading.Thread(target=lambda: shutil.rmtree(folder / "b", ignore_errors=True),
                         daemon=True).start()
    os.chdir(folder)
    res = CliRunner().invoke(app, [command[0], str(path), *command[1:]])
    stdout, stderr = res.stdout, res.stderr
    verdict = judge(res.exit_code, stdout, stderr, res.exception)
    return {"verdict": verdict, "exit": res.exit_code, "detail": (stderr or "")[-600:]}


def judge(code: int, stdout: str, stderr: str, exc: BaseException | None) -> str:
    if exc is not None and not isinstance(exc, SystemExit):
        return "crash"
    if code not in (0, 1, 2) or "Traceback (most recent call last)" in stdout + stderr:
        return "crash"
    if "\x1b" in stdout or "\x07" in stdout or "\x9b" in stdout:
        return "injection"
    if any(line.startswith(MARK) for line in stdout.splitlines()):
        return "injection"
    if code == 2 and not any(line.startswith("Error: ") for line in stderr.splitlines()):
        return "crash"
    return "ok"


def run_case(index: int, seed: int, timeout: float, cap: int) -> dict:
    category, folder, target, command, trick, delay, size = _prepare(index, seed)
    try:
        r, w = os.pipe()
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                _child(folder, target, command, trick, delay, w, cap)
            finally:
                os._exit(3)
        os.close(w)
        status, rusage = _wait(pid, timeout)
        seconds = time.perf_counter() - start
        raw = b""
        while chunk := os.read(r, 65536):
            raw += chunk
        os.close(r)
        if status is None:
            out = {"verdict": "hang", "exit": None, "detail": ""}
        elif os.WIFSIGNALED(status):
            out = {"verdict": "crash", "exit": -os.WTERMSIG(status), "detail": "signal"}
        else:
            out = json.loads(raw) if raw else {"verdict": "crash", "exit": None,
                                               "detail": "no result"}
        out.update(category=category, command=" ".join(command), seconds=seconds,
                   rss=rusage.ru_maxrss * 1024 if rusage else 0, size=size, index=index)
        return out
    finally:
        _cleanup(folder)


def _prepare(index: int, seed: int) -> tuple[str, Path, str, list[str], str | None,
                                               float | None, int]:
    rng = random.Random(f"{seed}:{index}")
    category = list(CATEGORIES)[index % len(CATEGORIES)]
    files, target = CATEGORIES[category](rng)
    command = rng.choice(COMMANDS)
    folder = Path(tempfile.mkdtemp(prefix="lls-"))
    size = sum(len(v) for k, v in files.items() if not k.startswith("#"))
    try:
        trick, delay = _place(folder, files, rng)
    except BaseException:
        _cleanup(folder)
        raise
    return category, folder, target, command, trick, delay, size


def _cleanup(folder: Path) -> None:
    for p in folder.rglob("*"):
        try:
            os.chmod(p, 0o755, follow_symlinks=False)
        except (OSError, NotImplementedError):
            pass
    try:
        os.chmod(folder, 0o755)
    except OSError:
        pass
    shutil.rmtree(folder, ignore_errors=True)


#: A batch child whose resident set grew past this (kB) hands the rest to a fresh child.
FRESH_CHILD_KB = 400 << 10


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as fh:
        for row in fh:
            if row.startswith(key + ":"):
                return int(row.split()[1])
    return 0


def _peak_rss() -> int:
    """VmHWM of this process in bytes (reset before each case with clear_refs)."""
    return _status_kb("VmHWM") * 1024


class _CaseTimeout(Exception):
    pass


def _batch_child(indices: list[int], seed: int, timeout: float, cap: int, out_fd: int) -> None:
    """Cases one after another in this forked child (memory capped), one JSON line each on
    `out_fd` as it ends; each case's peak RSS from VmHWM reset by /proc/self/clear_refs, a
    case past `timeout` interrupted by SIGALRM (a crash kills the child: the parent re-runs
    the rest of the batch)."""
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    def expired(signum, frame):  # noqa: ARG001
        raise _CaseTimeout()

    signal.signal(signal.SIGALRM, expired)
    home = os.getcwd()
    for index in indices:
        category, folder, target, command, trick, delay, size = _prepare(index, seed)
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
        except OSError:
            pass
        start = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            out = _invoke(folder, target, command, trick, delay)
        except _CaseTimeout:
            out = {"verdict": "hang", "exit": None, "detail": ""}
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        out.update(category=category, command=" ".join(command),
                   seconds=time.perf_counter() - start, rss=_peak_rss(), size=size,
                   index=index)
        os.chdir(home)
        _cleanup(folder)
        os.write(out_fd, (json.dumps(out) + "\n").encode())
        if _status_kb("VmRSS") > FRESH_CHILD_KB:  # a big case leaves memory behind: the next
            break                                  # cases start in a fresh child (true peaks)
    os._exit(0)


def run_batch(indices: list[int], seed: int, timeout: float, cap: int) -> list[dict]:
    """A batch of cases in one forked child; a case that kills the child (a signal, the
    memory cap) is a crash, and the cases after it run in a new child."""
    results: list[dict] = []
    todo = list(indices)
    while todo:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                _batch_child(todo, seed, timeout, cap, w)
            finally:
                os._exit(3)
        os.close(w)
        raw = b""
        while chunk := os.read(r, 1 << 16):
            raw += chunk
        os.close(r)
        _, status = os.waitpid(pid, 0)
        done = [json.loads(ln) for ln in raw.decode().splitlines() if ln.strip()]
        results += done
        todo = todo[len(done):]
        if todo and (os.WIFSIGNALED(status) or os.WEXITSTATUS(status) != 0):
            index = todo.pop(0)  # the case the child died in
            rng = random.Random(f"{seed}:{index}")
            category = list(CATEGORIES)[index % len(CATEGORIES)]
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            results.append({"verdict": "crash", "exit": code, "detail": "the child died",
                            "category": category, "command": "?", "seconds": 0.0,
                            "rss": 0, "size": 0, "index": index})
            del rng
    return results


def _wait(pid: int, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        done, status, rusage = os.wait4(pid, os.WNOHANG)
        if done:
            return status, rusage
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status, rusage = os.wait4(pid, 0)
            return None, rusage
        time.sleep(0.01)


# ---------------------------------------------------------------------------- campaign


#: Cases per forked child in the batch mode (`--batch`).
BATCH = 25


def _worker(args: tuple) -> list[dict]:
    start, stop, step, seed, timeout, cap, stream, batch = args
    indices = list(range(start, stop, step))
    out: list[dict] = []
    size = batch or 1
    for k in range(0, len(indices), size):
        part = indices[k:k + size]
        got = run_batch(part, seed, timeout, cap) if batch else [
            run_case(part[0], seed, timeout, cap)]
        out += got
        if stream:  # one JSON line per case (O_APPEND: whole lines, whichever worker)
            fd = os.open(stream, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(fd, "".join(json.dumps(r) + "\n" for r in got).encode())
            os.close(fd)
    return out


def campaign(n: int, seed: int = 0, jobs: int = 1, timeout: float = 60.0,
             cap: int = 3 << 30, log: Callable[[str], None] = print,
             stream: str | None = None, first: int = 0, batch: int = 0) -> list[dict]:
    """Run cases first..n-1 (jobs forked drivers, each forking one child per case); with
    `stream`, each case's result is appended to that file as it ends."""
    import losslens.cli  # noqa: F401  (warm: every child starts with the CLI imported)
    import pandas  # noqa: F401
    import pyarrow.json  # noqa: F401

    from losslens.pipeline import analyze_frame  # noqa: F401
    import losslens.report.terminal  # noqa: F401
    import ruptures  # noqa: F401
    from losslens.detectors import DETECTORS
    import importlib

    for path in DETECTORS.values():  # the detectors (and ruptures) once, not per case
        importlib.import_module(path.partition(":")[0])
    for mod in ("losslens.readers.table", "losslens.readers.jsonl", "losslens.readers.wandb",
                "losslens.readers.llmc", "losslens.readers.megatron", "losslens.checks",
                "losslens.report.markdown", "yaml"):
        importlib.import_module(mod)

    results: list[dict] = []
    t0 = time.perf_counter()
    if jobs <= 1:
        return _worker((first, n, 1, seed, timeout, cap, stream, batch))
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    chunks = [(first + s, n, jobs, seed, timeout, cap, stream, batch) for s in range(jobs)]
    with ctx.Pool(jobs) as pool:
        for part in pool.imap_unordered(_worker, chunks):
            results += part
    return results


def table(results: list[dict], slow: float, max_rss: int) -> str:
    rows = defaultdict(list)
    for r in results:
        rows[r["category"]].append(r)
    out = ["| category | cases | ok | crash | injection | hang | exit 0/1/2 | slow >"
           f"{slow:g}s | RSS >{max_rss >> 20} MB | max time s | median time s | max RSS MB | "
           "max input MB |", "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for cat in list(CATEGORIES) + ["all"]:
        rs = results if cat == "all" else rows.get(cat, [])
        if not rs:
            continue
        times = sorted(r["seconds"] for r in rs)
        count = lambda v: sum(r["verdict"] == v for r in rs)  # noqa: E731
        exits = "/".join(str(sum(r["exit"] == c for r in rs)) for c in (0, 1, 2))
        out.append(f"| {cat} | {len(rs)} | {count('ok')} | {count('crash')} | "
                   f"{count('injection')} | {count('hang')} | {exits} | "
                   f"{sum(r['seconds'] > slow and r['size'] < 10 << 20 for r in rs)} | "
                   f"{sum(r['rss'] > max_rss and r['size'] < 10 << 20 for r in rs)} | "
                   f"{times[-1]:.2f} | {times[len(times) // 2]:.2f} | "
                   f"{max(r['rss'] for r in rs) / 2**20:.0f} | "
                   f"{max(r['size'] for r in rs) / 2**20:.1f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=800)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=60.0, help="kill a case after this")
    ap.add_argument("--slow", type=float, default=10.0)
    ap.add_argument("--max-rss", type=int, default=1 << 30)
    ap.add_argument("--memory-cap", type=int, default=3 << 30, help="RLIMIT_AS per case")
    ap.add_argument("--failures", type=Path, help="write the failing cases (JSON lines)")
    ap.add_argument("--stream", help="append each case's result to this file (JSON lines) "
                                     "as it ends")
    ap.add_argument("--first", type=int, default=0, help="start at this case index (resume)")
    ap.add_argument("--table", type=Path, help="print the table of a --stream file; no run")
    ap.add_argument("--batch", type=int, default=0,
                    help=f"cases per forked child (0: one child per case; e.g. {BATCH}: "
                         "faster, peak RSS per case from VmHWM reset between cases)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    t0 = time.perf_counter()
    if args.table:
        results = [json.loads(ln) for ln in args.table.read_text().splitlines() if ln.strip()]
        print(f"structured fuzz: {len(results)} cases from {args.table}")
    else:
        results = campaign(args.n, args.seed, args.jobs, args.timeout, args.memory_cap,
                           stream=args.stream, first=args.first, batch=args.batch)
        print(f"structured fuzz: {len(results)} cases, seed {args.seed}, {args.jobs} job(s), "
              f"{time.perf_counter() - t0:.0f} s")
    print(table(results, args.slow, args.max_rss))
    bad = [r for r in results if r["verdict"] != "ok" or r["exit"] not in (0, 1, 2)
           or (r["size"] < 10 << 20 and (r["seconds"] > args.slow or r["rss"] > args.max_rss))]
    for r in bad[:20]:
        print(f"FAIL #{r['index']} {r['category']} `{r['command']}`: {r['verdict']} exit "
              f"{r['exit']} {r['seconds']:.1f} s {r['rss'] >> 20} MB {r['detail'][-300:]!r}")
    if args.failures:
        args.failures.write_text("".join(json.dumps(r) + "\n" for r in bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

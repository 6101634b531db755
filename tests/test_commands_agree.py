"""Must show (one orchestration, one configuration): `analyze`, `check`, `skiplist` and `watch`
on the same logs, with and without a settings file, report the same events and findings.

Every sample log and every corpus log (skipped when ../shared/corpus is absent), each through
the CLI as a user runs it, in a folder with no settings file and in one with a losslens.toml
that raises the spike threshold and ignores spikes:

- `check -f json` has exactly `analyze -f json`'s events and findings, run by run;
- `skiplist -f json` plans exactly the runs whose analysis has a skip plan, with the same
  restart step and ranges (and prints nothing when no run needs one);
- `watch --once -f json` reports, over the whole file, the events of the causal detectors that
  `analyze` reports (each event's last update; `severity` is the diagnosis' in `analyze`, and
  the cross-loss `shared_with`/`isolated` details are not streamed);
- a log that is an error is the same one-line error for every command.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from losslens.cli import app

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
SAMPLES = sorted((ROOT / "sample_logs").glob("*.log"))
CORPUS_LOGS = sorted(p.name for p in CORPUS.iterdir() if p.is_dir()) if CORPUS.is_dir() else []

#: Kinds `watch` reports (the causal detectors'), and event details it does not stream.
CAUSAL = {"spike", "divergence", "nonfinite", "grad_spike", "overflow", "rollback"}
NOT_STREAMED = ("shared_with", "isolated", "all_losses")
SETTINGS = 'ignore-kinds = ["spike"]\n[detectors.spike]\nthreshold = 50\n'


def _json(res) -> dict:
    assert res.exit_code in (0, 1), res.stderr
    return json.loads(res.stdout)


def _watchable(event: dict) -> dict:
    out = {k: v for k, v in event.items() if k not in ("id", "severity", "update", "run")}
    out["details"] = {k: v for k, v in event["details"].items() if k not in NOT_STREAMED}
    return out


def _agree(runner, path: Path, cwd: Path) -> None:
    an = runner.invoke(app, ["analyze", str(path), "-f", "json"])
    ck = runner.invoke(app, ["check", str(path), "-f", "json"])
    sk = runner.invoke(app, ["skiplist", str(path), "-f", "json", "--allow-no-checkpoint"])
    if an.exit_code == 2:  # not a log: the same one-line error everywhere
        error = an.stderr.splitlines()[-1]
        assert error.startswith("Error: ")
        for res in (ck, sk):
            assert (res.exit_code, res.stderr.splitlines()[-1]) == (2, error)
        return
    analysis = _json(an)["runs"]
    checked = _json(ck)["runs"]
    assert [r["run"] for r in checked] == [r["run"] for r in analysis]
    for a, c in zip(analysis, checked):
        assert c["events"] == a["events"], a["run"]
        assert c["findings"] == a["findings"], a["run"]
        failing = {x["name"] for x in c["checks"] if not x["passed"]}
        assert failing == {f["rule"] for f in a["findings"] if f["severity"] == "critical"}
    planned = {a["run"]: a["skip_plan"] for a in analysis if a["skip_plan"]}
    assert sk.exit_code == 0, sk.stderr
    if not planned:
        assert sk.stdout == "" and "Nothing to skip" in sk.stderr
    elif len(planned) == 1 or len(analysis) == 1:
        plans = {p["run"]: p for p in _json(sk)["runs"]}
        assert set(plans) == set(planned)
        for run, plan in planned.items():
            assert plans[run]["restart_from_step"] == plan["restart_from_step"]
            assert plans[run]["skip"] == plan["skip"]
    wt = runner.invoke(app, ["watch", str(path), "--once", "-f", "json"])
    assert wt.exit_code == 0, wt.stderr
    last: dict[tuple[str, str], dict] = {}
    for line in wt.stdout.splitlines():
        e = json.loads(line)
        last[(e["run"], e["id"])] = e
    multi = len(analysis) > 1
    got = sorted((e["run"] if multi else "", json.dumps(_watchable(e), sort_keys=True))
                 for e in last.values())
    want = sorted((a["run"] if multi else "", json.dumps(_watchable(e), sort_keys=True))
                  for a in analysis for e in a["events"] if e["kind"] in CAUSAL)
    assert got == want


@pytest.mark.parametrize("settings", [False, True], ids=["defaults", "settings-file"])
@pytest.mark.parametrize("log", SAMPLES, ids=[p.name for p in SAMPLES])
def test_commands_agree_on_the_sample_logs(runner, tmp_path, monkeypatch, log, settings):
    monkeypatch.chdir(tmp_path)
    if settings:
        (tmp_path / "losslens.toml").write_text(SETTINGS)
    _agree(runner, log, tmp_path)


@pytest.mark.corpus
@pytest.mark.parametrize("settings", [False, True], ids=["defaults", "settings-file"])
@pytest.mark.parametrize("name", CORPUS_LOGS)
def test_commands_agree_on_the_corpus(runner, corpus, tmp_path, monkeypatch, name, settings):
    monkeypatch.chdir(tmp_path)
    if settings:
        (tmp_path / "losslens.toml").write_text(SETTINGS)
    _agree(runner, corpus / name, tmp_path)


@pytest.mark.parametrize("shape", ["epoch-lines", "cr-only"])
def test_commands_agree_on_epoch_lines_and_cr_only_logs(runner, tmp_path, monkeypatch, shape):
    """A script's own epoch lines (a spike at epoch 120, NaN from 190), and the Megatron sample
    with bare `\\r` line ends (watch follows such a file's `\\r` lines too)."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "training.log"
    if shape == "epoch-lines":
        lines = []
        for e in range(1, 201):
            loss = 2.0 * 0.99 ** e + (3.0 if e == 120 else 0.0)
            text = "nan" if e >= 190 else f"{loss:.4f}"
            lines.append(f"2025-04-24 21:17:53,828 - INFO - Epoch [{e}/200], Train Loss: {text}, "
                         f"Val Loss: {loss + 0.1:.4f}")
        path.write_text("\n".join(lines) + "\n")
    else:
        sample = ROOT / "sample_logs" / "megatron_gpt_spikes.log"
        path.write_bytes(sample.read_bytes().replace(b"\n", b"\r"))
    res = runner.invoke(app, ["analyze", str(path), "-f", "json"])
    assert _json(res)["runs"][0]["events"]  # something to agree on
    _agree(runner, path, tmp_path)


@pytest.mark.parametrize("shape", ["nanogpt-bpc", "deepspeed-chat-sft", "loguru-step-lines"])
def test_commands_agree_on_units_chat_evaluations_and_step_lines(runner, tmp_path, monkeypatch,
                                                                  shape):
    """A nanoGPT fork's BPC output (real: val loss rising from step 1250), DeepSpeed-Chat's SFT
    log (real: `ppl:` after each epoch among fp16 overflows) and a script's loguru step lines
    (a spike at step 6000, NaN from 9000)."""
    monkeypatch.chdir(tmp_path)
    data = ROOT / "tests" / "data" / "real_excerpts"
    if shape == "nanogpt-bpc":
        path = data / "nanogpt-bpc_kt2awly2_output.log"
    elif shape == "deepspeed-chat-sft":
        path = data / "deepspeed-chat_step1_opt-1.3b.log"
    else:
        path = tmp_path / "pretrain.log"
        lines = []
        for step in range(100, 10001, 100):
            loss = 6.0 * 0.9997 ** step + (2.0 if step == 6000 else 0.0)
            text = "nan" if step >= 9000 else f"{loss:.4f}"
            lines.append(f"2026-02-03 13:24:36.939 | INFO     | __main__:train:172 - "
                         f"Step {step}, Loss: {text}")
        path.write_text("\n".join(lines) + "\n")
    res = runner.invoke(app, ["analyze", str(path), "-f", "json"])
    assert _json(res)["runs"][0]["events"]  # something to agree on
    _agree(runner, path, tmp_path)


def test_the_settings_file_changes_what_every_command_sees(runner, tmp_path, monkeypatch):
    """The settings case above is not vacuous: the sample's spikes are there without it."""
    monkeypatch.chdir(tmp_path)
    log = ROOT / "sample_logs" / "megatron_gpt_spikes.log"
    kinds = [e["kind"] for e in _json(runner.invoke(app, ["analyze", str(log), "-f", "json"]))
             ["runs"][0]["events"]]
    assert "spike" in kinds
    (tmp_path / "losslens.toml").write_text(SETTINGS)
    kinds = [e["kind"] for e in _json(runner.invoke(app, ["analyze", str(log), "-f", "json"]))
             ["runs"][0]["events"]]
    assert "spike" not in kinds


@pytest.mark.parametrize("shape", ["step-pipes", "step-pipes-gz"])
def test_commands_agree_on_step_pipe_lines(runner, tmp_path, monkeypatch, shape):
    """A script's own `step N | name value | ...` lines: a spike at step 6000 that recovers, the
    loss jumping tenfold after a resume at 9000 and staying there, `[eval]` lines, and its
    own save lines (the skip plan restarts from one)."""
    monkeypatch.chdir(tmp_path)
    lines = ["Max steps               : 20,000", "Checkpoint every        : 150 steps"]
    for step in range(0, 12001, 10):
        if step == 9000:
            lines.append("[Checkpoint] resumed from ./checkpoints/latest.pt at step 9000")
        loss = 6.0 * 0.9998 ** step + (2.0 if step == 6000 else 0.0)
        loss = loss * 10 if step > 9000 else loss
        lines.append(f"step {step:7d} | loss {loss:.4f} | lr {3e-4:.2e} | grad {0.3:.3f} | "
                     f"{113.4:.1f}k tok/s | mfu {41.2:.2f}%")
        if step and step % 500 == 0:
            lines.append(f"  [eval] step {step:7d} | val_loss {loss + 0.1:.4f}")
        if step and step % 150 == 0:
            lines.append(f"[Checkpoint] saved ./checkpoints/ckpt_step{step:07d}.pt")
    text = "\n".join(lines) + "\n"
    path = tmp_path / "train.out"
    if shape == "step-pipes-gz":
        import gzip

        path = tmp_path / "train.out.gz"
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    res = runner.invoke(app, ["analyze", str(path), "-f", "json"])
    run = _json(res)["runs"][0]
    assert run["events"] and run["skip_plan"]["restart_from_step"] % 150 == 0
    _agree(runner, path, tmp_path)


@pytest.mark.parametrize("shape", ["history-json", "epoch-pipes", "nul-prefixed", "grpo"])
def test_commands_agree_on_this_sessions_dialects(runner, tmp_path, monkeypatch, shape):
    """A Keras-style history.json (a spike at epoch 60 that recovers), PyTorch examples' word
    language model output whose loss turns NaN, a step-pipes log emptied while written (a
    NUL prefix), and a GRPO script's loss sentences: every command, the same events."""
    import math

    monkeypatch.chdir(tmp_path)
    if shape == "history-json":
        loss = [3.0 * 0.97 ** e + (1.5 if e == 60 else 0.0) for e in range(120)]
        path = tmp_path / "history.json"
        path.write_text(json.dumps({"loss": loss, "val_loss": [v + 0.2 for v in loss]}))
    elif shape == "epoch-pipes":
        lines = []
        for epoch in (1, 2, 3):
            for batch in range(200, 3000, 200):
                cur = 6.0 - 0.05 * (epoch * 15 + batch / 200) if epoch < 3 else float("nan")
                ppl = math.exp(cur) if math.isfinite(cur) else cur
                lines.append('| epoch {:3d} | {:5d}/{:5d} batches | lr {:02.2f} | ms/batch {:5.2f} | '
                             'loss {:5.2f} | ppl {:8.2f}'.format(epoch, batch, 2983, 20.0, 11.6,
                                                                 cur, ppl))
            lines.append('| end of epoch {:3d} | time: {:5.2f}s | valid loss {:5.2f} | '
                         'valid ppl {:8.2f}'.format(epoch, 35.5, 5.5, 244.69))
        path = tmp_path / "train.log"
        path.write_text("\n".join(lines) + "\n")
    elif shape == "nul-prefixed":
        body = "".join(f"step {s:6d} | loss {4.0 * 0.999 ** s + (3.0 if s == 600 else 0):.4f} | "
                       f"lr {3e-4:.2e}\n" for s in range(0, 1500, 10))
        path = tmp_path / "train.log"
        path.write_bytes(b"\0" * 5000 + body.encode())
    else:
        lines = ["", "=== Epoch 1/1 ==="]
        for k in range(1, 200):
            lines.append(f"grpo_loss is {0.01 * math.sin(k) + (0.5 if k == 120 else 0)} "
                         f"and kl is {0.001 * k}")
            if k % 25 == 0:
                lines.append(f"[step {k}] avg_loss={0.001:.4f} acc={0.9:.4f}")
        path = tmp_path / "train.log"
        path.write_text("\n".join(lines) + "\n")
    res = runner.invoke(app, ["analyze", str(path), "-f", "json"])
    run = _json(res)["runs"][0]
    assert run["format"] == {"history-json": "history-json", "epoch-pipes": "epoch-pipes",
                             "nul-prefixed": "step-pipes", "grpo": "epoch-lines"}[shape]
    if shape == "epoch-pipes":
        assert any(e["kind"] == "nonfinite" for e in run["events"])
    _agree(runner, path, tmp_path)

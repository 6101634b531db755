"""Replay: plug-in loading, probes and verdicts, on tiny CPU models.

End to end, from the examples/ that write their own log and checkpoints: the tiny GPT on real
text trained briefly with an injected bad batch (→ bad_batch, and the corrupted rows are the
samples to look at) and with a simulated silent data corruption (→ not_reproducible);
full-batch Adam spiking on its own state (→ optimizer_state); attention whose Q·K overflows
fp16 (→ numerics, naming the module). Also a tiny MLP whose fp16 forward overflows on one
batch (→ numerics). The verdict logic itself is tested on numbers.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

try:
    import torch
except ImportError:  # the verdict logic is tested without torch (test_replay_verdicts.py)
    torch = None

from typer.testing import CliRunner  # noqa: E402

from losslens.cli import app  # noqa: E402
from losslens.errors import LossLensError  # noqa: E402
from losslens.replay import PluginError, load_plugin, replay  # noqa: E402
from losslens.replay.options import Options  # noqa: E402

pytestmark = pytest.mark.skipif(torch is None, reason="replay runs need torch "
                                "(pip install 'losslens[replay]')")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PLUGIN = str(EXAMPLES / "tiny_gpt_plugin.py")
SMALL = {"steps": 100, "ckpt_every": 20, "bad_step": 70, "sdc_step": 90}


def _train(folder: Path, scenario: str) -> Path:
    sys.path.insert(0, str(EXAMPLES))
    try:
        import make_tiny_run
        import tiny_gpt_plugin
    finally:
        sys.path.remove(str(EXAMPLES))
    threads = torch.get_num_threads()
    try:
        return make_tiny_run.train(folder, {**tiny_gpt_plugin.DEFAULTS, **SMALL,
                                            "scenario": scenario})
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("tiny")
    return {s: _train(base / s, s).parent for s in ("bad_batch", "sdc")}


@pytest.fixture
def restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


# --------------------------------------------------------------------------- end to end

def test_bad_batch_via_cli_and_analysis_json(runs, monkeypatch, restore_threads, tmp_path):
    run = runs["bad_batch"]
    monkeypatch.setenv("LOSSLENS_TINY_RUN", str(run))
    cli = CliRunner()
    res = cli.invoke(app, ["analyze", str(run / "train.log"), "--format", "json"])
    assert res.exit_code == 0, res.output
    (tmp_path / "a.json").write_text(res.stdout)
    res = cli.invoke(app, ["replay", "--plugin", PLUGIN, "--analysis", str(tmp_path / "a.json"),
                           "--format", "json", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["schema"] == "losslens.replay/1"
    assert doc["checkpoints"] == [0, 20, 40, 60, 80, 100]
    # on CPU only when asked (--deterministic): CPU kernels repeat at a fixed thread count
    assert doc["determinism"]["deterministic_algorithms"] is False
    assert doc["determinism"]["cpu_threads"]["threads"] >= 1
    [r] = doc["results"]
    assert (r["event"]["id"], r["event"]["kind"], r["flagged_steps"]) == ("spike-1", "spike",
                                                                        [70, 70])
    assert r["verdict"] == "bad_batch"
    assert (r["checkpoint"], r["earlier_checkpoint"], r["replayed_steps"]) == (60, 40, [61, 70])
    m = r["measurements"]
    assert m["preflight"]["bitwise"] is True and m["preflight"]["step"] == 61
    assert m["replay"]["check"]["shows"] is True
    assert m["counterfactuals"]["substitute"]["check"]["shows"] is False
    # PaLM's ablation from the earlier checkpoints (not from 0, the initialisation)
    assert [(e["checkpoint"], e["check"]["shows"]) for e in m["counterfactuals"]["earlier"]] == [
        (40, True), (20, None)]  # from 20 (loss still falling) only in part
    assert m["counterfactuals"]["substitute"]["identical_to_flagged"] is False
    assert m["counterfactuals"]["reruns"] == {"runs": 2, "show_event": 2,
                                              "bitwise_equal_losses": 2}
    assert m["level"]["from"] == "the replayed steps before the event"
    assert r["cause"] == "data"
    assert [s["step"] for s in m["replay"]["steps"]] == list(range(61, 71))
    assert m["level"]["neighbour_steps"] == list(range(71, 79))
    # the corrupted rows are the samples to look at, with their dataset ids
    top = r["samples"][:6]
    assert sorted(s["index"] for s in top) == [1, 2, 5, 9, 13, 14]
    assert sorted(s["sample_id"] for s in top) == [69 * 16 + i for i in (1, 2, 5, 9, 13, 14)]
    assert all(s["loss_z"] > 6 for s in top) and r["samples"][6]["loss_z"] < 3
    assert m["static"]["per_sample_method"] == ["vmap"]
    step70 = m["replay"]["steps"][-1]
    assert step70["attn_logit_absmax"] > 0 and step70["act_absmax_module"]
    assert 0 < step70["update_rms_over_lr"] < 2
    cost = m["cost"]
    assert cost["forward_backward_s"] > 0 and cost["replay_step_ratio"] > 0.5


def test_sdc_is_not_reproducible_from_the_log(runs, monkeypatch, restore_threads):
    run = runs["sdc"]
    monkeypatch.setenv("LOSSLENS_TINY_RUN", str(run))
    rep = replay(PLUGIN, run / "train.log", device="cpu")
    # the loss spike and its grad-norm spike overlap: one replay answers both
    assert [r.event.id for r in rep.results] == ["spike-1"]
    [r] = rep.results
    assert r.verdict == "not_reproducible"
    assert (r.checkpoint, r.flagged) == (80, (90, 90))
    assert r.measurements["log"]["match"] is True
    assert r.measurements["log"]["compared_steps"] == 9
    assert r.measurements["log"]["max_rel_diff"] < 1e-5
    assert "counterfactuals" not in r.measurements
    assert r.evidence[-3].startswith("the replay matches the log at 9 logged step(s) before the "
                                     "event (worst relative difference ")
    assert r.evidence[-1].startswith("at the event the log printed ")
    assert r.evidence[-1].endswith(": different")
    assert r.measurements["log"]["event_match"] is False


def _example(name: str):
    """An example module (trainer and plug-in in one file), imported from examples/."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_adam_example_is_optimizer_state(tmp_path, monkeypatch, restore_threads):
    """Full-batch Adam to ~1e-30: the spike at 11920 comes from Adam's state (Molybog)."""
    _example("adam_spike").train(tmp_path)
    monkeypatch.setenv("LOSSLENS_ADAM_RUN", str(tmp_path))
    rep = replay(str(EXAMPLES / "adam_spike.py"), tmp_path / "train.log", device="cpu")
    # the grad-norm spikes in the loss spike's recovery are folded into it
    [r] = rep.results
    assert (r.event.id, r.flagged, r.checkpoint) == ("spike-1", (11920, 11932), 11900)
    assert r.verdict == "optimizer_state"
    m = r.measurements
    assert m["preflight"]["bitwise"] is True and m["log"]["match"] is True
    assert m["replay"]["check"]["shows"] is True and m["replay"]["check"]["ratio"] > 1000
    assert m["adam"]["update_rms_over_lr_jump"] > 100
    assert m["cost"]["replay_step_ratio"] > 0
    assert any(e.startswith("optimizer: update RMS/lr ×") for e in r.evidence)
    # there is only the full batch: the "other batches" are the flagged one, which trained
    # harmlessly at every step before the spike
    cf = m["counterfactuals"]
    assert cf["substitute"]["identical_to_flagged"] is True
    assert ("the flagged batches are the same as those of steps 11901–11919, which trained "
            "without the event: the data alone cannot cause it") in r.evidence


def test_adam_idle_example_is_batch_state_interaction(tmp_path, monkeypatch, restore_threads):
    """An idle weight drifts under weight decay while Adam's v decays; a normal block of data
    then spikes ×38 — and is harmless from a checkpoint where the weight was in place."""
    _example("adam_idle").train(tmp_path)
    monkeypatch.setenv("LOSSLENS_IDLE_RUN", str(tmp_path))
    rep = replay(str(EXAMPLES / "adam_idle.py"), tmp_path / "train.log", device="cpu")
    [r] = rep.results
    assert (r.event.id, r.flagged, r.checkpoint) == ("spike-1", (2501, 2504), 2500)
    assert (r.verdict, r.cause) == ("batch_state_interaction", "state")
    m = r.measurements
    assert m["log"]["event_match"] is True  # the replay gives the logged spike, bit for bit
    assert m["counterfactuals"]["substitute"]["check"]["shows"] is False
    assert [(e["checkpoint"], e["check"]["shows"]) for e in m["counterfactuals"]["earlier"]] == [
        (2000, True), (1500, False)]
    # an untrained state (loss far above the pre-event level) is not PaLM's comparison
    assert m["counterfactuals"]["earlier_not_tried"]["checkpoints"] == [500]
    assert ("the same batches spike from checkpoint(s) 2000 and are harmless from 1500: "
            "they hurt only some states") in r.evidence
    assert r.contributing[0].startswith("data: the flagged batches are loss outliers")


def test_fp16_attention_example_is_numerics(tmp_path, monkeypatch, restore_threads):
    """Q·K overflows fp16 before the 1/sqrt(d) scaling at iteration 150; fp32 is finite."""
    _example("fp16_attention").train(tmp_path)
    monkeypatch.setenv("LOSSLENS_FP16_RUN", str(tmp_path))
    cli = CliRunner()
    res = cli.invoke(app, ["replay", "--plugin", str(EXAMPLES / "fp16_attention.py"),
                           str(tmp_path / "train.log"), "--device", "cpu", "--format", "json"])
    assert res.exit_code == 0, res.output
    [r] = json.loads(res.stdout)["results"]  # the overflow and NaN-count events fold into it
    assert (r["event"]["id"], r["flagged_steps"], r["checkpoint"]) == ("nonfinite-1", [150, 150],
                                                                     100)
    assert r["verdict"] == "numerics"
    steps = r["measurements"]["replay"]["steps"]
    assert steps[-1]["step"] == 150 and steps[-1]["skipped"] is True
    assert steps[-1]["first_nonfinite_module"] == "attn.attn_logits"
    assert all(s["first_nonfinite_module"] is None for s in steps[:-1])
    fp32 = r["measurements"]["counterfactuals"]["fp32"]
    assert fp32["check"]["nonfinite"] is False and fp32["run_dtype"] == "float16"
    assert ("the event needs the run's precision (float16); first non-finite output: "
            "attn.attn_logits") in r["evidence"]
    # the ×200 batch is a data outlier as well: kept as contributing evidence, not hidden
    assert r["cause"] == "precision"
    assert r["contributing"][-1] == "data/state counterfactuals alone would say bad_batch"
    assert r["contributing"][0].startswith("data: the flagged batches are loss outliers")


NUMERICS_PLUGIN = '''
import torch, torch.nn as nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))

def build_model(device):
    torch.manual_seed(0)
    return Net().to(device)

def build_optimizer(model):
    return torch.optim.Adam(model.parameters(), lr=1e-3)

def checkpoints():
    return [0, 5]

def load_checkpoint(step, model, optimizer=None):
    torch.manual_seed(step)
    for p in model.parameters():
        nn.init.normal_(p, std=0.5)
    if optimizer is not None:
        optimizer.state.clear()

def get_batch(step):
    g = torch.Generator().manual_seed(step)
    x = torch.randn(8, 4, generator=g)
    y = x.sum(1, keepdim=True)
    if step == 8:
        x = x * 1e5   # finite in fp32, overflows fp16 in fc1
    return x, y

def loss_fn(model, batch):
    x, y = batch
    return ((model(x).float() - y) ** 2).mean(1)

autocast_dtype = torch.float16
'''


def _doc(kind: str, start: int, end: int | None = None, magnitude=None) -> dict:
    return {"schema": "losslens.analysis/1", "version": "0", "runs": [{
        "run": "r", "series": [{"tag": "loss", "role": "train_loss"}],
        "events": [{"id": f"{kind}-1", "kind": kind, "tag": "loss", "start_step": start,
                    "peak_step": start if kind == "spike" else None, "end_step": end,
                    "magnitude": magnitude}], "skip_plan": None}]}


def test_fp16_overflow_is_numerics_and_names_the_module(tmp_path, restore_threads):
    path = tmp_path / "mlp_plugin.py"
    path.write_text(NUMERICS_PLUGIN)
    rep = replay(str(path), _doc("nonfinite", 8, 8), device="cpu")
    [r] = rep.results
    assert r.verdict == "numerics"
    assert r.checkpoint == 5 and r.earlier_checkpoint is None  # 0 is the initialisation
    steps = r.measurements["replay"]["steps"]
    assert [s["step"] for s in steps] == [6, 7, 8]
    assert steps[-1]["skipped"] is True and steps[-1]["first_nonfinite_module"] == "fc1"
    assert steps[0]["first_nonfinite_module"] is None
    fp32 = r.measurements["counterfactuals"]["fp32"]
    assert fp32["run_dtype"] == "float16" and fp32["check"]["nonfinite"] is False
    assert any("first non-finite output: fc1" in e for e in r.evidence)
    # per-sample probes on a (x, y) tuple batch: the scaled rows all stand out
    assert r.samples[0]["step"] == 8 and r.samples[0]["loss_z"] > 100


def test_without_an_optimizer_steps_are_evaluated_without_updates(tmp_path, restore_threads):
    path = tmp_path / "p.py"
    path.write_text(NUMERICS_PLUGIN.replace("def build_optimizer(model):\n"
                                            "    return torch.optim.Adam(model.parameters(), "
                                            "lr=1e-3)\n", ""))
    [r] = replay(str(path), _doc("nonfinite", 8, 8), device="cpu").results
    assert r.verdict == "numerics"
    assert r.evidence[0] == ("the plug-in has no build_optimizer: the steps are evaluated at "
                             "the checkpoint's weights without updates")
    steps = r.measurements["replay"]["steps"]
    assert all(s["update_rms_over_lr"] is None for s in steps)
    assert r.measurements["adam"]["update_rms_over_lr_jump"] is None


@pytest.mark.parametrize("noise, verdict", [(1e-6, "numerics"), (0.5, "inconclusive")])
def test_preflight_measures_nondeterminism(tmp_path, restore_threads, noise, verdict):
    path = tmp_path / "p.py"
    # Python's random is not restored by load_checkpoint: two runs of a step differ
    path.write_text("import random\n_rng = random.Random(1)\n" + NUMERICS_PLUGIN.replace(
        "return ((model(x).float() - y) ** 2).mean(1)",
        f"return ((model(x).float() - y) ** 2).mean(1) * (1 + {noise} * _rng.random())"))
    [r] = replay(str(path), _doc("nonfinite", 8, 8), device="cpu").results
    pf = r.measurements["preflight"]
    assert pf["bitwise"] is False and pf["step"] == 6
    assert 0 < pf["loss_rel_diff"] <= noise
    assert r.verdict == verdict
    assert any("differ by" in e and "that is the tolerance" in e for e in r.evidence)
    if verdict == "inconclusive":
        assert r.evidence[-2] == "replay is not deterministic enough to judge (> 0.01)"
        assert r.evidence[-1].startswith("counterfactuals not run")


def test_cli_events_option(tmp_path, restore_threads):
    path = tmp_path / "p.py"
    path.write_text(NUMERICS_PLUGIN)
    (tmp_path / "a.json").write_text(json.dumps(_doc("nonfinite", 8, 8)))
    cli = CliRunner()
    res = cli.invoke(app, ["replay", "--plugin", str(path), "--analysis", str(tmp_path / "a.json"),
                           "--events", "nonfinite-1,spike-9"])
    assert res.exit_code == 2
    assert res.stderr == "Error: --events: no event spike-9 (events: nonfinite-1)\n"
    res = cli.invoke(app, ["replay", "--plugin", str(path), "--analysis", str(tmp_path / "a.json"),
                           "-e", "nonfinite-1", "--no-counterfactuals", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    out = res.stdout
    # without counterfactuals a reproduced event cannot be attributed
    assert "nonfinite-1 → inconclusive" in out
    assert "replay from checkpoint 5: non-finite values at the flagged steps" in out


# --------------------------------------------------------------------------- plug-ins

def test_plugin_missing_functions_one_line(tmp_path):
    path = tmp_path / "p.py"
    path.write_text("def build_model(device):\n    pass\ndef loss_fn(model):\n    pass\n")
    with pytest.raises(PluginError) as exc:
        load_plugin(str(path))
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg == (f"plugin {path}: missing checkpoints(), load_checkpoint(step, model, "
                   "optimizer=None), get_batch(step) (see docs/replay.md)")
    path.write_text(NUMERICS_PLUGIN.replace("def loss_fn(model, batch):", "def loss_fn(model):"))
    with pytest.raises(PluginError, match=r"must be functions taking loss_fn\(model, batch\)$"):
        load_plugin(str(path))


def test_plugin_import_errors(tmp_path, monkeypatch):
    with pytest.raises(PluginError, match="nope.py: file not found"):
        load_plugin(str(tmp_path / "nope.py"))
    with pytest.raises(PluginError, match="no_such_plugin_mod: no such module"):
        load_plugin("no_such_plugin_mod")
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(PluginError, match=r"import failed: RuntimeError: boom"):
        load_plugin(str(tmp_path / "broken.py"))
    (tmp_path / "good_mod_for_replay.py").write_text(NUMERICS_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    plug = load_plugin("good_mod_for_replay")
    assert plug.call("checkpoints") == [0, 5]
    assert plug.value("autocast_dtype") is torch.float16


def test_plugin_failures_name_the_hook(tmp_path, restore_threads):
    path = tmp_path / "p.py"
    path.write_text(NUMERICS_PLUGIN.replace("    g = torch.Generator()",
                                            "    if step == 7:\n        raise KeyError('shard 3')\n"
                                            "    g = torch.Generator()"))
    with pytest.raises(PluginError, match=r"get_batch\(7\) raised KeyError: 'shard 3'"):
        replay(str(path), _doc("nonfinite", 8, 8), device="cpu")
    path.write_text(NUMERICS_PLUGIN.replace("return [0, 5]", "return []"))
    with pytest.raises(PluginError, match=r"checkpoints\(\) returned no checkpoint"):
        replay(str(path), _doc("nonfinite", 8, 8), device="cpu")
    path.write_text(NUMERICS_PLUGIN.replace(".mean(1)", ".mean()"))
    with pytest.raises(PluginError, match=r"per-sample losses, Tensor\[n\]; got \(\)"):
        replay(str(path), _doc("nonfinite", 8, 8), device="cpu")


def test_no_checkpoint_before_the_event_is_inconclusive(tmp_path, restore_threads):
    path = tmp_path / "p.py"
    path.write_text(NUMERICS_PLUGIN.replace("return [0, 5]", "return [9]"))
    [r] = replay(str(path), _doc("nonfinite", 8, 8), device="cpu").results
    assert r.verdict == "inconclusive"
    assert r.evidence == ["no checkpoint before step 8: nothing to replay from"]
    path.write_text(NUMERICS_PLUGIN)
    opts = Options(max_steps=2)
    [r] = replay(str(path), _doc("nonfinite", 8, 8), device="cpu", options=opts).results
    assert r.verdict == "inconclusive" and "raise --max-steps (now 2)" in r.evidence[0]


def test_vmap_and_loop_per_sample_grads_agree(tmp_path, restore_threads):
    from losslens.replay.engine import Session
    from losslens.replay.persample import per_sample

    path = tmp_path / "p.py"
    path.write_text(NUMERICS_PLUGIN)
    session = Session(load_plugin(str(path)), torch.device("cpu"))
    session.load(5)
    batch = session.batch(3)
    fast = per_sample(session, batch)
    path.write_text(NUMERICS_PLUGIN + "\ndef select(batch, idx):\n"
                    "    return tuple(t[idx] for t in batch)\n")
    session2 = Session(load_plugin(str(path)), torch.device("cpu"))
    session2.load(5)
    slow = per_sample(session2, batch)
    assert (fast.method, slow.method) == ("vmap", "loop")
    assert fast.losses == slow.losses
    assert fast.grad_norms == pytest.approx(slow.grad_norms, rel=1e-5)
    # by hand: sample 3 alone
    x, y = batch
    model = session.model
    model.zero_grad()
    ((model(x[3:4]) - y[3:4]) ** 2).sum().backward()
    norm = math.sqrt(sum(float((p.grad ** 2).sum()) for p in model.parameters()))
    assert fast.grad_norms[3] == pytest.approx(norm, rel=1e-5)
    session.close()
    session2.close()


def test_adam_first_step_update_is_sign_like():
    from losslens.replay.engine import adam_outlier_share, update_rms_over_lr

    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0, 0.5]))
    opt = torch.optim.Adam([p], lr=0.1, eps=1e-12)
    p.grad = torch.tensor([0.3, -0.001, 5.0, -2.0])
    assert adam_outlier_share(opt) is None  # no second moment yet
    before = [p.detach().clone()]
    opt.step()
    # first Adam step: m̂/√v̂ = sign(g), every coordinate moves a full lr
    assert update_rms_over_lr(opt, [p], before, [0.1]) == pytest.approx(1.0, rel=1e-5)
    p.grad = torch.tensor([0.3, -0.001 * 50, 5.0, -2.0 * 11])
    # coordinates 1 and 3 are now > 10 x sqrt(v̂)
    assert adam_outlier_share(opt) == pytest.approx(0.5)


def test_analysis_document_errors(tmp_path, restore_threads):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"schema": "something/2"}))
    res = CliRunner().invoke(app, ["replay", "--plugin", PLUGIN, "--analysis", str(bad)])
    assert res.exit_code == 2
    assert res.output.strip().splitlines()[-1] == (
        f"Error: --analysis {bad}: expected schema losslens.analysis/1, got something/2")
    doc = _doc("nonfinite", 8, 8)
    doc["runs"].append({**doc["runs"][0], "run": "s"})
    path = tmp_path / "p.py"
    path.write_text(NUMERICS_PLUGIN)
    with pytest.raises(LossLensError, match=r"2 runs read \(r, s\): pick one with --run"):
        replay(str(path), doc, device="cpu")


# --------------------------------------------------------------------------- CLI errors

def test_cli_usage_errors_are_one_line(tmp_path):
    cli = CliRunner()
    res = cli.invoke(app, ["replay", "--plugin", PLUGIN])
    assert res.exit_code == 2
    assert res.output.strip() == "Error: give a LOG to analyse or --analysis FILE (one of them)"
    res = cli.invoke(app, ["replay", "--plugin", str(tmp_path / "none.py"), "x.log"])
    assert res.exit_code == 2
    assert res.output.strip() == f"Error: plugin {tmp_path / 'none.py'}: file not found"
    res = cli.invoke(app, ["replay", "--plugin", PLUGIN, "x.log", "--device", "tpu"])
    assert res.exit_code == 2


@pytest.mark.skipif(torch is None or not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bad_batch_on_cuda(runs, monkeypatch):
    monkeypatch.setenv("LOSSLENS_TINY_RUN", str(runs["bad_batch"]))
    rep = replay(PLUGIN, runs["bad_batch"] / "train.log", device="cuda")
    assert rep.device.startswith("cuda")
    [r] = rep.results
    assert r.verdict == "bad_batch"
    assert r.measurements["preflight"]["loss_rel_diff"] < 1e-3
    assert sorted(s["index"] for s in r.samples[:6]) == [1, 2, 5, 9, 13, 14]




def test_a_load_that_loads_nothing_is_named_not_called_nondeterminism(tmp_path, restore_threads):
    """load_state_dict(strict=False) with keys that match nothing: the weights stay as trained."""
    path = tmp_path / "p.py"
    path.write_text(NUMERICS_PLUGIN.replace(
        '''    torch.manual_seed(step)
    for p in model.parameters():
        nn.init.normal_(p, std=0.5)''',
        '''    state = {"module." + k: v for k, v in model.state_dict().items()}
    model.load_state_dict({k: torch.zeros_like(v) for k, v in state.items()}, strict=False)'''))
    [r] = replay(str(path), _doc("nonfinite", 8, 8), device="cpu").results
    assert r.verdict == "inconclusive"
    assert r.evidence == [
        "load_checkpoint(5) did not restore the weights: after one training step, loading it "
        "again leaves 4 of 4 parameter tensors as trained (4 differ from the first load) — a "
        "load_state_dict(strict=False) that matched no key? replay cannot judge without the "
        "checkpoint's weights"]


def test_a_second_device_reruns_reproduced_events(tmp_path, restore_threads):
    path = tmp_path / "p.py"
    path.write_text(NUMERICS_PLUGIN)
    opts = Options(second_device="cpu")
    [r] = replay(str(path), _doc("nonfinite", 8, 8), device="cpu", options=opts).results
    assert r.verdict == "numerics"
    sd = r.measurements["second_device"]
    assert sd["device"] == "cpu" and sd["check"]["shows"] is True
    assert [s["step"] for s in sd["steps"]] == [6, 7, 8]
    assert ("the replay on a second device (cpu): the event shows there too (persistent)"
            in r.evidence)
    # auto on a CPU-only machine: no second device
    [r] = replay(str(path), _doc("nonfinite", 8, 8), device="cpu").results
    assert "second_device" not in r.measurements


def test_optimizer_probes_beyond_adam():
    """Adafactor's factored second moment feeds the |g| >> sqrt(v) share; momentum-only
    optimizers (SGD with momentum, Muon, Lion-style) get the momentum/gradient cosine."""
    from losslens.replay.engine import adam_outlier_share, momentum_cosine, sample

    w = torch.nn.Parameter(torch.ones(4, 3))
    ada = torch.optim.Adafactor([w], lr=0.01)
    w.grad = torch.full((4, 3), 0.1)
    ada.step()
    w.grad = torch.full((4, 3), 0.1)
    w.grad[0, 0] = 50.0  # one coordinate far above its second moment
    assert adam_outlier_share(ada) == pytest.approx(1 / 12)
    sgd = torch.optim.SGD([w], lr=0.1, momentum=0.9)
    w.grad = torch.ones(4, 3)
    assert momentum_cosine(sgd) is None  # no momentum yet
    sgd.step()
    w.grad = -torch.ones(4, 3)  # the gradient turns against the momentum
    assert momentum_cosine(sgd) == pytest.approx(-1.0)
    muon = torch.optim.Muon([w], lr=0.01)
    w.grad = torch.ones(4, 3)
    muon.step()
    assert momentum_cosine(muon) == pytest.approx(1.0)
    # the update RMS is measured on a strided sample, not a copy of every coordinate
    big = torch.arange(10_000.0)
    assert sample(big).numel() == 4096 and sample(big)[1] == 2.0

"""What the in-training rules of other frameworks, and the guard, do on the same injected runs.

The peers' rules, as their sources state them (re-stated here in a few lines each, on plain
floats, so that all four see exactly the same series):

- OLMo-core `SkipStepOptimizer` (src/olmo_core/optim/skip_step_optimizer.py): once at least
  max(20, 128 // 2) losses are known, skip the step when |loss - mean| / std of the previous
  (up to) 128 losses exceeds 6 (and likewise for the grad norm). Never stops the run.
- llm-foundry `KillLossSpike` (llmfoundry/callbacks/kill_loss_spike_callback.py): once a full
  window of 100 losses is known, a loss >= 2 x the window's mean is an outlier; more than 4
  consecutive outliers stop the run (`log_only=False`); so does, after 200 batches, half of
  the window above `loss_cap` = 10.
- Lightning `SpikeDetection` (src/lightning/fabric/utilities/spike.py): after 1 warm-up
  batch, a loss that did not improve on the previous one and is >= rtol=2 x the running mean
  of 10 away from it (a non-finite loss always) stops the run (TrainingSpikeException) and
  lists the current and previous batch to exclude.
- the guard (`losslens.guard.Guard`, default policy; checkpoints every 100 steps): the
  step each decision was made at (the default asynchronous guard returns a decision up
  to `max-lag` calls later, after the run's last step drained as the trainer callbacks
  do; printed under the table), and the same guard in process (`asynchronous = false`:
  the same decisions, each from the call of its own step).

Runs (each a loss series; the first two from training a tiny GPT-2 on a next-token task, the
rest synthetic with known injected events):

    python benchmarks/guard_peers.py            # prints a Markdown table
"""
from __future__ import annotations

import math
import sys
from collections import deque
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from losslens.guard import Guard  # noqa: E402


# ----------------------------------------------------------------------------- the rules


def olmo_core(losses):
    window, acts = deque(maxlen=129), []
    for step, loss in enumerate(losses, 1):
        window.append(loss)
        if len(window) < max(20, 128 // 2):
            continue
        prev = np.array(list(window)[:-1])
        z = abs(loss - prev.mean()) / prev.std(ddof=1)
        if not z <= 6:  # NaN compares False: skipped too
            acts.append(("skip", step))
    return acts


def llm_foundry(losses):
    window, outliers, acts = deque(maxlen=100), 0, []
    for step, loss in enumerate(losses, 1):
        if len(window) == 100:
            avg = float(np.mean(window))
            if loss >= avg * 2:
                outliers += 1
                if outliers > 4:
                    acts.append(("stop", step))
                    return acts
            else:
                outliers = 0
                if step >= 200 and sum(x > 10 for x in window) >= 50:
                    acts.append(("stop", step))
                    return acts
        window.append(loss)
    return acts


def lightning(losses):
    running, last, acts = deque(maxlen=10), 0.0, []
    for idx, loss in enumerate(losses):  # batch_idx from 0
        if idx >= 1:
            mean = float(np.mean(running)) if running else 0.0
            spike = (not math.isfinite(loss)) or (
                loss - last > 0 and abs(loss - mean) >= abs(2.0 * mean))
            if spike:
                acts.append(("stop", idx + 1))
                return acts
        if math.isfinite(loss):
            running.append(loss)
            last = loss
    return acts


def guard(losses, asynchronous: bool = True):
    """The guard's decisions at the steps it made them. The default (asynchronous) guard
    returns a decision up to `max-lag` (100) calls after its step, so a run that ends
    sooner than that after a stop is drained (`Guard.drain`, as the HF and Lightning
    callbacks do at the end of training); the table gives the step decided at. In process
    (`asynchronous = false`) each decision comes back from the call of its own step."""
    g = Guard(checkpoint_every=100, asynchronous=asynchronous)
    acts = []
    try:
        for step, loss in enumerate(losses, 1):
            d = g.step(step, loss)
            if d:
                if d.step != step:
                    LATE.append(f"{d.action} of step {d.step} returned at step {step}")
                elif asynchronous is False:
                    NOW.append(d.step)
                if _act(acts, d):
                    return acts
        for d in g.drain():
            LATE.append(f"{d.action} of step {d.step} returned by drain() after the last "
                        f"step ({len(losses)})")
            if _act(acts, d):
                break
        return acts
    finally:
        g.close()


#: when each of the guard's decisions was returned (printed under the table); the steps
#: whose decisions the in-process guard returned from the call of that step
LATE: list[str] = []
NOW: list[int] = []


def _act(acts, d) -> bool:
    """Record decision `d` (at its own step); True when it stops the run."""
    if d.action == "skip_step":
        acts.append(("skip", d.step))
    elif d.action == "alert":
        acts.append(("alert", d.step))
    elif d.action == "stop_and_restart":
        p = d.plan
        plan = (f"restart {p.restart_from_step}, skip "
                + ",".join(f"{a}-{b}" for a, b in p.skip)) if p else "no plan"
        acts.append(("stop", d.step, plan))
        return True
    return False


RULES = {"OLMo-core SkipStep": olmo_core, "llm-foundry KillLossSpike": llm_foundry,
         "Lightning SpikeDetection": lightning, "losslens guard": guard,
         "losslens guard, in process": lambda losses: guard(losses, asynchronous=False)}


# ----------------------------------------------------------------------------- the runs


def gpt2_run(poison: tuple[int, int], steps: int = 300) -> list[float]:
    """Losses of a tiny GPT-2 trained on x_t = (a + b t) mod 64, the batches of the steps
    in `poison` replaced by uniformly random tokens (no intervention)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2,
                                       n_head=2, resid_pdrop=0.0, embd_pdrop=0.0,
                                       attn_pdrop=0.0))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    out = []
    for step in range(1, steps + 1):
        a = torch.randint(0, 64, (8, 1), generator=g)
        b = torch.randint(1, 4, (8, 1), generator=g)
        x = (a + b * torch.arange(32)) % 64
        if poison[0] <= step <= poison[1]:
            x = torch.randint(0, 64, (8, 32), generator=g)
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        out.append(loss.item())
    return out


def synthetic(kind: str, n: int = 3000, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    s = np.arange(1, n + 1)
    loss = (2 + 4 * np.exp(-s / 400)) * np.exp(rng.normal(0, 0.02, n))
    if kind == "nan":
        loss[1499] = math.nan
    elif kind == "divergence":
        loss[1999:] *= np.exp(np.linspace(0, math.log(3.0), n - 1999))
    elif kind == "slow":
        loss[1499:1900] *= 1 + 1.0 * np.exp(-np.arange(401) / 120)
    elif kind == "heavy":
        loss = (2 + 4 * np.exp(-s / 400)) * np.exp(0.03 * rng.standard_t(3, n))
    elif kind == "fast":
        loss[1499:1502] *= 2.5
    return loss.tolist()


RUNS = [
    ("tiny GPT-2, 40 poisoned batches (steps 201-240): the loss stays up", "poison"),
    ("tiny GPT-2, one poisoned batch (step 201): back at once", "one"),
    ("3-step x2.5 spike at 1500 (fast recovery)", "fast"),
    ("x2 spike at 1500 decaying over 400 steps (slow recovery)", "slow"),
    ("one NaN loss at step 1500", "nan"),
    ("divergence from step 2000 without a spike (x3 over 1000 steps)", "divergence"),
    ("no event: heavy-tailed per-batch noise (Student t, 3 dof)", "heavy"),
]


def series(key: str) -> list[float]:
    if key == "poison":
        return gpt2_run((201, 240))
    if key == "one":
        return gpt2_run((201, 201))
    return synthetic(key)


def describe(acts) -> str:
    if not acts:
        return "nothing"
    parts = []
    skips = [a[1] for a in acts if a[0] == "skip"]
    alerts = [a[1] for a in acts if a[0] == "alert"]
    if alerts:
        parts.append(f"alert at {', '.join(map(str, alerts[:3]))}"
                     + (f" (+{len(alerts) - 3})" if len(alerts) > 3 else ""))
    if skips:
        parts.append(f"skip {len(skips)} step(s) from {skips[0]}")
    stop = [a for a in acts if a[0] == "stop"]
    if stop:
        parts.append(f"stop at {stop[0][1]}" + (f" ({stop[0][2]})" if len(stop[0]) > 2 else ""))
    return "; ".join(parts)


def main() -> None:
    print("| run | " + " | ".join(RULES) + " |")
    print("|---|" + "---|" * len(RULES))
    returned: list[str] = []
    now = 0
    for title, key in RUNS:
        losses = series(key)
        LATE.clear()
        NOW.clear()
        cells = [describe(rule(losses)) for rule in RULES.values()]
        print(f"| {title} | " + " | ".join(cells) + " |")
        returned += [f"{title.split(':')[0]}: {x}" for x in LATE]
        now += len(NOW)
    print("\nThe guard's columns give the step each decision was made at; the guard "
          "(asynchronous, the default) returned them: " + "; ".join(returned) + f". In "
          f"process, {now} decision(s), each returned by the call of its own step.")


if __name__ == "__main__":
    main()

"""Judgement quality on real public training logs, labelled by a person from their plots.

    python benchmarks/real_quality.py [--verbose] [--set NAME] [names...]

benchmarks/real/labels.json lists each log: where it came from (repository, commit, path,
licence), what an engineer sees in its plot (`description`), and the judgements that follow:

- `expect`: events that must be found — kind (`spike`, `divergence`, `nonfinite`,
  `overfitting`, `grokking`), the step range its start must fall in, optionally the tag / run
  (substrings), the recovery classes accepted, and for a storm of spikes the least number
  expected. A spike labelled with a recovery is two judgements: found, and its recovery class
  right. A divergence marked `or_unrecovered_spike` is also found by a spike that never
  recovered starting in its range (the run did not come back either way).
- a clean log (`clean: true`): nothing warning-or-worse, neither event nor finding (kinds in
  `allow` excepted: what the labeller called ambiguous; a finding is excepted when its title
  names an allowed kind or every event it explains is of one);
- any other log: no warning-or-worse event that no label explains (kinds in `allow` excepted).

Logs are read from benchmarks/real/logs/ (those whose licence lets this repository keep them),
then benchmarks/real/cache/ (`python benchmarks/real/fetch.py` downloads the others), then
../shared/corpus/. Missing logs are listed and skipped; a log losslens cannot read (a
LossLensError) fails every judgement on it.

A label may name the blind set it was added in (`set`, e.g. `blind4`): `--set NAME` scores that
group alone, and the summary gives each group's held / total.

Prints per-kind precision / recall (precision: events of the kind on a labelled loss that match
a label, over all such events; a second event matching an already-found label is a duplicate,
not a false one) and every judgement that fails.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REAL = HERE / "real"
KINDS = ("spike", "divergence", "nonfinite", "overfitting", "grokking")
SEVERE = ("warning", "critical")


def locate(name: str, root: Path = REAL) -> Path | None:
    for base in (root / "logs", root / "cache", root.parent.parent.parent / "shared" / "corpus"):
        if (base / name).exists():
            return base / name
    return None


@dataclass
class Judgement:
    log: str
    what: str
    holds: bool
    why: str = ""


@dataclass
class Tally:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    dup: int = 0

    def row(self) -> tuple[float, float]:
        p = self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0
        r = self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0
        return p, r


@dataclass
class Result:
    judgements: list[Judgement] = field(default_factory=list)
    tallies: dict[str, Tally] = field(default_factory=lambda: {k: Tally() for k in KINDS})
    missing: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # read() raised: every judgement fails
    logs: int = 0
    sets: dict[str, str] = field(default_factory=dict)  # log name -> its labelled group


def _kind(e: Any) -> str:
    return e.kind


def _match(e: Any, run: str, label: dict[str, Any]) -> bool:
    lo, hi = label["start"]
    kind_ok = _kind(e) == label["kind"] or (
        label.get("or_unrecovered_spike") and _kind(e) == "spike" and e.recovery == "none")
    return (kind_ok and lo <= e.start_step <= hi
            and label.get("tag", "") in e.tag and label.get("run", "") in run)


def judge_log(label: dict[str, Any], analysis: Any, result: Result) -> None:
    name = label["name"]
    events = [(ra.info.run, e) for ra in analysis.runs for e in ra.events]
    findings = [f for ra in analysis.runs for f in ra.findings]
    allow = set(label.get("allow", ()))
    explained: set[int] = set()
    for exp in label["expect"]:
        hits = [(run, e) for run, e in events if _match(e, run, exp)]
        explained.update(id(e) for _, e in hits)
        need = exp.get("min_count", 1)
        where = (f"{exp['kind']} starting in {exp['start']}" + (f" on {exp['tag']}" if "tag" in exp
                 else "") + (f" in run ~{exp['run']}" if "run" in exp else ""))
        found = len(hits) >= need
        got = ", ".join(f"{e.kind}@{e.start_step}({e.tag},{e.severity})" for _, e in hits[:4])
        result.judgements.append(Judgement(
            name, f"{where}" + (f" (at least {need})" if need > 1 else ""), found,
            f"found {len(hits)}: {got}" if hits else "not found"))
        t = result.tallies[exp["kind"]]
        t.tp, t.fn = t.tp + bool(hits), t.fn + (not hits)
        t.dup += max(0, len(hits) - 1) if need == 1 else 0
        if need > 1:
            t.tp += len(hits[1:])  # a storm: every member matches a labelled spike
        if "recovery" in exp and hits:
            wrong = [e for _, e in hits if e.recovery not in exp["recovery"]]
            result.judgements.append(Judgement(
                name, f"{where}: recovery {'/'.join(exp['recovery'])}", not wrong,
                "" if not wrong else "got " + ", ".join(f"{e.recovery}@{e.start_step}"
                                                       for e in wrong[:4])))
    loss_tags = {(ra.info.run, s.tag) for ra in analysis.runs for s in ra.info.series
                 if s.role in ("train_loss", "val_loss")}
    for run, e in events:
        if _kind(e) in KINDS and id(e) not in explained and (
                (run, e.tag) in loss_tags or _kind(e) == "overfitting"):
            if _kind(e) in allow:
                continue
            result.tallies[_kind(e)].fp += 1
    severe = [(run, e) for run, e in events if e.severity in SEVERE
              and id(e) not in explained and _kind(e) not in allow]
    what = ("clean: nothing warning-or-worse" if label["clean"]
            else "no unexplained warning-or-worse event")
    bad = [f"{e.kind}@{e.start_step}({e.tag},{e.severity})" for _, e in severe]
    if label["clean"]:
        bad += [f"finding '{f.title}' ({f.severity})" for f in findings
                if f.severity in SEVERE and not _allowed(f, allow)]
    result.judgements.append(Judgement(name, what, not bad, "; ".join(bad[:5])))


def _allowed(finding: Any, allow: set[str]) -> bool:
    """A finding the labeller allowed: its title names an allowed kind, or every event it
    explains is of an allowed kind (`resume_spike-1` is a `resume_spike`)."""
    if any(k in finding.title.lower() for k in allow):
        return True
    kinds = {i.rsplit("-", 1)[0] for i in finding.event_ids}
    return bool(kinds) and kinds <= allow


def evaluate(root: Path = REAL, names: list[str] | None = None,
             group: str | None = None) -> Result:
    from losslens import read
    from losslens.errors import LossLensError
    from losslens.pipeline import analyze_frame

    labels = json.loads((root / "labels.json").read_text())["logs"]
    result = Result()
    for label in labels:
        if names and label["name"] not in names:
            continue
        if group and label.get("set") != group:
            continue
        path = locate(label["name"], root)
        if path is None:
            result.missing.append(label["name"])
            continue
        result.logs += 1
        result.sets[label["name"]] = label.get("set", "")
        try:
            analysis = analyze_frame(read(path))
        except LossLensError as exc:  # a log it cannot read fails every judgement on it
            judge_unreadable(label, f"unreadable: {exc}".splitlines()[0][:160], result)
            result.unreadable.append(label["name"])
            continue
        judge_log(label, analysis, result)
    return result


def judge_unreadable(label: dict[str, Any], why: str, result: Result) -> None:
    name = label["name"]
    for exp in label["expect"]:
        where = f"{exp['kind']} starting in {exp['start']}" + (f" on {exp['tag']}" if "tag" in exp
                                                                else "")
        result.judgements.append(Judgement(name, where, False, why))  # as judge_log: not found,
        result.tallies[exp["kind"]].fn += 1  # so no recovery judgement
    what = ("clean: nothing warning-or-worse" if label["clean"]
            else "no unexplained warning-or-worse event")
    result.judgements.append(Judgement(name, what, False, why))


def report(result: Result, verbose: bool = False) -> None:
    js = result.judgements
    held = sum(j.holds for j in js)
    print(f"{result.logs} real logs, {len(js)} labelled judgements, {held} hold "
          f"({held / max(1, len(js)):.1%})")
    groups = sorted({g for g in result.sets.values() if g})
    for g in groups:
        gj = [j for j in js if result.sets.get(j.log) == g]
        gh = sum(j.holds for j in gj)
        print(f"  set {g}: {sum(1 for v in result.sets.values() if v == g)} logs, {len(gj)} "
              f"judgements, {gh} hold ({gh / max(1, len(gj)):.1%})")
    if result.missing:
        print(f"missing (run benchmarks/real/fetch.py): {', '.join(result.missing)}")
    if result.unreadable:
        print(f"unreadable (every judgement on them fails): {', '.join(result.unreadable)}")
    print(f"\n{'kind':<13}{'tp':>5}{'fp':>5}{'fn':>5}{'dup':>5}{'prec':>8}{'recall':>8}")
    for k, t in result.tallies.items():
        p, r = t.row()
        print(f"{k:<13}{t.tp:>5}{t.fp:>5}{t.fn:>5}{t.dup:>5}{p:>8.3f}{r:>8.3f}")
    fails = [j for j in js if not j.holds]
    print(f"\njudgements that fail ({len(fails)}):")
    for j in fails:
        print(f"  {j.log}: {j.what} -- {j.why}")
    if verbose:
        print("\njudgements that hold:")
        for j in js:
            if j.holds:
                print(f"  {j.log}: {j.what}" + (f" -- {j.why}" if j.why else ""))


def main(argv: list[str] | None = None) -> Result:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--set", dest="group", metavar="NAME",
                    help="score only the logs labelled in this group (e.g. blind4)")
    ap.add_argument("names", nargs="*")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    result = evaluate(names=args.names or None, group=args.group)
    report(result, args.verbose)
    print(f"\n({time.perf_counter() - t0:.1f} s)")
    return result


if __name__ == "__main__":
    main()

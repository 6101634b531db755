"""Screenshots of the reports for docs/img/, and the 1M-step HTML measurement.

    python benchmarks/report_shots.py --shots docs/img     # light/dark, 1 run and 8 runs,
                                                           # and the 80-column terminal
    python benchmarks/report_shots.py --html-1m            # size and render time

Uses headless Chromium through playwright (`apt-get install chromium`, `pip install
playwright`); the 1M-step run is a JSONL log written here (4 series, 3 spikes).
"""
from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SAMPLE = ROOT / "sample_logs" / "megatron_gpt_spikes.log"
sys.path.insert(0, str(HERE))


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def nanogpt_log(path: Path, seed: int, spike_at: int | None, n: int = 5000) -> None:
    """A nanoGPT-style log with noise, a fast spike and (maybe) a jump that stays."""
    rng = np.random.default_rng(seed)
    out = []
    floor = 2.0 + 0.15 * seed
    for it in range(0, n + 1, 10):
        loss = (floor + 8.5 * (1 + it / 80.0) ** -0.55) * np.exp(rng.normal(0, 0.012))
        if it == 900 + 100 * seed:
            loss *= 1.8
        if spike_at is not None and it >= spike_at:
            loss += 1.2
        out.append(f"iter {it}: loss {loss:.4f}, time 412.00ms, mfu 38.50%")
    path.write_text("\n".join(out) + "\n")


def fleet_dir(root: Path) -> Path:
    d = root / "fleet"
    d.mkdir(parents=True, exist_ok=True)
    for k in range(8):
        nanogpt_log(d / f"gpt2-small-lr{3 + k}e-4-seed{k}.log", k,
                    3100 + 150 * k if k in (2, 5) else None)
    return d


def html_of(paths, out: Path, checkpoint_every: int | None = None) -> Path:
    import losslens
    from losslens.options import Options
    from losslens.report import render

    opts = Options(checkpoint_every=checkpoint_every) if checkpoint_every else None
    analysis = losslens.analyze(losslens.read(paths), opts)
    out.write_text(render(analysis, "html"))
    return out


def _page(browser, html: Path, scheme: str, width: int = 1280, height: int = 1500):
    page = browser.new_page(viewport={"width": width, "height": height}, color_scheme=scheme)
    t0 = time.perf_counter()
    page.goto(html.as_uri())
    page.wait_for_function("window.losslens && window.losslens.ready", timeout=120_000)
    return page, time.perf_counter() - t0


def terminal_80(out_dir: Path) -> Path:
    """The 80-column terminal report of the sample log, as SVG (rich's export)."""
    import losslens
    from losslens.options import Options
    from rich.console import Console

    from losslens.report.terminal import print_analysis

    console = Console(record=True, width=80, file=io.StringIO(), force_terminal=True,
                      color_system="truecolor")
    print_analysis(losslens.analyze(losslens.read(SAMPLE), Options(checkpoint_every=500)),
                   console)
    path = out_dir / "terminal-80.svg"
    (out_dir / "terminal-80.txt").write_text(console.export_text(clear=False))
    console.save_svg(str(path), title="losslens analyze (80 columns)")
    return path


def shots(out_dir: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out_dir.mkdir(parents=True, exist_ok=True)
    made = [terminal_80(out_dir)]
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        one = html_of([SAMPLE], Path(tmp) / "one.html", checkpoint_every=500)
        fleet = html_of([fleet_dir(Path(tmp))], Path(tmp) / "fleet.html")
        for name, html in (("1run", one), ("fleet8", fleet)):
            for scheme in ("light", "dark"):
                page, _ = _page(browser, html, scheme)
                png = out_dir / f"report-{name}-{scheme}.png"
                page.screenshot(path=str(png))
                made.append(png)
                page.close()
        page, _ = _page(browser, one, "light", width=390, height=1400)
        png = out_dir / "report-1run-narrow.png"
        page.screenshot(path=str(png))
        made.append(png)
        browser.close()
    return made


def write_jsonl_1m(path: Path, steps: int = 1_000_000) -> None:
    from run import write_jsonl

    write_jsonl(path, steps)


def html_1m(steps: int = 1_000_000) -> dict:
    """Size of the HTML report of a 1M-step run, time to write it, time to render it."""
    import subprocess

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        log, html = Path(tmp) / "run.jsonl", Path(tmp) / "run.html"
        write_jsonl_1m(log, steps)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "losslens", "analyze", str(log), "-f", "html",
                        "-o", str(html)], check=True, capture_output=True)
        write_s = time.perf_counter() - t0
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
            renders = []
            for _ in range(3):
                page, dt = _page(browser, html, "light")
                renders.append(dt)
                page.close()
            browser.close()
        return {"steps": steps, "bytes": html.stat().st_size, "analyze_html_s": write_s,
                "render_s": sorted(renders)[1]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=Path, help="write the screenshots into this folder")
    ap.add_argument("--html-1m", action="store_true", help="measure the 1M-step HTML")
    args = ap.parse_args(argv)
    if chromium() is None:
        print("skipped: chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 0
    if args.shots:
        for path in shots(args.shots):
            print(path)
    if args.html_1m:
        print(json.dumps(html_1m()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Render the HTML report of a log and screenshot it with headless Chromium.

    python benchmarks/screenshot_report.py [LOG] [--out report.png] [--html report.html]

Default LOG is sample_logs/megatron_gpt_spikes.log. Prints the paths and timings; exits 0 with
a message when Chromium is not installed (Debian: `apt-get install chromium`). The browser runs
with a throw-away profile and no network features, so the screenshot also shows that the
report needs nothing from outside the file.
"""
from __future__ import annotations

import argparse
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_logs" / "megatron_gpt_spikes.log"
WINDOW = (1400, 2400)


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists()
                                      else None)
        if path:
            return path
    return None


def screenshot(html: Path, png: Path, window: tuple[int, int] = WINDOW,
               chromium: str | None = None, timeout: float = 120.0) -> Path:
    """Screenshot `html` (a file) into `png` with headless Chromium; returns `png`."""
    exe = chromium or find_chromium()
    if exe is None:
        raise FileNotFoundError("chromium is not installed")
    png = png.resolve()
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="losslens-chromium-") as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--hide-scrollbars",
               f"--user-data-dir={profile}", f"--screenshot={png}",
               f"--window-size={window[0]},{window[1]}", html.resolve().as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if not png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot (exit {proc.returncode}): "
                           f"{proc.stderr.strip()[-500:]}")
    return png


def png_size(png: Path) -> tuple[int, int]:
    """Width and height from the PNG header."""
    head = png.read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{png} is not a PNG")
    return struct.unpack(">II", head[16:24])


def render_html(log: Path, html: Path) -> Path:
    """The HTML report of `log`, written (atomically) to `html`."""
    import losslens
    from losslens.report import render as render_report
    from losslens.textsafe import write_file

    frame = losslens.read(log)
    write_file(html, render_report(losslens.analyze(frame), "html"))
    return html


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("log", nargs="?", default=str(SAMPLE))
    ap.add_argument("--out", default="report.png", help="PNG to write")
    ap.add_argument("--html", default=None, help="keep the HTML here (default: a temp file)")
    args = ap.parse_args(argv)
    exe = find_chromium()
    if exe is None:
        print("skipped: chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        html = Path(args.html) if args.html else Path(tmp) / "report.html"
        t0 = time.perf_counter()
        render_html(Path(args.log), html)
        t1 = time.perf_counter()
        png = screenshot(html, Path(args.out), chromium=exe)
        t2 = time.perf_counter()
        print(f"html {html} ({html.stat().st_size:,} bytes, {t1 - t0:.2f} s); "
              f"png {png} {png_size(png)} ({png.stat().st_size:,} bytes, {t2 - t1:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Download the labelled real logs that are not kept in this repository (no licence, a
copyleft licence, or too large) from their public GitHub repositories, at the labelled commit.

    python benchmarks/real/fetch.py [--dest DIR]

Each file goes to DIR/<name>/<file name> (default: benchmarks/real/cache, which git ignores).
`benchmarks/real_quality.py` looks there after benchmarks/real/logs/ and ../shared/corpus/.
Logs whose source is a whole folder (corpus entries) are not fetched here.
"""
from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent


def url(source: dict) -> str:
    return (f"https://raw.githubusercontent.com/{source['repo']}/{source['commit']}/"
            f"{source['path']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dest", type=Path, default=HERE / "cache")
    args = ap.parse_args(argv)
    labels = json.loads((HERE / "labels.json").read_text())["logs"]
    failed = 0
    for log in labels:
        src = log["source"]
        if src["where"] != "fetch" or src["path"].endswith("/"):
            continue
        out = args.dest / log["name"] / Path(src["path"]).name
        if out.exists():
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            with urllib.request.urlopen(url(src), timeout=60) as r:
                data = r.read()
        except OSError as exc:
            print(f"{log['name']}: {url(src)}: {exc}", file=sys.stderr)
            failed += 1
            continue
        out.write_bytes(data)
        print(f"{log['name']}: {len(data)} bytes")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

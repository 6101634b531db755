"""Download the real training output that is public but not ours to copy (benchmarks/real/
excerpts.json) and cut out the labelled excerpts.

    python benchmarks/real/fetch_excerpts.py [--dest DIR]

Two kinds of source, neither under a licence that lets this repository keep a copy:
- output pasted into a GitHub issue or pull request: the thread's description (`where:
  description`) or its comments by `author` (`where: comment`), from the GitHub REST API;
- a file in a repository without a licence (`where: file`): `path` at `commit`, from
  raw.githubusercontent.com.
In each text this finds the first line containing `first` and the first line from there on
containing `last`, and writes those lines (both kept, `\\r\\n` made `\\n`) to DIR/NAME.log
(default: benchmarks/real/cache/excerpts/, which git ignores).
tests/test_readers_real_refetched.py reads them; its tests skip when a file is absent.
Set GITHUB_TOKEN to lift the API's 60 requests an hour.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
API = "https://api.github.com/repos"
RAW = "https://raw.githubusercontent.com"


def excerpt(body: str, first: str, last: str) -> str | None:
    """The lines of `body` from the first one containing `first` to the next containing
    `last` (both kept), each ending in `\\n`; None when either is missing."""
    lines = body.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    start = next((i for i, line in enumerate(lines) if first in line), None)
    if start is None:
        return None
    end = next((i for i in range(start, len(lines)) if last in lines[i]), None)
    if end is None:
        return None
    return "\n".join(lines[start:end + 1]) + "\n"


def _get(url: str, raw: bool = False) -> object:
    req = urllib.request.Request(url, headers={"Accept": "application/vnd.github+json"})
    token = os.environ.get("GITHUB_TOKEN")
    if token and not raw:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read().decode("utf-8", "replace") if raw else json.load(r)


def bodies(entry: dict) -> list[str]:
    """The texts the excerpt may be in: the file, the description, or the author's comments."""
    if entry["where"] == "file":
        return [_get(f"{RAW}/{entry['repo']}/{entry['commit']}/{entry['path']}", raw=True)]
    base = f"{API}/{entry['repo']}/issues/{entry['number']}"
    if entry["where"] == "description":
        return [_get(base).get("body") or ""]
    out, page = [], 1
    while True:
        batch = _get(f"{base}/comments?per_page=100&page={page}")
        out += [c.get("body") or "" for c in batch
                if (c.get("user") or {}).get("login") == entry["author"]]
        if len(batch) < 100:
            return out
        page += 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dest", type=Path, default=HERE / "cache" / "excerpts")
    args = ap.parse_args(argv)
    failed = 0
    for entry in json.loads((HERE / "excerpts.json").read_text())["excerpts"]:
        out = args.dest / f"{entry['name']}.log"
        if out.exists():
            continue
        try:
            texts = bodies(entry)
        except OSError as exc:
            print(f"{entry['name']}: {entry['url']}: {exc}", file=sys.stderr)
            failed += 1
            continue
        found = next((e for e in (excerpt(t, entry["first"], entry["last"]) for t in texts)
                      if e is not None), None)
        if found is None:
            print(f"{entry['name']}: the labelled lines are no longer in {entry['url']}",
                  file=sys.stderr)
            failed += 1
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(found)
        print(f"{entry['name']}: {found.count(chr(10))} lines")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`watch` on a growing file: append a log's bytes in random pieces, polling a Follower after
each, as a trainer's writes arrive (shared by the readers' and watch's tests)."""
from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from losslens.watch import Follower


def follow_in_pieces(dst: Path, data: bytes, input_format: str, seed: int,
                     sizes: Sequence[int] = (40, 300, 2000)) -> Any:
    """Write `data` to the empty file `dst` in pieces of random `sizes` (rng `seed`), polling
    after each; the Follower's state of `dst` once all is written."""
    dst.write_bytes(b"")
    rnd, pos = random.Random(seed), 0
    with Follower(dst, input_format=input_format) as f:
        while pos < len(data):
            nxt = min(len(data), pos + rnd.choice(list(sizes)))
            with open(dst, "ab") as fh:
                fh.write(data[pos:nxt])
            pos = nxt
            f.poll()
        return f.states[dst.name]

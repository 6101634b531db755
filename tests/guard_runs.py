"""Shared pieces of the guard's end-to-end tests: a tiny next-token task whose batches of
some steps are poisoned (uniformly random tokens: the loss jumps from ~0.5 to ~ln 64 and
stays there while they last)."""
from __future__ import annotations

import contextlib

import torch

VOCAB, SEQ, BATCH = 64, 32, 8
#: Steps (1-based) whose batches are poisoned in the original data order.
POISON = (31, 50)


def sequences(n: int, seed: int = 0) -> torch.Tensor:
    """n sequences x_t = (a + b t) mod VOCAB: easy to learn."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, VOCAB, (n, 1), generator=g)
    b = torch.randint(1, 4, (n, 1), generator=g)
    data = (a + b * torch.arange(SEQ)) % VOCAB
    lo, hi = (POISON[0] - 1) * BATCH, POISON[1] * BATCH
    data[lo:hi] = torch.randint(0, VOCAB, (hi - lo, SEQ), generator=g)
    return data


class TokenData(torch.utils.data.Dataset):
    def __init__(self, n: int = 1000) -> None:
        self.x = sequences(n)
        self.seen: list[int] = []  # indices loaded, in order

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int) -> dict:
        self.seen.append(int(i))
        return {"input_ids": self.x[i], "labels": self.x[i]}


def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=VOCAB, n_positions=SEQ, n_embd=32, n_layer=2, n_head=2,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2LMHeadModel(cfg)


def policy():
    from losslens.guard import GuardPolicy

    # scaled-down PaLM: checkpoints every 10 steps, restart >= 5 before, skip 40..60
    # asynchronous (the default): a decision reaches the loop at most MAX_LAG steps late
    return GuardPolicy(check_every=10, stop_after=10, before=5, min_skip=40, max_skip=60,
                       max_lag=MAX_LAG)


MAX_LAG = 5


@contextlib.contextmanager
def one_thread():
    """torch on one thread: a tiny model's step is ~20 ms so, ~0.5 s on a busy 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)

"""SWAR helpers of the Megatron fast path: eight bytes of a line at a time in one uint64.

Little-endian: byte i of the text is bits 8i..8i+7 of a word, so that per-line checks on a
(line, word) matrix are 1-D numpy operations (`megatron_lines`). Also the allocator and the
cached index array pyarrow is handed.
"""
from __future__ import annotations

import numpy as np

U = np.uint64


def rep(b: int) -> np.uint64:
    return U(int.from_bytes(bytes([b]) * 8, "little"))


M7, H80, F0, X0F, SP, D30, D06 = (rep(b) for b in (0x7F, 0x80, 0xF0, 0x0F, 0x20, 0x30, 0x06))
#: TOP[k]: the last k bytes of a word (the bytes nearest the end of a right-aligned span)
TOP = np.array([0] + [((1 << 64) - 1) ^ ((1 << (8 * (8 - k))) - 1) for k in range(1, 9)],
                np.uint64)


def nonzero(v: np.ndarray) -> np.ndarray:
    """0x80 in every byte of `v` that is not zero (exact: no carries between bytes)."""
    return (((v & M7) + M7) | v) & H80


def digits(v: np.ndarray) -> np.ndarray:
    """0x80 in every byte of `v` that is an ASCII digit."""
    return ~nonzero((v & F0) ^ D30) & ~nonzero(((v + D06) & F0) ^ D30) & H80


def movemask(flags: np.ndarray) -> np.ndarray:
    """Bit i set where byte i of `flags` has 0x80."""
    return ((flags >> U(7)) * U(0x0102040810204080)) >> U(56)


def parse8(v: np.ndarray) -> np.ndarray:
    """The number written by eight digit values (0-9 per byte, first byte most significant)."""
    v = (v * U(2561)) >> U(8)
    v = ((v & U(0x00FF00FF00FF00FF)) * U(6553601)) >> U(16)
    return ((v & U(0x0000FFFF0000FFFF)) * U(42949672960001)) >> U(32)


def system_pool(pa):
    """The allocator for pyarrow's short-lived results: the system one (its freed blocks are
    reused by the next chunk; mimalloc's purging re-faulted ~100 MB per 1M lines)."""
    return pa.system_memory_pool()


_EVEN = np.arange(0, 1 << 21, 2, dtype=np.int32)


def even(n: int) -> np.ndarray:
    """0, 2, 4, ... (n of them); a slice of a cached array (pyarrow wraps it without a copy,
    while converting a fresh np.arange measured ~50 ns a value)."""
    global _EVEN
    if n > _EVEN.shape[0]:
        _EVEN = np.arange(0, 2 * n, 2, dtype=np.int32)
    return _EVEN[:n]

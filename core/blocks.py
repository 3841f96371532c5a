"""Blocks over a long signal, so that working memory depends on the block, not on the video.

An hour of 16 kHz audio is 230 MB of float32; a stage that makes a few whole-signal temporaries
(an STFT, float64 copies, framed views made real) needs gigabytes. The stages that can work piece
by piece iterate over ``blocks(...)``: each block owns the items ``[start, stop)`` of the result and
reads ``[lo, hi)``, which adds ``context`` items on either side (an STFT frame, a delta filter or a
pitch window reaching across the block edge sees the same samples as in one whole-signal pass).

A signal no longer than one block is a single block covering everything, so short inputs go
through exactly the computation they always did.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Block:
    start: int  # first item this block contributes to the result
    stop: int  # one past the last item it contributes
    lo: int  # first item it reads: start minus the context (never below 0)
    hi: int  # one past the last item it reads: stop plus the context (never past the end)

    @property
    def owned(self) -> slice:
        """Where the block's own items lie within what it reads."""
        return slice(self.start - self.lo, self.stop - self.lo)


def blocks(
    total: int, size: int, context: int = 0, cut: Callable[[int, int, int], int] | None = None
) -> list[Block]:
    """Cover ``[0, total)`` with blocks of at most ``size`` items.

    What is left is always split evenly (never a full block followed by a sliver: tiny matrix
    products go through other BLAS kernels, whose rounding differs). ``cut(lo, hi, target)`` may
    move a boundary from the even split ``target`` to a better place in ``[lo, hi)`` (a quiet
    moment, for speech): within a quarter block of it, never making a block longer than ``size``.
    """
    if size <= 0:
        raise ValueError(f"block size must be positive, got {size}")
    out: list[Block] = []
    start = 0
    while True:
        rest = total - start
        if rest <= size:
            stop = total
        else:
            target = start + rest // math.ceil(rest / size)
            stop = target
            if cut is not None:
                lo, hi = max(start + 1, target - size // 4), min(start + size, target + size // 4) + 1
                stop = min(max(int(cut(lo, hi, target)), lo), hi - 1) if hi > lo else target
        out.append(Block(start, stop, max(0, start - context), min(total, stop + context)))
        if stop >= total:
            return out
        start = stop


def chunks(total: int, size: int) -> list[slice]:
    """Plain consecutive slices of at most ``size`` items (per-item work needs no context)."""
    return [slice(a, min(a + size, total)) for a in range(0, max(total, 0), size)] or [slice(0, 0)]


__all__ = ["Block", "blocks", "chunks"]

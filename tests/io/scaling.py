"""How a reader's time grows with its input: the regression check for inputs found to take
quadratic time. Linear growth from 100 kB to 1 MB gives a ratio near 10, quadratic near 100."""

from __future__ import annotations

import time
from collections.abc import Callable

SMALL, LARGE = 100_000, 1_000_000
LINEAR_BOUND = 30.0  # far from the 100 of quadratic growth, with room for a busy machine


def growth(run: Callable[[int], object], small: int = SMALL, large: int = LARGE, repeats: int = 3) -> float:
    """Best-of-`repeats` time of run(large) over that of run(small) (`run` builds its input of that size)."""

    def best(size: int) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run(size)
            times.append(time.perf_counter() - start)
        return max(min(times), 1e-4)  # a floor, so that a tiny small-input time does not inflate the ratio

    best(small)  # warm up: imports and caches outside the timing
    return best(large) / best(small)

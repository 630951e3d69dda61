"""Hostile delivery for the twin tests' strategies, and a fixed sample of a strategy's alarms."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import numpy as np
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

__all__ = ["alarms_in_sample", "deliver"]

R = TypeVar("R")
C = TypeVar("C")


def deliver(
    draw: st.DrawFn,
    rng: np.random.Generator,
    timed: list[R],
    count: int,
    *,
    moves: int,
    placed: Iterable[tuple[int, R]] = (),
) -> list[list[R]]:
    """Readings in time order cut into `count` batches, then up to `moves` delivered late (in a
    later batch, after newer readings) and up to `moves` twice; each batch may be shuffled.

    `placed` readings go into their given batch as they are, after the timed ones.
    """
    cuts = np.sort(rng.integers(0, len(timed) + 1, count - 1))
    parts: list[list[R]] = [[] for _ in range(count)]
    which = np.searchsorted(cuts, np.arange(len(timed)), side="right").tolist()
    for k, reading in zip(which, timed, strict=True):
        parts[k].append(reading)
    for k, reading in placed:
        parts[k].append(reading)
    flat = [(k, i) for k, part in enumerate(parts) for i in range(len(part))]
    if flat:
        late = draw(st.lists(st.sampled_from(flat), max_size=moves, unique=True))
        # Popped from the back (indices stay valid) into a later batch, after newer readings.
        for k, i in sorted(late, reverse=True):
            parts[min(k + 1 + int(rng.integers(0, 2)), count - 1)].append(parts[k].pop(i))
        for k, i in draw(st.lists(st.sampled_from(flat), max_size=moves)):  # redelivered
            if i < len(parts[k]):
                parts[min(k + int(rng.integers(0, 2)), count - 1)].append(parts[k][i])
    if draw(st.booleans()):
        parts = [[part[i] for i in rng.permutation(len(part)).tolist()] for part in parts]
    return parts


def alarms_in_sample(
    strategy: st.SearchStrategy[C], alarms: Callable[[C], Iterable[str]], examples: int
) -> Counter[str]:
    """In how many of a fixed sample of examples (derandomised, generation only) each alarm is."""
    seen: Counter[str] = Counter()

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
    )
    @given(strategy)
    def sample(case: Any) -> None:
        seen.update(set(alarms(case)))

    sample()
    return seen

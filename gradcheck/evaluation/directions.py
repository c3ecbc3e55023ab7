"""Probe directions, and the dot products taken along them a million elements at a time.

It decides which directions finite differences move an input along (element by element for a
small input, random signs otherwise, and extra random signs at ties); it never evaluates the
spec.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

__all__ = [
    "CHUNK",
    "MANY_SIGNS",
    "TIE_DIRECTIONS",
    "TIE_GROUPS",
    "chunks",
    "dot",
    "mixed_signs",
    "probe_directions",
    "random_bits",
    "random_signs",
    "tie_group_directions",
]


def chunks(*arrays: np.ndarray) -> Iterator[tuple[np.ndarray, ...]]:
    """The arrays flattened, a million elements at a time: numpy expressions on them then
    need temporaries of a chunk, not of the whole (72 MB each at 3000x3000)."""
    flat = [np.ravel(a) for a in arrays]
    for start in range(0, max(1, flat[0].size), CHUNK):
        yield tuple(f[start : start + CHUNK] for f in flat)


CHUNK = 1 << 20


def dot(a: np.ndarray, b: np.ndarray, *, absolute: bool = False) -> float:
    """sum(a * b), or with ``absolute`` sum(|a| * |b|)."""
    if absolute:
        return sum(float(np.dot(np.abs(x), np.abs(y))) for x, y in chunks(a, b))
    return sum(float(np.dot(x, y)) for x, y in chunks(a, b))


def probe_directions(
    shape: tuple[int, ...], count: int, elementwise_limit: int, rng: np.random.Generator
) -> tuple[Iterator[np.ndarray], str]:
    """Element by element when the input is small, else ``count`` random directions. Made
    one at a time: at 3000x3000 a list of eight directions held 600 MB."""
    size = int(np.prod(shape))
    if size <= elementwise_limit:

        def units() -> Iterator[np.ndarray]:
            for index in range(size):
                unit = np.zeros(size)
                unit[index] = 1.0
                yield unit.reshape(shape)

        return units(), "elements"

    def signs() -> Iterator[np.ndarray]:
        # Random signs: every element moves (unlike a non-negative probe, a sign error
        # cannot cancel out), and they cost a tenth of Gaussian draws at 1e5 elements.
        # Large ones stay int8: an eighth of the memory, and exact.
        for _ in range(count):
            if size >= CHUNK:
                signs = random_bits(rng, size).view(np.int8).reshape(shape)
                signs *= np.int8(2)
                signs -= np.int8(1)
                yield signs
            else:
                yield random_signs(rng, shape)

    return signs(), "directions"


def mixed_signs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Random signs with both present (two or more elements): nudging every element the
    same way leaves x - mean(x) unchanged, and an ill-conditioned point (values ~1e8 a
    hundredth apart) then looked perfectly conditioned half the time at N = 2."""
    signs = random_signs(rng, shape)
    flat = signs.reshape(-1)
    if flat.size >= 2 and np.all(flat == flat[0]):
        flat[0] = -flat[0]
    return signs


def random_signs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """+-1.0 at random: ten times cheaper than rng.choice at 1e5 elements, and made in
    place (no float temporaries of the full size)."""
    size = int(np.prod(shape))
    if size >= MANY_SIGNS:
        signs = random_bits(rng, size).astype(np.float64).reshape(shape)
    else:
        signs = rng.integers(0, 2, size=shape, dtype=np.int8).astype(np.float64)
    signs *= 2.0
    signs -= 1.0
    return signs


# From this many elements on, random signs come from random bytes, eight signs a byte:
# drawing one integer per sign was most of the time of making a direction (390 us against
# 99 us at 1e5 elements; 16 directions of 9e6 elements at the large point). Smaller arrays
# keep one integer a sign, and so the directions they always had.
MANY_SIGNS = 1 << 12


def random_bits(rng: np.random.Generator, size: int) -> np.ndarray:
    """``size`` random 0/1 as uint8."""
    packed = rng.integers(0, 256, size=(size + 7) // 8, dtype=np.uint8)
    return np.unpackbits(packed, count=size)


# Groups of equal elements probed, each along its own indicator, where a probe excused a
# choice of subgradient: the largest values first (where a max's ties are).
TIE_GROUPS = 8


def tie_group_directions(value: np.ndarray, limit: int = TIE_GROUPS) -> list[np.ndarray]:
    """One direction per group of equal elements of ``value`` (1 on the group, 0
    elsewhere), the largest values first, at most ``limit``. Moving every tied element of
    a max together moves the max by exactly as much, with no kink: a backward that routes
    the gradient to each of k tied elements shows k there, where any subgradient gives 1."""
    flat = np.ravel(value)
    values, counts = np.unique(flat, return_counts=True)
    tied = values[counts >= 2][::-1][:limit]
    return [(value == v).astype(np.float64) for v in tied]


# Random-sign probes added where element probes excused a choice of subgradient at a kink:
# each moves two tied elements the same way with probability 1/2, so a gradient routed to
# every tied element shows along at least one of them with probability 1 - 2**-6.
TIE_DIRECTIONS = 6

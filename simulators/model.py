"""What every simulated device kind provides, and the local-time helpers the physics shares."""

from __future__ import annotations

from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from processors.catalog import KindSpec

__all__ = ["WIB_OFFSET_S", "KindModel", "day_index", "local_hour"]

WIB_OFFSET_S: Final = 7 * 3600.0  # Waktu Indonesia Barat, UTC+7, no daylight saving

_Float = npt.NDArray[np.float64]
_Int = npt.NDArray[np.int64]


class KindModel(Protocol):
    """Readings of one device kind, vectorised over (device index, time) pairs."""

    @property
    def spec(self) -> KindSpec:
        """The catalog kind this model produces."""
        ...

    @property
    def decimals(self) -> tuple[int, ...]:
        """Decimals each field is sent with (0: sent as an integer), in catalog column order."""
        ...

    def sample(self, device: _Int, ts: _Float, rng: np.random.Generator) -> _Float:
        """Values, shape (n, fields) in catalog column order; NaN where a field is not sent."""
        ...

    def settle(self, device: _Int, ts: _Float, values: _Float) -> None:
        """Derive dependent fields in place once device faults are applied (e.g. energy)."""
        ...


def local_hour(ts: _Float) -> _Float:
    """Hour of the day in WIB, as a float in [0, 24)."""
    result: _Float = np.mod(ts + WIB_OFFSET_S, 86400.0) / 3600.0
    return result


def day_index(ts: _Float) -> _Int:
    """Days since 1970-01-01 in WIB."""
    result: _Int = np.floor((ts + WIB_OFFSET_S) / 86400.0).astype(np.int64)
    return result

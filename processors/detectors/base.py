"""What detectors report: per-reading scores and, separately, thresholded decisions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from processors.state import OrderedBatch, order_batch

__all__ = ["BatchView", "Findings", "Readings", "split_cells"]

_Int = npt.NDArray[np.intp]
_Float = npt.NDArray[np.float64]
_Bool = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Findings:
    """One detector's verdicts on some readings: score in [0, 1] and a separate decision.

    `ref` identifies the reading (the caller's own numbering), `row` the device, `field` the
    catalog column (-1 for device-level findings), `ts` the reading's observation time.
    """

    detector: str
    ref: npt.NDArray[np.int64]
    row: _Int
    field: _Int
    ts: _Float
    value: _Float
    score: _Float
    flag: _Bool

    def __len__(self) -> int:
        return len(self.ref)

    @staticmethod
    def empty(detector: str) -> Findings:
        """No findings."""
        return Findings(
            detector,
            np.empty(0, np.int64),
            np.empty(0, np.intp),
            np.empty(0, np.intp),
            np.empty(0),
            np.empty(0),
            np.empty(0),
            np.empty(0, np.bool_),
        )

    @staticmethod
    def concat(detector: str, parts: list[Findings]) -> Findings:
        """Findings of several rounds as one."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return Findings.empty(detector)
        return Findings(
            detector,
            np.concatenate([p.ref for p in parts]),
            np.concatenate([p.row for p in parts]),
            np.concatenate([p.field for p in parts]),
            np.concatenate([p.ts for p in parts]),
            np.concatenate([p.value for p in parts]),
            np.concatenate([p.score for p in parts]),
            np.concatenate([p.flag for p in parts]),
        )

    def flagged(self) -> Findings:
        """Only the findings whose decision is positive."""
        keep = self.flag
        return Findings(
            self.detector,
            self.ref[keep],
            self.row[keep],
            self.field[keep],
            self.ts[keep],
            self.value[keep],
            self.score[keep],
            self.flag[keep],
        )


@dataclass(frozen=True, slots=True)
class Readings:
    """A batch as delivered (N readings, repeats included), with its devices' state rows."""

    rows: _Int
    ts: _Float
    values: _Float  # (N x m), every catalog column
    present: _Bool
    usable: _Bool  # present and physically possible


@dataclass(frozen=True, slots=True)
class BatchView:
    """A batch's fresh readings, round-major (see order_batch), in the fields it carries.

    Arrays are per kept reading (K) or per kept reading and carried field (K x a); `columns`
    maps the a carried fields to catalog columns. Values are NaN where not usable, so any
    arithmetic on an unusable reading gives NaN and every comparison with it is False.
    `full` and `usable` are the same readings in every catalog column (K x m); `readings` is
    the batch as delivered; `peer_group` and `facts` are per state row (device).
    """

    order: OrderedBatch
    rows: _Int  # device row of each reading
    ts: _Float
    ref: npt.NDArray[np.int64]  # the caller's numbering of each reading
    columns: _Int
    cells: _Int  # (groups x a) flat positions of the groups' carried fields in state arrays
    values: _Float
    present: _Bool
    last: _Float  # the field's previous usable value on the device (NaN: none yet)
    last_ts: _Float
    last_ref: npt.NDArray[np.int64]
    full: _Float
    usable: _Bool
    readings: Readings
    peer_group: _Int  # peer group code of every state row, for drift (0: unknown)
    facts: Mapping[str, _Float]  # registry facts of every state row (see bank.DeviceFacts)

    @staticmethod
    def no_fresh(readings: Readings, peer_group: _Int, facts: Mapping[str, _Float]) -> BatchView:
        """The view of a batch without a fresh reading (all repeats or late)."""
        m = readings.values.shape[1]
        none = np.zeros(0, dtype=np.intp)
        order = order_batch(none, np.zeros(0), np.zeros(0))
        empty, cells = np.zeros((0, 0)), np.zeros((0, 0), dtype=np.intp)
        return BatchView(
            order,
            none,
            np.zeros(0),
            np.zeros(0, dtype=np.int64),
            none,
            cells,
            empty,
            np.zeros((0, 0), dtype=np.bool_),
            empty,
            empty,
            np.zeros((0, 0), dtype=np.int64),
            np.zeros((0, m)),
            np.zeros((0, m), dtype=np.bool_),
            readings,
            peer_group,
            facts,
        )

    @property
    def fresh(self) -> bool:
        """Whether the batch has readings to learn from."""
        return len(self.order) > 0

    def findings(
        self,
        detector: str,
        flat: _Int,
        score: _Float,
        flag: _Bool,
        *,
        ts: _Float | None = None,
        value: _Float | None = None,
        ref: npt.NDArray[np.int64] | None = None,
    ) -> Findings:
        """Findings for the cells at `flat` positions of the (K x a) arrays; score, flag per cell.

        ts, value and ref default to the reading's own; give them per cell to report another
        reading (the spike detector reports the middle of its window).
        """
        i, c = split_cells(flat, len(self.columns))
        return Findings(
            detector,
            np.take(self.ref, i) if ref is None else ref,
            np.take(self.rows, i),
            np.take(self.columns, c).astype(np.intp, copy=False),
            np.take(self.ts, i) if ts is None else ts,
            np.take(self.values, flat) if value is None else value,
            score,
            flag,
        )


def split_cells(flat: _Int, width: int) -> tuple[_Int, _Int]:
    """Row and column of flat positions in a (rows x width) array.

    Floor division by a scalar is several times faster in numpy than divmod or modulo.
    """
    row = flat // max(width, 1)
    return row, flat - row * width

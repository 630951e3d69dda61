"""The detector bank of one device kind: per-device state in arrays, one batch at a time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, Final, TypeVar

import numpy as np
import numpy.typing as npt

from processors.catalog import DeviceFacts, KindSpec
from processors.detectors import (
    SEVERITY,
    BatchView,
    Detector,
    DriftDetector,
    Findings,
    PhysicalRange,
    Readings,
    SilenceDetector,
    detectors_for,
)
from processors.live import Indicators, LiveIndicators
from processors.state import (
    DeviceTable,
    LastReading,
    OrderedBatch,
    SavedState,
    Scratch,
    cell_index,
    columns_any,
    differs_from,
    grow,
    order_batch,
)

__all__ = ["KEPT_OUT", "SEVERITY", "DeviceFacts", "KindProcessor"]

_D = TypeVar("_D", bound=Detector)


_FACTS: Final = tuple(f.name for f in fields(DeviceFacts))

# Findings whose readings are faults: kept out of the live indicators. Not level_shift,
# noise_burst, unusual or pattern_lost: a real pollution episode or flood can look like those,
# and dropping real data from the ISPU or the flood level would hide the very event they show.
KEPT_OUT: Final = frozenset({"impossible", "spike", "stuck", "drift"})


class KindProcessor:
    """All detectors of one kind over all its devices; state survives via snapshot/restore.

    The detectors are those registered for the kind (processors.detectors.registry);
    `params` gives a detector, by name, its own keyword arguments. `report_all` False:
    only flagged findings (faster; the live path).
    """

    def __init__(
        self,
        spec: KindSpec,
        facts: Mapping[str, DeviceFacts] | None = None,
        *,
        report_all: bool = True,
        params: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.spec = spec
        self.report_all = report_all
        self.facts = dict(facts or {})
        self.table = DeviceTable()
        self.last_ts = np.full(0, np.nan)
        self.device_facts = {name: np.full(0, np.nan) for name in _FACTS}
        self.detectors = detectors_for(spec, report_all=report_all, params=params)
        self.last = LastReading(len(spec.fields))
        self._district_table = DeviceTable()  # district name -> code - 1 (code 0: unknown)
        self.district_code = np.zeros(0, dtype=np.intp)
        self.live = LiveIndicators(spec)
        self.districts = np.full(0, "", dtype=object)
        # Peer groups, for drift: the registry's (a river, an airshed), else the district.
        self._peer_table = DeviceTable()  # group name -> code - 1 (code 0: none)
        self.peer_code = np.zeros(0, dtype=np.intp)
        self.peers = np.full(0, "", dtype=object)
        self._touched = np.zeros(0, dtype=np.bool_)  # devices with new readings since indicators()
        self._range = PhysicalRange(spec)
        self._scratch = Scratch()  # per-batch buffers (see processors.state.Scratch)
        self._facts_filled = 0  # rows [0, _facts_filled) have their registry facts

    def detector(self, kind: type[_D]) -> _D:
        """The bank's detector of a class (KeyError if the kind has none)."""
        for detector in self.detectors:
            if isinstance(detector, kind):
                return detector
        raise KeyError(f"no {kind.__name__} for {self.spec.kind}")

    @property
    def silence(self) -> SilenceDetector:
        """The silence detector (for sweeps)."""
        return self.detector(SilenceDetector)

    @property
    def drift(self) -> DriftDetector:
        """The drift detector."""
        return self.detector(DriftDetector)

    def _parts(self) -> tuple[Detector | SavedState, ...]:
        """Every holder of per-device state arrays (for growing and snapshots)."""
        return (*self.detectors, self.live, self.last)

    def _ensure(self, rows: npt.NDArray[np.intp]) -> None:
        known = len(self.last_ts)
        if len(self.table) > known:
            capacity = max(len(self.table), 2 * known)
            self.last_ts = grow(self.last_ts, capacity, np.nan)
            for name in _FACTS:
                self.device_facts[name] = grow(self.device_facts[name], capacity, np.nan)
            for part in self._parts():
                part.ensure(capacity)
            self.districts = grow(self.districts, capacity, "")
            self.district_code = grow(self.district_code, capacity, 0)
            self.peers = grow(self.peers, capacity, "")
            self.peer_code = grow(self.peer_code, capacity, 0)
            self._touched = grow(self._touched, capacity, False)
        # Registry facts of every device added since the last call, spare capacity or not.
        self._fill_facts(self._facts_filled, len(self.table))

    def _fill_facts(self, start: int, stop: int) -> None:
        """Registry facts of rows [start, stop); the silence detector's known interval."""
        for row in range(start, stop):
            facts = self.facts.get(self.table.device_id(row))
            if facts is not None:
                for name in _FACTS:
                    self.device_facts[name][row] = getattr(facts, name)
        for detector in self.detectors:
            detector.take_facts(self.device_facts, start, stop)
        self._facts_filled = stop

    def process(
        self,
        device_ids: npt.ArrayLike,
        ts: npt.NDArray[np.float64],
        values: npt.NDArray[np.float64],
        present: npt.NDArray[np.bool_],
        districts: npt.ArrayLike | None = None,
        groups: npt.ArrayLike | None = None,
    ) -> list[Findings]:
        """Score one batch (any order, repeats allowed) and learn from its new readings.

        `districts` place each reading's device for the indicators, `groups` name its peer
        group for drift ("" or none given: the district).
        """
        rows = self.table.rows(device_ids)
        self._ensure(rows)
        if districts is not None:
            self._set_districts(rows, np.asarray(districts))
        if districts is not None or groups is not None:
            self._set_peers(rows, districts, groups)
        present = np.asarray(present, dtype=np.bool_)
        readings = Readings(rows, ts, values, present, self._range.usable(values, present))
        order = order_batch(rows, ts, self.last_ts)
        if len(order) == 0:
            batch = BatchView.no_fresh(readings, self.peer_code, self.device_facts)
        else:
            batch = self._view(readings, order)
        findings: list[Findings] = []
        for detector in self.detectors:
            if batch.fresh or not detector.fresh_only:
                findings += detector.process(batch)
            else:
                findings += [Findings.empty(report.finding) for report in detector.reports]
        usable = self._keep_out(findings, batch)
        if batch.fresh:
            carries = np.zeros(len(self.spec.fields), dtype=np.bool_)
            carries[batch.columns] = True
            self.live.learn(order, batch.ts, batch.full, usable, self.device_facts, carries=carries)
            self.last_ts[order.rows] = batch.ts[order.last]
            self._touched[order.rows] = True
        return findings

    def _keep_out(self, findings: list[Findings], batch: BatchView) -> npt.NDArray[np.bool_]:
        """The batch's usable cells less those KEPT_OUT flags; earlier readings forgotten.

        A flagged reading newer than its device's last processed one is of this batch: its
        cell is masked in a copy (the detectors own batch.usable). An older one (the spike
        detector decides one reading later) was learned already: the indicators forget it.
        """
        flagged = [f.flagged() for f in findings if f.detector in KEPT_OUT and f.flag.any()]
        if not flagged:
            return batch.usable
        row = np.concatenate([f.row for f in flagged])
        column = np.concatenate([f.field for f in flagged])
        ts = np.concatenate([f.ts for f in flagged])
        ref = np.concatenate([f.ref for f in flagged])
        value = np.concatenate([f.value for f in flagged])
        cell = column >= 0  # not device-level findings
        here = cell & ~(ts <= self.last_ts[row])  # NaN: the device's first batch
        earlier = cell & ~here
        if earlier.any():
            self.live.forget(row[earlier], ts[earlier], column[earlier], value[earlier])
        if not here.any() or not batch.fresh:
            return batch.usable
        # Each delivered reading's position among the fresh ones (round-major), -1 if none.
        position = np.full(len(batch.readings.ts), -1, dtype=np.intp)
        position[batch.ref] = np.arange(len(batch.ref))
        mine = ref[here]
        at = np.take(position, np.clip(mine, 0, len(position) - 1))
        known = (at >= 0) & (mine >= 0) & (mine < len(position))
        known[known] &= (batch.rows[at[known]] == row[here][known]) & (
            batch.ts[at[known]] == ts[here][known]
        )
        usable = batch.usable.copy()
        usable[at[known], column[here][known]] = False
        return usable

    def _view(self, readings: Readings, order: OrderedBatch) -> BatchView:
        """The fresh readings of a batch, round-major, gathered once for every detector."""
        ts, values, ok = readings.ts, readings.values, readings.usable
        m = len(self.spec.fields)
        scratch = self._scratch
        index = order.index
        # Everything below is round-major (see order_batch) and gathered once per batch.
        # np.take: numpy's fancy row indexing is several times slower for narrow rows.
        t, ref = ts[index], index.astype(np.int64)
        usable = np.take(ok, index, axis=0)
        full = np.take(values, index, axis=0)
        carries = columns_any(usable)
        carried = np.flatnonzero(carries)  # fields absent from the batch cost nothing
        # NaN: nothing usable to learn. Column by column: most are all usable or all absent
        # (a masked copy over the whole array costs several times more).
        every_usable = True  # every carried field usable in every reading (the usual batch)
        for j in range(m):
            if not carries[j]:
                full[:, j] = np.nan
            elif not usable[:, j].all():
                np.copyto(full[:, j], np.nan, where=~usable[:, j])
                every_usable = False
        if len(carried) == m:
            sub_values, sub_usable = full, usable
        else:  # C-contiguous copies (fancy indexing of columns would give a strided layout)
            shape = (len(index), len(carried))
            sub_values = np.take(full, carried, axis=1, out=scratch("values", shape), mode="clip")
            sub_usable = scratch("usable", shape, np.bool_)
            if every_usable:
                sub_usable.fill(True)
            else:
                np.take(usable, carried, axis=1, out=sub_usable, mode="clip")
        cells = cell_index(order.rows, carried, m)
        last, last_ts, last_ref = self.last.advance(order, cells, t, sub_values, sub_usable, ref)
        return BatchView(
            order,
            order.rows[order.group],
            t,
            ref,
            carried,
            cells,
            sub_values,
            sub_usable,
            last,
            last_ts,
            last_ref,
            full,
            usable,
            readings,
            self.peer_code,
            self.device_facts,
        )

    def _set_districts(self, rows: npt.NDArray[np.intp], names: npt.NDArray[Any]) -> None:
        """Each device's district (the last given in the batch) and its code."""
        devices, codes = self._name_codes(rows, names, self._district_table)
        self.district_code[devices] = codes
        by_code = np.array(["", *self._district_table.ids], dtype=object)
        self.districts[devices] = by_code[codes]

    def _set_peers(
        self,
        rows: npt.NDArray[np.intp],
        districts: npt.ArrayLike | None,
        groups: npt.ArrayLike | None,
    ) -> None:
        """Each device's peer group (the last given in the batch; else its district)."""
        if groups is None:
            names = np.asarray(districts).reshape(-1)
        else:
            names = np.asarray(groups, dtype=str).reshape(-1)
            if districts is not None:
                names = np.where(names == "", np.asarray(districts, dtype=str).reshape(-1), names)
        devices, codes = self._name_codes(rows, names, self._peer_table)
        self.peer_code[devices] = codes
        by_code = np.array(["", *self._peer_table.ids], dtype=object)
        self.peers[devices] = by_code[codes]

    def _name_codes(
        self, rows: npt.NDArray[np.intp], names: npt.NDArray[Any], table: DeviceTable
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        """The batch's devices and the code (table row + 1) of the last name each is given."""
        # Only the last reading of each device decides: one name looked up per device, plus
        # the readings naming another, so that every name of the batch is known (numbered)
        # just as looking up each reading's would.
        names = names.reshape(-1)
        newest = np.full(len(self.district_code), -1, dtype=np.intp)
        np.maximum.at(newest, rows, np.arange(len(rows)))
        devices = np.flatnonzero(newest >= 0)
        pick = newest[devices]
        other = np.flatnonzero(differs_from(names, newest[rows]))
        codes = table.rows(names[np.concatenate([pick, other])])[: len(pick)] + 1
        return devices, codes

    def indicators(self, now: float) -> Indicators:
        """Indicators of the devices (and districts) that got new readings since the last call."""
        rows = np.flatnonzero(self._touched)
        self._touched[:] = False
        return self.live.compute(rows, self.device_facts, self.districts, now, self.last_ts)

    def sweep(self, now: float) -> Findings:
        """Devices gone silent by `now` (each reported once per silence)."""
        return self.silence.sweep(now)

    def device_id(self, row: int) -> str:
        """The device id of a state row."""
        return self.table.device_id(row)

    # -- surviving a restart ---------------------------------------------------------------------

    def snapshot(self) -> dict[str, npt.NDArray[Any]]:
        """Every state array, by name, for saving (e.g. numpy.savez); see restore()."""
        arrays: dict[str, npt.NDArray[Any]] = {
            "ids": np.array(self.table.ids, dtype=str),
            "last_ts": self.last_ts,
        }
        for part in self._parts():
            arrays.update(part.save())
        arrays["districts"] = self.districts.astype(str)
        if (self.peers != self.districts).any():  # only then: older snapshots have no groups
            arrays["peer_groups"] = self.peers.astype(str)
        return arrays

    def restore(self, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        """Load state saved by snapshot() (same kind); devices keep their rows.

        Each detector (and the shared last readings, and the indicators) takes its declared
        fields in its version, or starts fresh with a warning (processors.state.saved). A
        snapshot of a layout without the shared last readings is ignored: the detectors then
        start fresh rather than from state that no longer fits together.
        """
        if "last.value" not in arrays:
            return
        self.table = DeviceTable(str(d) for d in arrays["ids"])
        self.last_ts = np.array(arrays["last_ts"], dtype=np.float64)
        # Every per-device array as long as last_ts (the capacity, which may exceed the table).
        capacity = len(self.last_ts)
        for part in self._parts():
            part.load(arrays, capacity)
        self.live.recount()
        self.districts = np.full(capacity, "", dtype=object)
        if "districts" in arrays:
            self.districts[: len(arrays["districts"])] = np.array(arrays["districts"], dtype=object)
        self._district_table = DeviceTable()
        self.district_code = np.zeros(capacity, dtype=np.intp)
        self._touched = np.zeros(capacity, dtype=np.bool_)
        for row, name in enumerate(self.districts.tolist()):
            if name:
                self.district_code[row] = self._district_table.row(str(name)) + 1
        self.peers = self.districts.copy()
        if "peer_groups" in arrays:
            self.peers[: len(arrays["peer_groups"])] = np.array(arrays["peer_groups"], dtype=object)
        self._peer_table = DeviceTable()
        self.peer_code = np.zeros(capacity, dtype=np.intp)
        for row, name in enumerate(self.peers.tolist()):
            if name:
                self.peer_code[row] = self._peer_table.row(str(name)) + 1
        self.device_facts = {name: np.full(capacity, np.nan) for name in _FACTS}
        self._fill_facts(0, len(self.table))  # the registry as it is now

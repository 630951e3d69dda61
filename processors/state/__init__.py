"""Per-device streaming state: the device table, batch ordering, kernels, saved fields."""

from processors.state.devices import DeviceTable, differs_from
from processors.state.kernels import RowOperand, Scratch, cell_index, columns_any, flat, grow
from processors.state.last import LastReading
from processors.state.ordering import OrderedBatch, order_batch
from processors.state.saved import SavedState, StateField

__all__ = [
    "DeviceTable",
    "LastReading",
    "OrderedBatch",
    "RowOperand",
    "SavedState",
    "Scratch",
    "StateField",
    "cell_index",
    "columns_any",
    "differs_from",
    "flat",
    "grow",
    "order_batch",
]

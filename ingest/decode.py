"""Payload decoding: bytes to a list of reading objects, or the reason the message is unusable."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

import orjson

from ingest.rejections import Reason

__all__ = ["DecodeError", "NonFinite", "decode_payload"]


@dataclass(frozen=True, slots=True)
class NonFinite:
    """A JSON NaN/Infinity token; kept as a value so only its reading is rejected, not the batch."""

    token: str


class DecodeError(ValueError):
    """The whole message is unusable; carries the rejection reason."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _non_finite(token: str) -> NonFinite:
    return NonFinite(token)


_DECODER: Final = json.JSONDecoder(parse_constant=_non_finite)


def decode_payload(payload: bytes, *, max_bytes: int, max_readings: int) -> list[Any]:
    """Decode a single-object or gateway-batch payload into its (unchecked) readings."""
    if not payload:
        raise DecodeError(Reason.EMPTY_PAYLOAD, "empty payload")
    if len(payload) > max_bytes:
        raise DecodeError(
            Reason.PAYLOAD_TOO_LARGE, f"payload of {len(payload)} bytes exceeds {max_bytes}"
        )
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError:
        # orjson refuses NaN tokens, deep nesting and huge integers outright; the standard
        # library parser tells those cases apart, so only a bad reading is dropped.
        document = _decode_precisely(payload)
    if isinstance(document, dict):
        return [document]
    if isinstance(document, list):
        if not document:
            raise DecodeError(Reason.EMPTY_BATCH, "gateway batch has no readings")
        if len(document) > max_readings:
            raise DecodeError(
                Reason.TOO_MANY_READINGS,
                f"gateway batch of {len(document)} readings exceeds {max_readings}",
            )
        return document
    raise DecodeError(
        Reason.NOT_OBJECT, f"payload must be a JSON object or array, got {type(document).__name__}"
    )


def _decode_precisely(payload: bytes) -> Any:
    """The slow path: the standard library parser, with a reason for every failure."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(
            Reason.NOT_UTF8, f"payload is not UTF-8: {exc.reason} at {exc.start}"
        ) from None
    try:
        document = _DECODER.decode(text)
    except RecursionError:
        raise DecodeError(Reason.TOO_DEEP, "JSON nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise DecodeError(Reason.MALFORMED_JSON, f"malformed JSON: {exc}") from None
    except ValueError as exc:  # e.g. an integer literal beyond Python's 4300-digit limit
        raise DecodeError(Reason.MALFORMED_JSON, f"unparseable JSON: {exc}") from None
    return document

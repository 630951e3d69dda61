"""Coverage-guided fuzzing of the payload decoder with atheris (run by tests/test_decoder_fuzz.py).

Run by hand: .venv/bin/python tests/fuzz_decoder.py -max_total_time=60
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).parents[1]))

with atheris.instrument_imports():
    from tests.decoder_invariants import TOPICS, check_one_message


def one_input(data: bytes) -> None:
    """Any bytes as a payload on one of a few topics."""
    if not data:
        return
    check_one_message(TOPICS[data[0] % len(TOPICS)], data[1:])


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()

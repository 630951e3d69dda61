"""Kabupaten Purbalingga's 18 kecamatan, as laid out in deploy/registry.example.csv."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["DISTRICTS", "District"]


@dataclass(frozen=True, slots=True)
class District:
    """One kecamatan: where its devices stand and the facts the simulated physics needs."""

    name: str
    lat: float  # the air-quality station; lamps and the gauge are laid out around it
    lon: float
    river: str  # the river at the district's gauge
    waspada_cm: float
    siaga_cm: float
    awas_cm: float
    lamp_watts: tuple[float, float, float]  # rated power of the example's three lamps
    altitude_m: float  # approximate town altitude, for the temperature lapse rate
    urban: float  # traffic and open-burning intensity relative to a small town (1.0)
    # The gauge's place along its river from upstream (1: the top), for the drift detector's
    # peer groups; None: not ordered (a tributary's lone gauge, or a pair that is never judged).
    peer_order: int | None = None


# Coordinates, rivers, thresholds and wattages are those of deploy/registry.example.csv (a test
# keeps the two in step). Altitudes and urban factors are rough simulation inputs, not survey data:
# the regency rises from ~40 m by the Serayu in the south to ~900 m on Gunung Slamet's flank.
# The Klawing runs north to south through Purbalingga town into the Serayu: its gauges are
# ordered by latitude, north first. The Serayu flows west along the southern edge: Kejobong's
# gauge is upstream of Bukateja's.
DISTRICTS: Final = (
    District(
        "bobotsari",
        -7.291,
        109.4252,
        "Klawing",
        150,
        250,
        350,
        (120, 60, 40),
        200,
        1.2,
        peer_order=3,
    ),
    District("bojongsari", -7.333, 109.3582, "Gintung", 120, 200, 280, (90, 60, 40), 130, 1.0),
    District(
        "bukateja", -7.435, 109.4292, "Serayu", 300, 450, 600, (90, 60, 40), 60, 1.2, peer_order=2
    ),
    District(
        "kaligondang",
        -7.39,
        109.4132,
        "Klawing",
        150,
        250,
        350,
        (90, 60, 40),
        90,
        1.0,
        peer_order=5,
    ),
    District(
        "kalimanah", -7.411, 109.3322, "Klawing", 150, 250, 350, (90, 60, 40), 60, 1.3, peer_order=6
    ),
    District("karanganyar", -7.257, 109.4732, "Ranu", 120, 200, 280, (90, 60, 40), 250, 0.9),
    District(
        "karangjambu",
        -7.204,
        109.4252,
        "Klawing",
        100,
        180,
        260,
        (90, 60, 40),
        650,
        0.6,
        peer_order=1,
    ),
    District("karangmoncol", -7.267, 109.5582, "Tambra", 120, 200, 280, (90, 60, 40), 300, 0.8),
    District(
        "karangreja",
        -7.237,
        109.3102,
        "Klawing",
        100,
        180,
        260,
        (90, 60, 40),
        900,
        0.7,
        peer_order=2,
    ),
    District(
        "kejobong", -7.401, 109.4792, "Serayu", 300, 450, 600, (90, 60, 40), 70, 0.9, peer_order=1
    ),
    District(
        "kemangkon", -7.462, 109.3462, "Klawing", 150, 250, 350, (90, 60, 40), 40, 1.0, peer_order=7
    ),
    District("kertanegara", -7.24, 109.5122, "Langkap", 120, 200, 280, (90, 60, 40), 300, 0.8),
    District("kutasari", -7.317, 109.3192, "Mulai", 120, 200, 280, (90, 60, 40), 250, 0.9),
    District("mrebet", -7.301, 109.3882, "Kacangan", 120, 200, 280, (90, 60, 40), 230, 1.0),
    District("padamara", -7.383, 109.3202, "Gintung", 120, 200, 280, (90, 60, 40), 80, 1.2),
    District("pengadegan", -7.362, 109.5282, "Sapi", 120, 200, 280, (90, 60, 40), 120, 0.8),
    District(
        "purbalingga",
        -7.387,
        109.3652,
        "Klawing",
        150,
        250,
        350,
        (120, 90, 60),
        70,
        1.6,
        peer_order=4,
    ),
    District("rembang", -7.302, 109.5892, "Sapi", 120, 200, 280, (90, 60, 40), 250, 0.8),
)

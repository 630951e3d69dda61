from __future__ import annotations

import math
import pickle
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pantau.registry import (
    COLUMNS,
    Device,
    DeviceError,
    Registry,
    RegistryError,
    facts_from_registry,
)
from processors.catalog import KINDS

EXAMPLE = Path(__file__).resolve().parent.parent / "deploy" / "registry.example.csv"
# The columns up to river: rows below leave the optional peer columns out of the header.
HEADER = ",".join(COLUMNS[: COLUMNS.index("river") + 1])
PEER_HEADER = ",".join(COLUMNS)
AQ = "aq-x-01,air_quality,purbalingga,kalimanah,-7.41,109.33,60,,,,,"
SL = "sl-x-01,streetlight,purbalingga,kalimanah,-7.41,109.33,60,,,,90,"
WL = "wl-x-01,water_level,purbalingga,kalimanah,-7.41,109.33,300,150,250,350,,Klawing"
KECAMATAN = {
    "bobotsari",
    "bojongsari",
    "bukateja",
    "kaligondang",
    "kalimanah",
    "karanganyar",
    "karangjambu",
    "karangmoncol",
    "karangreja",
    "kejobong",
    "kemangkon",
    "kertanegara",
    "kutasari",
    "mrebet",
    "padamara",
    "pengadegan",
    "purbalingga",
    "rembang",
}


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "registry.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def load_error(tmp_path: Path, *lines: str, field: str | None = None) -> RegistryError:
    path = write(tmp_path, *lines)
    with pytest.raises(RegistryError) as info:
        Registry.from_csv(path)
    error = info.value
    assert error.path == str(path)
    # File, row and (for a cell's problem) field, then the reason.
    where = f"{path}, row {error.line}" + (f", field {error.field}" if error.field else "")
    assert str(error) == f"{where}: {error.reason}"
    if field is not None:
        assert error.field == field
    return error


# The example registry.


def test_example_registry_covers_purbalingga() -> None:
    registry = Registry.from_csv(EXAMPLE)
    assert len(registry) >= 54
    assert set(registry.districts()) == KECAMATAN
    assert registry.districts("purbalingga") == registry.districts()
    assert registry.cities() == ("purbalingga",)
    for kind in KINDS:
        assert registry.by_kind(kind)
    for district in KECAMATAN:
        assert f"aq-{district}-01" in registry
        assert f"wl-{district}-01" in registry
        for n in (1, 2, 3):
            lamp = registry.get(f"sl-{district}-0{n}")
            assert lamp is not None
            assert lamp.rated_w in (40.0, 60.0, 90.0, 120.0)
    for device in registry:
        # Inside the regency's bounding box.
        assert -7.5 <= device.lat <= -7.1
        assert 109.2 <= device.lon <= 109.6
        assert device.interval_s == (300.0 if device.kind == "water_level" else 60.0)
    for gauge in registry.by_kind("water_level"):
        assert gauge.river
        assert gauge.waspada_cm is not None and gauge.siaga_cm is not None
        assert gauge.awas_cm is not None
        assert gauge.waspada_cm < gauge.siaga_cm < gauge.awas_cm


def test_example_registry_round_trips_byte_for_byte(tmp_path: Path) -> None:
    registry = Registry.from_csv(EXAMPLE)
    out = tmp_path / "copy.csv"
    registry.write_csv(out)
    assert Registry.from_csv(out) == registry
    assert out.read_bytes() == EXAMPLE.read_bytes()


def test_lookup_api() -> None:
    registry = Registry.from_csv(EXAMPLE)
    gauge = registry.get("wl-purbalingga-01")
    assert gauge is not None
    assert gauge.topic == "city/purbalingga/purbalingga/water_level/wl-purbalingga-01"
    assert gauge.river == "Klawing"
    assert registry.get("nope") is None
    assert "nope" not in registry
    assert gauge in registry
    assert replace(gauge, lat=-7.0) not in registry
    assert 42 not in registry
    assert sum(len(registry.by_kind(k)) for k in KINDS) == len(registry)
    with pytest.raises(KeyError, match="unknown kind"):
        registry.by_kind("air")
    assert registry.districts("elsewhere") == ()


# Device and Registry construction.


def test_device_normalises_numbers_to_float() -> None:
    device = Device("sl-1", "streetlight", "c", "d", lat=0, lon=1, interval_s=60, rated_w=40)
    assert isinstance(device.lat, float)
    assert isinstance(device.rated_w, float)
    with pytest.raises(ValueError, match="must be a number") as info:
        Device("sl-1", "streetlight", "c", "d", lat=True, lon=1, interval_s=60, rated_w=40)
    assert isinstance(info.value, DeviceError)
    assert str(info.value) == "lat must be a number, got True"
    assert info.value.field == "lat"


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"kind": "noise"}, "kind", "unknown kind 'noise'"),
        ({"district": "Kalimanah"}, "district", "is not a topic segment"),
        ({"lon": float("inf")}, "lon", "lon must be finite, got inf"),
        ({"river": 5}, "river", "river must be text, got 5"),
        ({"awas_cm": 200.0}, "awas_cm", "thresholds must rise strictly"),
        ({"siaga_cm": None}, "siaga_cm", "gauge needs all of siaga_cm"),
        ({"rated_w": 60.0}, "rated_w", "rated_w given for kind water_level"),
        ({"peer_group": 5}, "peer_group", "peer_group must be text, got 5"),
        ({"peer_group": " river:x"}, "peer_group", "must be non-empty, without outer spaces"),
        ({"peer_order": 0}, "peer_order", "peer_order 0 must be a whole number >= 1"),
        ({"peer_order": 1.5}, "peer_order", "peer_order 1.5 must be a whole number >= 1"),
        ({"peer_order": True}, "peer_order", "peer_order must be a number, got True"),
        ({"river": None, "peer_order": 2}, "peer_order", "peer_order needs a river or"),
    ],
)
def test_device_errors_name_their_field(
    changes: dict[str, object], field: str, reason: str
) -> None:
    gauge = Device(
        "wl-1", "water_level", "c", "d", 0.0, 0.0, 300.0, 150.0, 250.0, 350.0, river="Klawing"
    )
    with pytest.raises(DeviceError) as info:
        replace(gauge, **changes)  # type: ignore[arg-type]
    assert info.value.field == field
    assert reason in info.value.reason and str(info.value) == info.value.reason


def test_registry_constructor_rejects_duplicates() -> None:
    device = Device("aq-1", "air_quality", "a", "d", lat=0.0, lon=0.0, interval_s=60.0)
    elsewhere = replace(device, city="b")
    with pytest.raises(RegistryError, match="duplicate device_id 'aq-1'"):
        Registry([device, elsewhere])


def test_empty_registry_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    Registry([]).write_csv(path)
    assert path.read_text(encoding="utf-8") == PEER_HEADER + "\n"
    assert len(Registry.from_csv(path)) == 0


def test_lenient_input_is_accepted(tmp_path: Path) -> None:
    # A byte-order mark, blank lines, spaces and a header without the per-kind columns.
    path = tmp_path / "r.csv"
    path.write_bytes(
        b"\xef\xbb\xbfdevice_id, kind ,city,district,lat,lon,interval_s\n\n"
        b"aq-1, air_quality ,purbalingga,rembang, -7.3 ,109.58,60\n\n"
    )
    (device,) = Registry.from_csv(path)
    assert device.kind == "air_quality"
    assert device.lat == -7.3


def test_error_pickles() -> None:
    error = RegistryError("bad", "r.csv", 3)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.reason, copy.path, copy.line, copy.field, str(copy)) == (
        "bad",
        "r.csv",
        3,
        None,
        "r.csv, row 3: bad",
    )
    error = RegistryError("bad", "r.csv", 3, "lat")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.field, str(copy)) == ("lat", "r.csv, row 3, field lat: bad")
    device_error = pickle.loads(pickle.dumps(DeviceError("bad", "lat")))
    assert (device_error.reason, device_error.field) == ("bad", "lat")


# One test per RegistryError case.


def test_lat_out_of_range_names_file_and_line(tmp_path: Path) -> None:
    bad = AQ.replace("-7.41", "123", 1)
    error = load_error(tmp_path, HEADER, SL, WL, bad, field="lat")
    assert error.line == 4
    assert str(error) == (
        f"{tmp_path / 'registry.csv'}, row 4, field lat: lat 123 outside [-90, 90]"
    )


def test_lon_out_of_range(tmp_path: Path) -> None:
    error = load_error(tmp_path, HEADER, AQ.replace("109.33", "190.5"), field="lon")
    assert "lon 190.5 outside [-180, 180]" in str(error)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "registry.csv"
    path.write_bytes(b"")
    with pytest.raises(RegistryError, match="row 1: empty file; a header row is required"):
        Registry.from_csv(path)


def test_missing_header_row(tmp_path: Path) -> None:
    # The first data row is taken as the header: its cells are not column names.
    error = load_error(tmp_path, AQ)
    assert error.line == 1
    assert "unknown column" in error.reason


def test_missing_required_columns(tmp_path: Path) -> None:
    error = load_error(tmp_path, "device_id,kind,city,district,lat", "aq-1,air_quality,c,d,1")
    assert error.line == 1
    assert "missing required column(s) lon, interval_s" in error.reason


def test_unknown_column(tmp_path: Path) -> None:
    error = load_error(tmp_path, HEADER.replace("rated_w", "rated_watts"), SL)
    assert "unknown column(s) 'rated_watts'" in error.reason


def test_repeated_column(tmp_path: Path) -> None:
    error = load_error(tmp_path, HEADER + ",river", SL + ",")
    assert "repeated column(s) river" in error.reason


def test_wrong_cell_count(tmp_path: Path) -> None:
    error = load_error(tmp_path, HEADER, AQ + ",")
    assert error.line == 2
    assert "13 cells, the header has 12" in error.reason


def test_malformed_csv(tmp_path: Path) -> None:
    error = load_error(tmp_path, HEADER, WL.replace("Klawing", '"Kla"wing'))
    assert "malformed CSV" in error.reason


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "registry.csv"
    path.write_bytes(f"{HEADER}\n{AQ}\n{WL}\n".replace("Klawing", "K\xe9").encode("latin-1"))
    with pytest.raises(RegistryError, match="row 3: not valid UTF-8"):
        Registry.from_csv(path)


def test_unknown_kind(tmp_path: Path) -> None:
    error = load_error(tmp_path, HEADER, AQ.replace("air_quality", "noise"), field="kind")
    assert "unknown kind 'noise'" in error.reason


def test_bad_segment(tmp_path: Path) -> None:
    error = load_error(tmp_path, HEADER, AQ.replace("kalimanah", "Kalimanah"), field="district")
    assert "district 'Kalimanah' is not a topic segment" in error.reason


def test_empty_required_cell(tmp_path: Path) -> None:
    error = load_error(tmp_path, HEADER, AQ.replace(",60,", ",,"), field="interval_s")
    assert "interval_s is empty" in error.reason


def test_duplicate_ids_even_across_cities(tmp_path: Path) -> None:
    other_city = AQ.replace("purbalingga,kalimanah", "banyumas,sokaraja")
    error = load_error(tmp_path, HEADER, AQ, SL, other_city, field="device_id")
    assert error.line == 4
    assert "duplicate device_id 'aq-x-01' (first on line 2)" in error.reason


@pytest.mark.parametrize("number", ["abc", "nan", "inf", "1_000", "7,5", "0x10", "1e400"])
def test_bad_numbers(tmp_path: Path, number: str) -> None:
    cell = f'"{number}"' if "," in number else number
    error = load_error(tmp_path, HEADER, SL.replace(",90,", f",{cell},"), field="rated_w")
    assert error.line == 2
    assert "rated_w" in error.reason


def test_non_positive_interval(tmp_path: Path) -> None:
    error = load_error(tmp_path, HEADER, AQ.replace(",60,", ",0,"), field="interval_s")
    assert "interval_s 0 must be > 0" in error.reason


def test_thresholds_on_a_non_gauge(tmp_path: Path) -> None:
    error = load_error(tmp_path, HEADER, AQ.replace(",60,,,,,", ",60,150,,,,"), field="waspada_cm")
    assert "waspada_cm given for kind air_quality (gauges only)" in error.reason


def test_river_on_a_non_gauge(tmp_path: Path) -> None:
    error = load_error(tmp_path, HEADER, SL + "Klawing", field="river")
    assert "river given for kind streetlight" in error.reason


def test_gauge_without_all_thresholds(tmp_path: Path) -> None:
    error = load_error(tmp_path, HEADER, WL.replace(",250,", ",,"), field="siaga_cm")
    assert "gauge needs all of siaga_cm" in error.reason


def test_thresholds_not_increasing(tmp_path: Path) -> None:
    error = load_error(tmp_path, HEADER, WL.replace("150,250,350", "150,350,250"), field="awas_cm")
    assert "thresholds must rise strictly" in error.reason


def test_thresholds_outside_sensor_range(tmp_path: Path) -> None:
    error = load_error(
        tmp_path, HEADER, WL.replace("150,250,350", "150,250,35000"), field="awas_cm"
    )
    assert "within the level_cm range" in error.reason


def test_streetlight_without_rated_w(tmp_path: Path) -> None:
    error = load_error(tmp_path, HEADER, SL.replace(",90,", ",,"), field="rated_w")
    assert "streetlight needs rated_w" in error.reason


@pytest.mark.parametrize("watts", ["0", "-40", "5000"])
def test_rated_w_out_of_range(tmp_path: Path, watts: str) -> None:
    error = load_error(tmp_path, HEADER, SL.replace(",90,", f",{watts},"), field="rated_w")
    assert "rated_w" in error.reason and "outside" in error.reason


def test_rated_w_on_a_non_lamp(tmp_path: Path) -> None:
    error = load_error(tmp_path, HEADER, WL.replace(",,Klawing", ",60,Klawing"), field="rated_w")
    assert "rated_w given for kind water_level" in error.reason


def test_an_error_in_the_example_registry_names_file_row_and_field(tmp_path: Path) -> None:
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    row = next(n for n, line in enumerate(lines, start=1) if line.startswith("sl-"))
    lines[row - 1] = lines[row - 1].replace(",120,", ",0,").replace(",90,", ",0,")
    path = tmp_path / "registry.example.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(RegistryError) as info:
        Registry.from_csv(path)
    assert str(info.value) == f"{path}, row {row}, field rated_w: rated_w 0 outside (0, 2000]"


def test_a_quoted_line_break_counts_rows_by_their_last_line(tmp_path: Path) -> None:
    river = WL.replace("Klawing", '"Kla\nwing"')
    error = load_error(tmp_path, HEADER, AQ, river, field="river")
    assert error.line == 4 and "must be one line" in error.reason


# Round-trip property.

segments = st.from_regex(r"[a-z0-9_-]{1,64}", fullmatch=True)
rivers = st.none() | st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=40
).map(str.strip).filter(bool)


def finite(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(low, high, allow_nan=False, allow_infinity=False)


@st.composite
def devices(draw: st.DrawFn, device_id: str) -> Device:
    kind = draw(st.sampled_from(KINDS))
    waspada = siaga = awas = rated_w = None
    river = peer_order = None
    if kind == "water_level":
        levels = draw(st.lists(finite(-1000.0, 10000.0), min_size=3, max_size=3, unique=True))
        waspada, siaga, awas = sorted(levels)
        if not waspada < siaga < awas:  # 0.0 and -0.0 are "unique" yet equal
            waspada, siaga, awas = -1.0, 0.5, 2.0
        river = draw(rivers)
        if river is not None:
            peer_order = draw(st.none() | st.integers(1, 10**6))
    elif kind == "streetlight":
        rated_w = draw(finite(1e-3, 2000.0))
    return Device(
        device_id=device_id,
        kind=kind,
        city=draw(segments),
        district=draw(segments),
        lat=draw(finite(-90.0, 90.0)),
        lon=draw(finite(-180.0, 180.0)),
        interval_s=draw(finite(1e-6, 1e7)),
        waspada_cm=waspada,
        siaga_cm=siaga,
        awas_cm=awas,
        rated_w=rated_w,
        river=river,
        peer_group=draw(rivers),
        peer_order=peer_order,
    )


@st.composite
def registries(draw: st.DrawFn) -> Registry:
    ids = draw(st.lists(segments, max_size=8, unique=True))
    return Registry([draw(devices(device_id)) for device_id in ids])


@settings(max_examples=75, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(registry=registries())
def test_write_read_round_trip(tmp_path: Path, registry: Registry) -> None:
    path = tmp_path / "r.csv"
    registry.write_csv(path)
    again = Registry.from_csv(path)
    assert again == registry
    assert list(again) == list(registry)
    # And the second write is byte-identical to the first.
    first = path.read_bytes()
    again.write_csv(path)
    assert path.read_bytes() == first


# Peer groups (the drift detector's peers).


def test_example_peer_groups_follow_the_rivers() -> None:
    registry = Registry.from_csv(EXAMPLE)
    klawing = sorted(
        (g for g in registry.by_kind("water_level") if g.peer == "river:klawing"),
        key=lambda g: g.peer_order or 0,
    )
    assert [g.district for g in klawing] == [
        "karangjambu",
        "karangreja",
        "bobotsari",
        "purbalingga",
        "kaligondang",
        "kalimanah",
        "kemangkon",
    ]
    # North (upstream) to south.
    assert [g.lat for g in klawing] == sorted((g.lat for g in klawing), reverse=True)
    gauges = registry.by_kind("water_level")
    serayu = {g.district: g.peer_order for g in gauges if g.peer == "river:serayu"}
    assert serayu == {"kejobong": 1, "bukateja": 2}
    for gauge in registry.by_kind("water_level"):
        assert gauge.peer == "river:" + (gauge.river or "").lower()
    assert {d.peer for d in registry.by_kind("air_quality")} == {"airshed:purbalingga"}
    for lamp in registry.by_kind("streetlight"):
        assert lamp.peer_group is None and lamp.peer == f"circuit:{lamp.district}"


def test_peer_group_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, AQ, SL, WL, WL.replace("wl-x-01", "wl-x-02")[: -len("Klawing")])
    registry = Registry.from_csv(path)
    peers = {d.device_id: (d.peer_group, d.peer, d.peer_order) for d in registry}
    assert peers == {
        "aq-x-01": (None, "airshed:purbalingga", None),
        "sl-x-01": (None, "circuit:kalimanah", None),
        "wl-x-01": (None, "river:klawing", None),
        "wl-x-02": (None, None, None),  # no river, no group: the bank uses its district
    }
    multi = Device("wl-1", "water_level", "c", "d", 0, 0, 300, 1, 2, 3, river="Kali  Pelus")
    assert multi.peer == "river:kali-pelus"


def test_peer_columns_are_read_and_written(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        PEER_HEADER,
        AQ + ",airshed:south,",
        SL + ",circuit:7,",
        WL + ",,3",
        WL.replace("wl-x-01", "wl-x-02") + ",river:upper-klawing,1",
    )
    registry = Registry.from_csv(path)
    peers = {d.device_id: (d.peer, d.peer_order) for d in registry}
    assert peers == {
        "aq-x-01": ("airshed:south", None),
        "sl-x-01": ("circuit:7", None),
        "wl-x-01": ("river:klawing", 3),
        "wl-x-02": ("river:upper-klawing", 1),
    }
    again = tmp_path / "again.csv"
    registry.write_csv(again)
    assert again.read_text(encoding="utf-8") == path.read_text(encoding="utf-8")
    facts = facts_from_registry(registry)
    assert facts["wl-x-01"].peer_order == 3.0 and math.isnan(facts["aq-x-01"].peer_order)


@pytest.mark.parametrize(
    ("row", "field", "reason"),
    [
        (AQ + ",,1", "peer_order", "peer_order given for kind air_quality (gauges only)"),
        (SL + ",,2", "peer_order", "peer_order given for kind streetlight (gauges only)"),
        (WL + ",,0", "peer_order", "peer_order 0 must be a whole number >= 1"),
        (WL + ",,2.5", "peer_order", "peer_order 2.5 must be a whole number >= 1"),
        (WL + ",,-1", "peer_order", "peer_order -1 must be a whole number >= 1"),
        (WL + ",,first", "peer_order", "peer_order 'first' is not a number"),
        (WL[: -len("Klawing")] + ",,1", "peer_order", "peer_order needs a river or a peer_group"),
        (WL + ',"river:\tx",', "peer_group", "must be one line of at most 200 characters"),
        (WL + "," + "x" * 201 + ",", "peer_group", "must be one line of at most 200 characters"),
    ],
)
def test_peer_column_errors_name_row_field_and_reason(
    tmp_path: Path, row: str, field: str, reason: str
) -> None:
    error = load_error(tmp_path, PEER_HEADER, AQ + ",,", row, field=field)
    assert error.line == 3
    assert reason in error.reason

"""Unit conversion and plausibility of vital signs (medmm.io.units), by hand and by property."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medmm.codes import VITAL_SIGNS, vital_for_code
from medmm.errors import VitalsError
from medmm.io.fhir import read_fhir
from medmm.io.units import canonical_unit, implausible_reason, to_canonical
from medmm.io.vitals import VitalsTable, read_vitals_table
from tests.io.fhir_fixtures import collection, heart_rate, patient_resource, write_json
from tests.io.scaling import LINEAR_BOUND, growth

HR = vital_for_code("heart_rate")
SPO2 = vital_for_code("spo2")
TEMP = vital_for_code("temperature")
WEIGHT = vital_for_code("weight")
SBP = vital_for_code("sbp")

# Spellings seen in exports, grouped by the UCUM unit they mean.
SPELLINGS = {
    "/min": ["/min", "1/min", "min-1", "bpm", "BPM", "beats/min", "breaths/min", "{beats}/min", " /min "],
    "%": ["%", "percent", "%{oxygen}"],
    "Cel": ["Cel", "cel", "degC", "°C", "C"],
    "[degF]": ["[degF]", "degF", "°F", "F"],
    "mm[Hg]": ["mm[Hg]", "mmHg", "mm Hg", "MMHG"],
    "kg": ["kg", "KG"],
    "g": ["g"],
    "[lb_av]": ["[lb_av]", "lb", "lbs", "LBS"],
}
# A unit that converts to each canonical unit, and the conversion worked out by hand.
CONVERSIONS = {
    "temperature": [("Cel", lambda v: v), ("[degF]", lambda f: (f - 32.0) * 5.0 / 9.0)],
    "weight": [("kg", lambda v: v), ("[lb_av]", lambda lb: lb * 0.45359237), ("g", lambda g: g / 1000.0)],
    "heart_rate": [("/min", lambda v: v)],
    "spo2": [("%", lambda v: v)],
    "sbp": [("mm[Hg]", lambda v: v)],
}


@pytest.mark.parametrize("ucum, spellings", SPELLINGS.items())
def test_canonical_unit_maps_every_spelling(ucum: str, spellings: list[str]) -> None:
    assert {canonical_unit(s) for s in spellings} == {ucum}


@pytest.mark.parametrize("unit", [None, "", "  ", "{beats}", "mg", "kPa", "1", "K", "beats per hour", "°K"])
def test_canonical_unit_unknown_is_none(unit: str | None) -> None:
    assert canonical_unit(unit) is None


def test_by_hand_conversions() -> None:
    assert to_canonical(98.6, "[degF]", TEMP) == pytest.approx(37.0)
    assert to_canonical(212.0, "degF", TEMP) == pytest.approx(100.0)
    assert to_canonical(-40.0, "°F", TEMP) == pytest.approx(-40.0)
    assert to_canonical(154.0, "lb", WEIGHT) == pytest.approx(69.85322498)
    assert to_canonical(3500.0, "g", WEIGHT) == pytest.approx(3.5)
    assert to_canonical(72.0, "{beats}/min", HR) == 72.0
    assert isinstance(to_canonical(72, "/min", HR), float)


def test_unknown_unit_names_file_and_place() -> None:
    with pytest.raises(VitalsError) as info:
        to_canonical(72.0, "beats per hour", HR, source="p1/vitals.csv", where="row 3, column 'unit'")
    text = str(info.value)
    assert text.startswith("p1/vitals.csv: row 3, column 'unit': unknown unit for heart_rate")
    assert "/min" in text and "72" not in text
    assert info.value.path == "p1/vitals.csv" and info.value.where == "row 3, column 'unit'"


@pytest.mark.parametrize(
    "unit, sign", [("%", HR), ("kg", TEMP), ("/min", SPO2), ("[degF]", WEIGHT), ("mm[Hg]", HR), ("Cel", SBP)]
)
def test_known_but_incompatible_unit_is_refused(unit: str, sign) -> None:
    with pytest.raises(VitalsError, match=f"cannot be converted to .* for {sign.name}"):
        to_canonical(50.0, unit, sign)


def test_missing_unit_is_refused_not_guessed() -> None:
    with pytest.raises(VitalsError, match="unknown unit"):
        to_canonical(37.0, None, TEMP)


def test_implausible_reason_bounds_from_clinical_table() -> None:
    assert implausible_reason(900.0, HR) == "implausible: above 300 /min"
    assert implausible_reason(130.0, SPO2) == "implausible: above 100 %"
    assert implausible_reason(10.0, HR) == "implausible: below 20 /min"
    assert implausible_reason(0.2, WEIGHT) == "implausible: below 0.3 kg"
    assert implausible_reason(math.nan, HR) == "not a finite number"
    assert implausible_reason(math.inf, TEMP) == "not a finite number"
    for sign in VITAL_SIGNS:  # the range is inclusive at both ends
        assert implausible_reason(sign.low, sign) is None
        assert implausible_reason(sign.high, sign) is None
        assert implausible_reason((sign.low + sign.high) / 2, sign) is None


# ---- properties -----------------------------------------------------------------------------

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(finite)
def test_degf_to_cel_matches_formula(f: float) -> None:
    assert to_canonical(f, "[degF]", TEMP) == pytest.approx((f - 32.0) * 5.0 / 9.0, rel=1e-12, abs=1e-9)


@given(finite)
def test_cel_to_degf_round_trips(c: float) -> None:
    assert to_canonical(c * 9.0 / 5.0 + 32.0, "[degF]", TEMP) == pytest.approx(c, rel=1e-9, abs=1e-6)


@given(finite)
def test_lb_to_kg_matches_definition(lb: float) -> None:
    assert to_canonical(lb, "[lb_av]", WEIGHT) == pytest.approx(lb * 0.45359237, rel=1e-12, abs=1e-12)
    # 1 lb_av is defined as exactly 453.59237 g: both routes agree
    via_grams = to_canonical(lb * 453.59237, "g", WEIGHT)
    assert via_grams == pytest.approx(to_canonical(lb, "lb", WEIGHT), rel=1e-9, abs=1e-9)


@given(finite, st.sampled_from(sorted(CONVERSIONS)), st.data())
def test_aliases_give_the_same_value(value: float, name: str, data: st.DataObject) -> None:
    sign = vital_for_code(name)
    ucum, by_hand = data.draw(st.sampled_from(CONVERSIONS[name]))
    spelling = data.draw(st.sampled_from(SPELLINGS[ucum]))
    assert to_canonical(value, spelling, sign) == to_canonical(value, ucum, sign)
    assert to_canonical(value, spelling, sign) == pytest.approx(by_hand(value), rel=1e-12, abs=1e-9)


UNIT_PAIRS = [(name, ucum) for name, pairs in CONVERSIONS.items() for ucum, _ in pairs]


@given(finite, finite, st.sampled_from(UNIT_PAIRS))
def test_to_canonical_is_monotonic(a: float, b: float, conversion: tuple[str, str]) -> None:
    name, ucum = conversion
    sign = vital_for_code(name)
    low, high = min(a, b), max(a, b)
    assert to_canonical(low, ucum, sign) <= to_canonical(high, ucum, sign)


@given(st.sampled_from(VITAL_SIGNS), st.floats(allow_nan=True, allow_infinity=True))
def test_implausible_exactly_outside_the_range(sign, value: float) -> None:
    plausible = math.isfinite(value) and sign.low <= value <= sign.high
    assert (implausible_reason(value, sign) is None) == plausible


# ---- long units (found by the ingest fuzzer: a 2 MB unit cell took 18 s) ----------------------------


def test_annotations_are_dropped_in_one_pass() -> None:
    assert canonical_unit("{a}{b}/min{c}") == "/min"
    assert canonical_unit("{" + "x" * 240 + "}/min") == "/min"  # a long annotation, under the cap
    assert canonical_unit("{{x}}/min") is None  # nested braces are no UCUM annotation
    assert canonical_unit("/min{") is None and canonical_unit("}{x}/min") is None


def test_a_unit_longer_than_any_spelling_is_unknown() -> None:
    assert canonical_unit(" " * 300 + "/min") is None
    assert canonical_unit("{a}" * 700_000) is None
    with pytest.raises(VitalsError, match="unknown unit for heart_rate"):
        to_canonical(72.0, "{a}" * 700_000, HR, source="v.csv", where="row 1, column 'value'")


def test_a_table_with_a_huge_unit_cell_reads_in_linear_time_and_drops_that_value(tmp_path) -> None:
    path = tmp_path / "vitals.csv"

    def read(n: int) -> VitalsTable:
        unit = "{a}" * (n // 3)
        path.write_text(
            f"time,code,value,unit\n2024-03-01T10:00:00Z,8867-4,72,{unit}\n2024-03-01T11:00:00Z,8867-4,75,/min\n"
        )
        return read_vitals_table(path)

    assert growth(read) < LINEAR_BOUND
    table = read(1_000_000)
    assert [r.value for r in table.readings] == [75.0]
    (drop,) = table.dropped
    assert (drop.source, drop.channel) == (f"{path}: row 1, column 'value'", "heart_rate")
    assert drop.reason == "unknown unit for heart_rate (expected /min or a convertible unit)"


def test_a_fhir_quantity_with_a_huge_unit_is_dropped_and_reported(tmp_path) -> None:
    bundle = collection(patient_resource("1", "M1"), heart_rate({"reference": "Patient/1"}, 1, 72, "{a}" * 400_000))
    path = write_json(tmp_path / "b.json", bundle)
    record = read_fhir(path)
    assert record.readings == ()
    (drop,) = record.dropped
    assert drop.reason == "unknown unit '" + "{a}" * 10 + "{a' for heart_rate (expected /min or a convertible unit)"
    assert [(i.source, i.where, i.kind) for i in record.issues] == [(str(path), "entry 1 (Observation)", "dropped")]

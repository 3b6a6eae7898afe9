from __future__ import annotations

import pytest

from medmm.report.html import SECTIONS, num
from medmm.report.tripod import AUTHORS, DRAFT, ITEMS, REPORTED, tripod_checklist

pytestmark = pytest.mark.slow  # shares the report run folder (plots take a while to draw)


def by_item(items):
    return {i.item: i for i in items}


def test_every_tripod_ai_item_is_listed_once_in_order(report_run):
    items = tripod_checklist(report_run.evaluation, report_run.audit)
    ids = [i.item for i in items]
    assert ids == [x[0] for x in ITEMS] and len(set(ids)) == len(ids) == 52
    assert {i.section for i in items} == {
        "Title",
        "Abstract",
        "Introduction",
        "Methods",
        "Open science",
        "Results",
        "Discussion",
    }
    assert all(i.status in (REPORTED, DRAFT, AUTHORS) for i in items)
    assert all(i.anchor in {sid for sid, _ in SECTIONS} for i in items if i.anchor)


def test_filled_items_carry_the_run_figures(report_run):
    e, audit = report_run.evaluation, report_run.audit
    items = by_item(tripod_checklist(e, audit))
    s = e["summary"]
    assert (
        items["24"].status == REPORTED
        and num(s["ece_before"]) in items["24"].answer
        and num(s["ece_after"]) in items["24"].answer
    )
    assert num(s["macro_auroc"]) in items["23a"].answer and "subgroup" in items["23a"].answer
    assert num(e["calibration"]["temperature"]) in items["12f"].answer
    assert "0123456789abcdef" in items["12g"].answer and "0123456789abcdef" in items["22"].answer
    assert "race=2054-5" in items["14"].answer and items["14"].status == REPORTED
    assert "image 350, notes 360, vitals 355" in items["11"].answer
    assert "synthetic" in items["5a"].answer and "1000 patients" in items["5a"].answer
    for item in ("2", "17", "18a", "18b", "19", "25"):  # only the authors can say these
        assert items[item].status == AUTHORS and items[item].answer == "To be completed by the authors."


def test_without_an_audit_the_fairness_item_is_a_draft(report_run):
    items = by_item(tripod_checklist(report_run.evaluation, None))
    assert items["14"].status == DRAFT and "medmm audit" in items["14"].answer
    assert "no subgroup audit" in items["23a"].answer

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

import pytest

from medmm.report.html import (
    METRIC_NAMES,
    SECTIONS,
    embed_png,
    explanation_examples,
    group_label,
    limitations,
    num,
    pct,
    write_audit_page,
    write_report,
)
from tests.report.run_folder import WEAK_GROUP

pytestmark = pytest.mark.slow  # the shared run folder takes its plots about 20 s to draw


class Page(HTMLParser):
    """Section ids, image sources and every linked resource of an HTML page."""

    def __init__(self, html: str):
        super().__init__()
        self.sections: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.scripts = 0
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a.get("id", ""))
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag == "script":
            self.scripts += 1
        if tag in ("link", "a", "iframe", "object", "embed") and (a.get("href") or a.get("src")):
            self.links.append(a.get("href") or a.get("src"))


@pytest.fixture(scope="module")
def rendered(report_run):
    path = write_report(report_run.out, report_run.evaluation, report_run.audit, report_run.explanations)
    return path, path.read_text(encoding="utf-8")


def test_every_section_is_rendered_once_in_order(rendered):
    path, html = rendered
    assert path.name == "report.html"
    assert Page(html).sections == [sid for sid, _ in SECTIONS]


def test_report_is_self_contained_and_embeds_the_written_pngs(rendered, report_run):
    _, html = rendered
    page = Page(html)
    assert page.scripts == 0 and all(link.startswith("#") for link in page.links)
    assert page.images and all(src.startswith("data:image/png;base64,") for src in page.images)
    embedded = {base64.b64decode(src.split(",", 1)[1]) for src in page.images}
    written = {(report_run.out / rel).read_bytes() for rel in report_run.evaluation["plots"].values()}
    written |= {(report_run.out / rel).read_bytes() for rel in report_run.audit["plots"].values()}
    assert written <= embedded
    assert (report_run.explanations / "pneumonia" / "gradcam-image.png").read_bytes() in embedded
    # 3 evaluation plots + the audit's + 2 explanation views (the notes page is not an image)
    assert len(page.images) == 3 + len(report_run.audit["plots"]) + 2


def test_tables_show_the_figures_of_evaluation_json(rendered, report_run):
    _, html = rendered
    e = report_run.evaluation
    for d in e["metrics"]["diagnoses"]:
        a = d["auroc"]
        assert f"{num(a['value'])} ({num(a['low'])}–{num(a['high'])})" in html
    c = e["conformal"]
    assert pct(c["coverage"]) in html and num(e["calibration"]["temperature"]) in html
    assert num(e["calibration"]["after"]["ece_pooled"]) in html
    assert "Right lower lobe pneumonia." in html and "No acute &lt;finding&gt;." in html  # generated text is escaped
    assert "label_noise at strength 0.9 for race = Black or African American (2054-5)" in html
    g = e["grounding"]
    assert f"raw LM draft <b>{pct(g['impressions']['raw']['with_contradicted_claim'])}</b>" in html
    assert f"grounded (as given out) <b>{pct(g['impressions']['grounded']['with_contradicted_claim'])}</b>" in html
    assert (
        "Answers to 52 fixed questions" in html and f"<b>{pct(g['questions']['with_contradicted_claim'])}</b>" in html
    )
    assert "free-text answers to 2 of these questions" in html and f"<b>{pct(0.49)}</b> of 800" in html


def test_fairness_section_names_the_flagged_group_with_its_interval(rendered, report_run):
    _, html = rendered
    flags = [f for f in report_run.audit["flags"] if f["attribute"] == "race" and f["group"] == WEAK_GROUP]
    assert flags, "the weak group should be flagged"
    fairness = html.split('<section id="fairness">')[1].split("</section>")[0]
    assert f"Flags ({len(report_run.audit['flags'])})" in fairness
    for f in flags:
        row = f"<td>race</td><td>Black or African American (2054-5)</td><td>{METRIC_NAMES[f['metric']]}</td>"
        assert row in fairness
        assert f"{num(f['value'])} ({num(f['interval'][0])}–{num(f['interval'][1])})" in fairness


def test_tripod_section_lists_every_item_with_a_status(rendered):
    _, html = rendered
    tripod = html.split('<section id="tripod">')[1]
    rows = re.findall(r"<tr><td>([0-9]+[a-g]?)</td>", tripod)
    assert len(rows) == 52 and rows[0] == "1" and rows[-1] == "27c"
    assert 'class="badge reported"' in tripod and 'class="badge authors"' in tripod


def test_report_without_audit_or_model_sections_still_renders(report_run, tmp_path):
    minimal = {k: v for k, v in report_run.evaluation.items() if k not in ("model", "cohort", "ablation", "impression")}
    minimal["plots"] = {"roc": "plots/missing.png"}
    html = write_report(tmp_path, minimal, None, None).read_text()
    assert Page(html).sections == [sid for sid, _ in SECTIONS]
    assert "No subgroup audit accompanies this report" in html and "plot not available" in html
    assert "No explanation examples were supplied" in html and "No ablation in this evaluation." in html


def test_audit_page_holds_the_fairness_section_alone(report_run):
    path = write_audit_page(report_run.out, report_run.audit)
    page = Page(path.read_text())
    assert page.sections == ["fairness"] and len(page.images) == len(report_run.audit["plots"]) > 0


def test_group_names_are_escaped(report_run, tmp_path):
    audit = dict(report_run.audit)
    audit["groups"] = [dict(g, group="<b>x</b>") if g["attribute"] == "sex" else g for g in audit["groups"]]
    html = write_audit_page(tmp_path, audit).read_text()
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html


def test_explanation_examples_from_explain_output_or_any_png(report_run, tmp_path):
    listed = explanation_examples(report_run.explanations)
    assert [(x["title"], x["caption"]) for x in listed] == [
        ("Pneumonia: gradcam (image)", "pneumonia 0.81, gradcam"),  # the default method first
        ("Pneumonia: integrated_gradients (image)", "second"),
    ]
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b_map.png").write_bytes(
        (report_run.explanations / "pneumonia" / "gradcam-image.png").read_bytes()
    )
    (tmp_path / "a_map.png").write_bytes((report_run.explanations / "pneumonia" / "gradcam-image.png").read_bytes())
    (tmp_path / "c_map.png").write_bytes(b"not a png")
    assert [x["title"] for x in explanation_examples(tmp_path)] == ["a map", "b map"]
    assert explanation_examples(tmp_path, limit=1)[0]["title"] == "a map"
    assert explanation_examples(None) == [] and explanation_examples(tmp_path / "absent") == []


def test_embed_png_refuses_what_is_not_a_png(tmp_path):
    (tmp_path / "x.png").write_bytes(b"GIF89a")
    assert embed_png(tmp_path / "x.png") is None and embed_png(tmp_path / "missing.png") is None


def test_formatting_helpers():
    assert num(None) == "–" and num(float("nan")) == "–" and num(0.91234) == "0.912" and num(2, 1) == "2.0"
    assert pct(0.905) == "90.5%" and pct(None) == "–"
    assert group_label("female / 2054-5") == "female / Black or African American (2054-5)"
    assert group_label("2135-2") == "Hispanic or Latino (2135-2)" and group_label("80+") == "80+"


def test_limitations_follow_the_figures(report_run):
    e, audit = report_run.evaluation, report_run.audit
    text = " ".join(limitations(e, audit))
    assert "not a medical device" in text and "synthetic" in text
    assert "Black or African American (2054-5)" in text  # the flagged group
    short = dict(e, summary=dict(e["summary"], coverage=0.8, coverage_target=0.9))
    assert any("fell more than 3 points short" in x for x in limitations(short, None))
    assert any("No subgroup audit" in x for x in limitations(e, None))

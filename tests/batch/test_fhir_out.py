"""FHIR R4 NDJSON of a study: valid R4B resources whose values match the results table and the input files."""

from __future__ import annotations

import hashlib
import json

import pytest
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.provenance import Provenance
from fhir.resources.R4B.riskassessment import RiskAssessment

from medmm.batch.fhir_out import check_resource, resource_id, validate_ndjson
from medmm.batch.results import load_results
from medmm.errors import FhirError
from medmm.synth.diagnoses import DIAGNOSES

MODELS = {"RiskAssessment": RiskAssessment, "DiagnosticReport": DiagnosticReport, "Provenance": Provenance}
SNOMED_OF = {d.name: d.snomed for d in DIAGNOSES}


def _resources(out, kind: str) -> list[dict]:
    return [json.loads(line) for line in (out / "fhir" / f"{kind}.ndjson").read_text().splitlines()]


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_every_line_validates_with_the_r4b_models(finished_study, kind):
    out, summary = finished_study
    resources = _resources(out, kind)
    assert len(resources) == summary.done
    for resource in resources:
        parsed = MODELS[kind].model_validate(resource)
        assert parsed.get_resource_type() == kind
    assert validate_ndjson(out / "fhir" / f"{kind}.ndjson") == summary.done


def test_risk_assessments_carry_the_probabilities_of_the_results_table(finished_study):
    out, summary = finished_study
    results = load_results(out).set_index("patient_id")
    for resource in _resources(out, "RiskAssessment"):
        pid = resource["subject"]["reference"].removeprefix("Patient/")
        assert resource["id"] == resource_id(summary.run_id, pid, "RiskAssessment")
        by_code = {p["outcome"]["coding"][0]["code"]: p["probabilityDecimal"] for p in resource["prediction"]}
        assert by_code == {SNOMED_OF[n]: results.loc[pid, f"prob_{n}"] for n in SNOMED_OF}
        assert resource["status"] == "preliminary" and "not a medical device" in resource["note"][0]["text"]
        assert resource["method"]["coding"][0]["code"] == results.loc[pid, "model_id"]


def test_reports_hold_the_impression_and_provenance_the_input_hashes(finished_study, small_cohort):
    out, summary = finished_study
    results = load_results(out).set_index("patient_id")
    reports = {r["subject"]["reference"].removeprefix("Patient/"): r for r in _resources(out, "DiagnosticReport")}
    for pid, report in reports.items():
        assert report["conclusion"].startswith(results.loc[pid, "impression"])
        assert report["status"] == "preliminary"
    for prov in _resources(out, "Provenance"):
        ra_ref, dr_ref = (t["reference"] for t in prov["target"])
        pid = next(p for p in reports if dr_ref == f"DiagnosticReport/{reports[p]['id']}")
        assert ra_ref == f"RiskAssessment/{resource_id(summary.run_id, pid, 'RiskAssessment')}"
        sources = sorted(e["what"]["identifier"]["value"] for e in prov["entity"] if e["role"] == "source")
        files = [
            p
            for p in (small_cohort / pid).rglob("*")
            if p.is_file() and p.suffix in (".dcm", ".json", ".csv") and not p.name.startswith("truth")
        ]
        assert sources == sorted(f"urn:sha256:{hashlib.sha256(f.read_bytes()).hexdigest()}" for f in files)
        model = [e for e in prov["entity"] if e["role"] == "derivation"][0]
        assert model["what"]["identifier"]["value"] == results.loc[pid, "model_id"]
        assert results.loc[pid, "model_version"] in prov["agent"][0]["who"]["display"]


def test_invalid_resources_are_refused_naming_fields_not_values(tmp_path):
    bad = {"resourceType": "RiskAssessment", "status": "preliminary", "prediction": [{"probabilityDecimal": "high"}]}
    with pytest.raises(FhirError) as info:
        check_resource(bad, where="case")
    assert "subject" in str(info.value) and "high" not in str(info.value)
    path = tmp_path / "x.ndjson"
    path.write_text('{"resourceType": "Provenance", "recorded": "2024-01-01T00:00:00Z"}\n')
    with pytest.raises(FhirError) as info:
        validate_ndjson(path)
    assert info.value.where == "line 1"

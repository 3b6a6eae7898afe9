"""Batch research studies (`medmm batch`): a protocol over a cohort, resumable, local or on Ray.

Outputs per case: a results.parquet row (probabilities, conformal set, impression, timing, model
version, input checksums), FHIR R4 NDJSON (RiskAssessment, DiagnosticReport, Provenance) and an
audit record. See run.py for the flow, store.py for crash safety and plan.py for the protocol.
"""

from medmm.batch.plan import CohortFilter, Outputs, RunOptions, StudyProtocol, load_protocol
from medmm.batch.run import BatchSummary, run_batch

__all__ = ["BatchSummary", "CohortFilter", "Outputs", "RunOptions", "StudyProtocol", "load_protocol", "run_batch"]

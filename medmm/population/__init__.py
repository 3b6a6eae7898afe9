"""Populations in: streamed readers of per-patient Bundle folders and Bulk Data exports, the
hygiene that makes their resources usable, and the samples a Task draws from each patient."""

from medmm.population.bulk import iter_bulk_export
from medmm.population.bundles import iter_bundle_folder
from medmm.population.convert import bundles_to_bulk
from medmm.population.record import PatientRecord, PopulationReport

__all__ = ["PatientRecord", "PopulationReport", "bundles_to_bulk", "iter_bulk_export", "iter_bundle_folder"]

"""fhir.resources' R4B models for the code above io that checks FHIR JSON it reads or writes.

Population readers check each resource of a Synthea or Bulk export (medmm.population.record) and
batch studies check each resource they write (medmm.batch.fhir_out); both go through here, so that
only io (with deid and synth) touches fhir.resources.
"""

from __future__ import annotations

from typing import Any, Mapping

from fhir.resources.R4B import get_fhir_model_class


def r4b_validate(resource: Mapping[str, Any]) -> tuple[Any, list[str]]:
    """(the R4B model of `resource`, []) or (None, the failing fields' dotted paths, never their values).

    A resource type fhir.resources does not know, and anything else a model raises, is a failure
    named by the exception's type."""
    try:
        return get_fhir_model_class(resource["resourceType"]).model_validate(resource), []
    except MemoryError:
        raise
    except Exception as exc:  # pydantic's ValidationError, an unknown type (KeyError) and the models' own errors alike
        errors = getattr(exc, "errors", None)
        if callable(errors):
            fields = [".".join(str(p) for p in e.get("loc", ())) for e in errors()]
            fields = [f for f in fields if f]
            if fields:
                return None, fields
        return None, [type(exc).__name__]

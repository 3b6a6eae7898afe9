"""Per-patient Bundles -> a FHIR Bulk Data export (NDJSON per resource type).

What a FHIR server's `$export` of the same data would give: one resource per line, files named
`<Type>.<nnn>.ndjson` of at most `max_lines` lines each, and references rewritten from Bundle
fullUrls (`urn:uuid:...`) to relative `Type/id`, since an export carries no fullUrl. The shared
organisation and clinician Bundles are exported too (a server holds those resources).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import IO, Any

from medmm.errors import FhirError
from medmm.population.bundles import bundle_files
from medmm.population.record import normalise_references


class _TypeWriter:
    """Appends resources of one type, starting a new numbered file every `max_lines` lines."""

    def __init__(self, dst: Path, rtype: str, max_lines: int):
        self.dst, self.rtype, self.max_lines = dst, rtype, max_lines
        self.lines = 0
        self.handle: IO[str] | None = None

    def write(self, resource: dict[str, Any]) -> None:
        if self.lines % self.max_lines == 0:
            if self.handle is not None:
                self.handle.close()
            name = f"{self.rtype}.{self.lines // self.max_lines:03d}.ndjson"
            self.handle = open(self.dst / name, "w", encoding="utf-8")
        assert self.handle is not None
        self.handle.write(json.dumps(resource, ensure_ascii=False, separators=(",", ":")) + "\n")
        self.lines += 1

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def bundles_to_bulk(src: str | Path, dst: str | Path, max_lines: int = 10_000) -> Counter[str]:
    """Write every resource of the Bundles in `src` to a Bulk Data export in `dst`.

    Returns the number of resources written per type. `dst` must be empty or absent. A file
    that is not a Bundle raises FhirError naming it (a conversion is all or nothing).
    """
    if max_lines < 1:
        raise ValueError("max_lines must be at least 1")
    out = Path(dst)
    if out.exists() and any(out.iterdir()):
        raise FhirError("output folder is not empty", path=out)
    out.mkdir(parents=True, exist_ok=True)
    writers: dict[str, _TypeWriter] = {}
    try:
        for path in bundle_files(src):
            for resource in _bundle_resources(path):
                rtype = resource["resourceType"]
                writer = writers.get(rtype) or writers.setdefault(rtype, _TypeWriter(out, rtype, max_lines))
                writer.write(resource)
    finally:
        for writer in writers.values():
            writer.close()
    return Counter({t: w.lines for t, w in sorted(writers.items())})


def _bundle_resources(path: Path) -> list[dict[str, Any]]:
    try:
        bundle = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FhirError(f"not readable JSON ({type(exc).__name__})", path=path) from None
    if (
        not isinstance(bundle, dict)
        or bundle.get("resourceType") != "Bundle"
        or not isinstance(bundle.get("entry"), list)
    ):
        raise FhirError("expected a FHIR Bundle with a list of entries", path=path)
    url_map: dict[str, str] = {}
    resources = []
    for i, item in enumerate(bundle["entry"]):
        res = item.get("resource") if isinstance(item, dict) else None
        if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
            raise FhirError("entry has no resource", path=path, where=f"entry {i}")
        if not isinstance(res.get("id"), str) or not res["id"]:
            raise FhirError("resource has no id (an export needs one)", path=path, where=f"entry {i}")
        if isinstance(item.get("fullUrl"), str):
            url_map[item["fullUrl"].strip()] = f"{res['resourceType']}/{res['id']}"
        resources.append(res)
    return [normalise_references(res, url_map) for res in resources]

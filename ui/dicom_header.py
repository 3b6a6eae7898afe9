"""The DICOM header view: the rows medmm.deid.header keeps, as an HTML table."""

from __future__ import annotations

import html

from medmm.deid.header import DicomHeader


def header_table(header: DicomHeader | None, problem: str = "") -> str:
    """The header as an HTML table (escaped), or why there is none."""
    if header is None:
        return (
            f'<div class="medmm-dicom-header"><p>{html.escape(problem or "No DICOM file for this series.")}</p></div>'
        )
    body = "".join(
        f"<tr><td><code>{r.tag}</code></td><td>{'&nbsp;&nbsp;' * r.depth}{html.escape(r.keyword)}</td><td>{r.vr}</td>"
        f"<td>{html.escape(r.value)}</td></tr>"
        for r in header.rows
    )
    return (
        f'<div class="medmm-dicom-header"><p class="medmm-caption">{html.escape(header.source)}: {len(header.rows)} element(s) shown; '
        f"{header.hidden} left out (names, dates, UIDs, free text, private elements: anything de-identification would remove "
        "or change, beyond the ID, sex and age shown in the header above).</p>"
        f"<table><thead><tr><th>tag</th><th>keyword</th><th>VR</th><th>value</th></tr></thead><tbody>{body}</tbody></table></div>"
    )

"""The page's CSS (one place), the viewer's included."""

from ui.viewer_js import VIEWER_CSS

CSS = """
.medmm-disclaimer{background:#fff4e5;border:2px solid #b45309;padding:.6em 1em;border-radius:6px;color:#7c2d12}
.medmm-status.medmm-error{background:#fee2e2;border:1px solid #b91c1c;color:#7f1d1d;padding:.5em;border-radius:4px}
.medmm-status.medmm-warning{background:#fef9c3;border:1px solid #a16207;padding:.5em;border-radius:4px;color:#713f12}
.medmm-diagnoses table,.medmm-group-card table,.medmm-files table,.medmm-dicom-header table{border-collapse:collapse;width:100%}
.medmm-group-card{overflow-x:auto;font-size:90%}
.medmm-diagnoses td,.medmm-diagnoses th,.medmm-group-card td,.medmm-group-card th,.medmm-files td,.medmm-files th,
.medmm-dicom-header td,.medmm-dicom-header th{border-bottom:1px solid #ddd;padding:.2em .5em;text-align:left;vertical-align:top}
.medmm-bar{height:4px;background:#2563eb}
.medmm-inset{background:#dbeafe;border-radius:3px;padding:0 .3em}
.medmm-missing{color:#b91c1c}.medmm-unused{color:#b45309}
.medmm-header{border:2px solid #1e3a8a;border-radius:6px;padding:.5em .8em;background:#f8fafc}
.medmm-header.medmm-pending{border-style:dashed;color:#374151}
.medmm-facts{display:flex;flex-wrap:wrap;gap:.3em 2em;margin:0 0 .4em 0}
.medmm-fact dt{font-size:80%;color:#4b5563;margin:0}.medmm-fact dd{margin:0;font-weight:600;font-size:105%}
.medmm-source{font-weight:normal;font-size:80%;color:#6b7280}
.medmm-files{font-size:88%}.medmm-files summary{cursor:pointer;font-weight:600}
.medmm-file-used td:nth-child(3){color:#166534}.medmm-file-unused td:nth-child(3){color:#b45309}
.medmm-file-unread td:nth-child(3){color:#b91c1c}
.medmm-input-warnings{margin-top:.4em;background:#fef9c3;border:1px solid #a16207;border-radius:4px;padding:.3em .6em;font-size:88%}
.medmm-input-warnings ul{margin:.2em 0 0 1.2em}
.medmm-no-answer{color:#7f1d1d;background:#fee2e2;padding:.3em .5em;border-radius:4px}
.medmm-notes pre{white-space:pre-wrap;font-family:inherit;line-height:1.6;margin:0}.unread{color:#999}
.medmm-notes h4{margin:.6em 0 .2em 0;font-size:95%}
.medmm-notes mark{color:inherit;border-radius:2px;padding:0 1px}
.medmm-notes mark.medmm-against{text-decoration:underline dotted 2px #1e3a8a}
.medmm-legend{font-size:85%;color:#374151;margin:.2em 0 .5em 0;padding-left:1.2em}
.medmm-legend .sw{display:inline-block;width:1.4em;height:.8em;margin:0 .3em;vertical-align:middle;border-radius:2px}
.medmm-vitals img{max-width:100%;height:auto;display:block}
.medmm-side-title{font-weight:600;margin:.2em 0}
.medmm-dicom-header{font-size:85%;max-height:28em;overflow:auto}
#medmm-viewer{--mv-height:480px}.medmm-overlay{--mv-height:300px}
"""

CSS += VIEWER_CSS

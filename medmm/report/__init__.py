"""Evaluation reports: one self-contained HTML file (Jinja2 templates, plots embedded as PNG) and its TRIPOD+AI checklist."""

from medmm.report.html import write_audit_page, write_report

__all__ = ["write_audit_page", "write_report"]

"""The self-contained HTML report for analysts: ``write_report`` renders it from the aggregates."""

from transforms.report.page import key_figures, write_report

__all__ = ["key_figures", "write_report"]

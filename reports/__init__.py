"""Renders results tables into CSV and self-contained HTML; never recomputes measurements."""

"""Architectures, data sets, ticket-finding methods, compaction, export and analytic cost."""

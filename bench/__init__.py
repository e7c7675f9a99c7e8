"""ticketbench: find lottery tickets, compact and export them, measure them on devices, report."""

__version__ = "0.1.0"

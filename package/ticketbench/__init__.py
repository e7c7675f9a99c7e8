"""ticketbench: find lottery tickets, compact and export them, measure them on devices, report.

The repository's top-level folders install as subpackages of this one (pyproject `package-dir`):
`ticketbench.bench`, `ticketbench.models`, `ticketbench.devices`, `ticketbench.reports`. One installed
namespace, so a user's own `models/` or a PyPI project called `bench` never shadows ours.
"""

__version__ = "0.1.0"

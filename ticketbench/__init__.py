"""ticketbench: find lottery tickets, compact and export them, measure them on devices, report.

One rule from import path to file: `ticketbench.<folder>.<module>` is `<folder>/<module>.py` for the
repository's top-level folders bench, models, devices and reports; any other `ticketbench.<module>` is
`ticketbench/<module>.py` (this folder: the namespace root and what every layer shares). Installed, the four
folders sit inside this package; one installed namespace, so a user's own `models/` or a PyPI project called
`bench` never shadows ours.
"""

from pathlib import Path

__version__ = "0.1.0"

# In a source checkout the four folders are this folder's siblings. Python finds this folder first whenever
# the checkout root is on sys.path (`python -m bench` run from the root, or PYTHONPATH=<root>), so the root
# joins the package's search path: `ticketbench.bench` is then `<root>/bench`, the same rule as installed.
# An installed copy has no sibling pyproject.toml and is left alone.
_ROOT = Path(__file__).resolve().parent.parent
if (_ROOT / "pyproject.toml").is_file() and (_ROOT / "bench" / "__main__.py").is_file():
    __path__.append(str(_ROOT))  # noqa: F821  (module attribute of every package)

"""The benchmark harness: CLI, suites, runner, results store, regression and the device farm.

Imported as `ticketbench.bench`. This file and `__main__.py` are also installed top level as `bench`, so
that `python -m bench` works anywhere; nothing else of this folder is imported under that name.
"""

"""Shim so that `python -m bench` keeps working: the code lives in `ticketbench.bench`."""

"""Ticket-finding methods behind one registry: `find_ticket(cfg, data)` → Ticket.

Importing this package registers every method module.
"""

from ticketbench.models.tickets import dense, eb, lth, magnitude, mpt  # noqa: E402,F401  (registration)
from ticketbench.models.tickets.base import (  # noqa: F401
    METHOD_OPTIONS,
    METHODS,
    Ticket,
    TicketConfig,
    TicketContext,
    find_ticket,
    load_ticket,
    method_options,
    register_method,
)
from ticketbench.models.tickets.options import OptionsError  # noqa: F401
from ticketbench.settings import describe  # noqa: F401  (a method's options, for --help texts)

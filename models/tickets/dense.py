"""The dense baseline: the trained parent network, no mask."""

from __future__ import annotations

from ticketbench.models.data import DataBundle
from ticketbench.models.tickets.base import Ticket, TicketConfig, TicketContext, register_method


@register_method("dense")  # options: MethodOptions (model_kwargs only)
def dense(cfg: TicketConfig, data: DataBundle, ctx: TicketContext) -> Ticket:
    model, log, _ = ctx.trained_dense(cfg, data)
    return Ticket(model, {}, cfg, train_log=log, provenance={"method": "dense"})

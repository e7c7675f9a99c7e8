"""One pipeline from a ticket to a validated ONNX file: find → compact → export → validate, in small typed steps.

`bench run` (bench/runner.py), `bench ticket` and `bench export` all go through these steps, so a ticket is
compacted, exported and checked the same way whichever command made it:

- `find(cfg, data, ctx)`: search and train a ticket (models/tickets), on the CPU afterwards;
- `load_saved(ticket_dir, data)`: a saved ticket as it is, checked against the data it will run on;
- `compact_and_export(ticket, path, input_shape, align, ...)`: compact (models/compact.py), export to ONNX and
  validate it against the masked PyTorch ticket (models/export.py); ExportError on a failed validation, the
  `Validation` on both the result and the error;
- `export_dense(model, input_shape, path)`: the dense reference of an architecture, exported once (no
  validation: nothing was compacted) with its cost and size, the denominators of every ticket of it.

Nothing here knows a device: the callers pass the device's channel alignment and ONNX opset.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ticketbench.files import atomic_write_bytes
from ticketbench.models.compact import CompactionConfig, CompactionReport, compact
from ticketbench.models.cost import ModelCost, analyze
from ticketbench.models.data import DataBundle
from ticketbench.models.export import OPSET, ExportResult, Validation, export_onnx, to_onnx_bytes
from ticketbench.models.tickets import Ticket, TicketConfig, TicketContext, find_ticket, load_ticket
from ticketbench.models.train import evaluate


@dataclass
class ExportedModel:
    """A ticket compacted and exported: the module the ONNX was validated against, what compaction removed and
    kept (and why), and the export with its validation."""

    compacted: nn.Module
    compaction: CompactionReport
    onnx: ExportResult

    @property
    def path(self) -> Path:
        return self.onnx.path

    @property
    def validation(self) -> Validation:
        return self.onnx.validation

    def onnx_record(self) -> dict[str, Any]:
        """The export as cost.json's "onnx" entry records it (everything but the path)."""
        return {k: v for k, v in asdict(self.onnx).items() if k != "path"}


@dataclass
class DenseExport:
    """The dense reference of an architecture, exported: ONNX file, its size (MB, 10⁶ bytes) and analytic cost."""

    model: nn.Module
    path: Path
    size_mb: float
    cost: ModelCost


def find(cfg: TicketConfig, data: DataBundle, ctx: TicketContext, energy_note: str = "") -> Ticket:
    """Search and train the ticket `cfg` names (models/tickets.find_ticket). `energy_note`, when the context has
    no energy function, says why the training energy was not measured (it replaces the generic note)."""
    ticket = find_ticket(cfg, data, ctx)
    if ctx.energy is None and energy_note:
        ticket.artifacts["training_energy"]["note"] = energy_note
    return ticket


def load_saved(ticket_dir: Path, data: DataBundle) -> Ticket:
    """A saved ticket as it is, its accuracy measured on `data`; ValueError when the input shape it records is not
    the data's."""
    ticket = load_ticket(ticket_dir)
    shape = tuple(ticket.provenance.get("input_shape") or data.input_shape)
    if shape != tuple(data.input_shape):
        raise ValueError(f"ticket input shape {shape} ≠ {data.name}'s {tuple(data.input_shape)}")
    ticket.accuracy = evaluate(ticket.model, data)
    return ticket


def compact_and_export(
    ticket: Ticket,
    path: Path,
    input_shape: tuple[int, ...],
    align: int = 1,
    opset: int = OPSET,
    input_size_known: bool = True,
    tolerance: float = 1e-3,
) -> ExportedModel:
    """Compact the ticket (channel counts kept multiples of `align`), export it to `path` and validate the ONNX
    against the masked, uncompacted ticket on fresh random inputs. ExportError (with its `validation`) above
    tolerance or when the ONNX checker refuses the graph; nothing is written then. `input_size_known`: the input's
    H×W is the deployed one (bias maps may be folded at it), False when it was guessed."""
    config = CompactionConfig(align=align, input_size_known=input_size_known)
    compacted, report = compact(ticket.model, torch.zeros(1, *input_shape), config)
    result = export_onnx(compacted, ticket.model, input_shape, path, tolerance=tolerance, opset=opset)
    return ExportedModel(compacted, report, result)


def export_dense(model: nn.Module, input_shape: tuple[int, ...], path: Path, opset: int = OPSET) -> DenseExport:
    """Export the dense architecture `model` to `path` with its cost: once per run and architecture (the runner
    caches it), shared by the size/MAC denominators and the reference timed beside each ticket."""
    blob = to_onnx_bytes(model, input_shape, opset)
    atomic_write_bytes(path, blob)
    return DenseExport(model, path, len(blob) / 1e6, analyze(model, input_shape))

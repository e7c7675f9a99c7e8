"""Item 1 of issue 11: loading a ticket never executes code, and a malformed ticket is one line and exit 2."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from test_hostile_input import assert_usage_error, make_ticket, one_error_line, run_cli, snapshot

from ticketbench.bench.cli import main
from ticketbench.models.tickets import load_ticket
from ticketbench.models.tickets.base import TicketError


@pytest.fixture
def ticket_dir(tmp_path) -> Path:
    return make_ticket(tmp_path / "ticket")


class Payload:
    """Unpickling this runs `touch MARKER`: what a crafted ticket.pt does under weights_only=False."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _malicious_ticket(directory: Path, marker: Path) -> Path:
    directory.mkdir(parents=True)
    blob = {"config": {"model": "small_cnn", "dataset": "digits", "method": "dense"}, "state_dict": Payload(marker)}
    torch.save({**blob, "masks": {}}, directory / "ticket.pt")
    return directory


def test_malicious_pickle_never_runs_in_process(tmp_path):
    marker = tmp_path / "PWNED"
    tdir = _malicious_ticket(tmp_path / "t", marker)
    with pytest.raises(TicketError, match="refused"):
        load_ticket(tdir)
    assert not marker.exists()


@pytest.mark.e2e
def test_malicious_pickle_never_runs_through_bench_export(tmp_path):
    marker = tmp_path / "PWNED"
    tdir = _malicious_ticket(tmp_path / "t", marker)
    before = snapshot(tdir)
    res = run_cli("export", str(tdir))
    assert res.returncode == 2, res.stderr
    line = one_error_line(res.stderr, "refused")
    assert "--trust" in line
    assert not marker.exists()
    assert snapshot(tdir) == before  # no model.onnx, no *.tmp


def test_ticket_round_trips_through_weights_only(tmp_path):
    tdir = make_ticket(tmp_path / "t")
    t = load_ticket(tdir)
    assert t.config.method == "magnitude" and t.accuracy == 91.0
    assert torch.equal(t.artifacts["eb_mask_distances"], torch.eye(3, dtype=torch.float64))  # numpy → tensor
    assert t.provenance["note"] == 1.5 and t.train_log[0]["loss"] == pytest.approx(0.3)
    assert set(t.masks) and all(isinstance(m, torch.Tensor) for m in t.masks.values())
    torch.load(tdir / "ticket.pt", weights_only=True)  # the file itself holds nothing but plain values


def test_old_pickled_ticket_loads_only_with_trust(tmp_path, capsys):
    """A format-1 ticket (numpy arrays inside) is refused by default; `--trust` is the documented way in."""
    tdir = make_ticket(tmp_path / "t")
    blob = torch.load(tdir / "ticket.pt", weights_only=True)
    blob.pop("format")
    blob["artifacts"] = {"eb_mask_distances": np.eye(3)}
    torch.save(blob, tdir / "ticket.pt")
    with pytest.raises(TicketError, match="--trust"):
        load_ticket(tdir)
    assert isinstance(load_ticket(tdir, trust=True).artifacts["eb_mask_distances"], np.ndarray)
    assert_usage_error(capsys, ["export", str(tdir)], "--trust")


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:200])


@pytest.mark.parametrize(
    "damage, needle",
    [
        (lambda p: p.write_bytes(b""), "not a ticket file"),
        (_truncate, "not a ticket file"),
        (lambda p: p.write_bytes(bytes(range(256)) * 4), "not a ticket file"),
        (lambda p: p.write_bytes(pickle.dumps({"a": 1})), "not a ticket"),
        (lambda p: torch.save([1, 2, 3], p), "holds a list"),
        (lambda p: torch.save({"config": {}, "masks": {}}, p), "'state_dict' missing"),
        (lambda p: torch.save({"config": {"model": "x"}, "state_dict": {}, "masks": {}}, p), "does not rebuild"),
        (lambda p: torch.save({"config": "x", "state_dict": {}, "masks": {}}, p), "'config' missing or not a dict"),
    ],
)
def test_malformed_tickets_are_one_line_and_exit_2(tmp_path, capsys, damage, needle):
    tdir = make_ticket(tmp_path / "t")
    damage(tdir / "ticket.pt")
    before = snapshot(tdir)
    assert_usage_error(capsys, ["export", str(tdir)], needle)
    assert snapshot(tdir) == before


def test_ticket_with_mismatched_weights(tmp_path, capsys):
    tdir = make_ticket(tmp_path / "t")
    blob = torch.load(tdir / "ticket.pt", weights_only=True)
    key = next(iter(blob["state_dict"]))
    blob["state_dict"][key] = torch.zeros(1)
    torch.save(blob, tdir / "ticket.pt")
    assert_usage_error(capsys, ["export", str(tdir)], "does not rebuild")


@pytest.mark.parametrize("align", ["0", "-8", "100000"])
def test_export_align_out_of_range(ticket_dir, capsys, align):
    assert_usage_error(capsys, ["export", str(ticket_dir), "--align", align], "--align")


def test_export_out_an_existing_directory_leaves_nothing(ticket_dir, tmp_path, capsys):
    target = tmp_path / "somedir"
    target.mkdir()
    assert_usage_error(capsys, ["export", str(ticket_dir), "--out", str(target)], "is a directory")
    assert list(target.iterdir()) == [] and not list(ticket_dir.glob("*.tmp"))


def test_export_of_a_good_ticket_still_works(ticket_dir, tmp_path):
    out = tmp_path / "m.onnx"
    assert main(["export", str(ticket_dir), "--out", str(out), "--align", "1"]) == 0
    assert out.is_file() and out.stat().st_size > 0

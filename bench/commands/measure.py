"""`python -m bench measure`: time (and power) one ONNX model on a device, like trtexec."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from ticketbench.bench.configs import MeasureConfig
from ticketbench.bench.options import THREADS_HELP, UsageError, check_device_choice, check_host, log, open_device, prod
from ticketbench.files import one_line
from ticketbench.settings import add_arguments as add_arguments_for
from ticketbench.settings import from_args

NOT_FLAGS = ("batch_sizes", "precisions", "calibration_size", "calibration_seed", "calibration_method")  # one ONNX
MEASURE_DEFAULTS = MeasureConfig(min_seconds=3.0, layer_profile=False)  # 3 s as trtexec; the profile on request

NAME = "measure"
HELP = "time (and power) one ONNX model, like trtexec"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, help=THREADS_HELP)
    parser.add_argument("model", help="MODEL.onnx")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    parser.add_argument("--json", action="store_true", help="one JSON object keyed by results.csv columns")
    parser.add_argument("--host", help="USER@HOST of a Jetson driven over SSH (remote mode)")
    # the suite's [measure] settings, one declaration (bench/configs.py), with this command's defaults
    add_arguments_for(parser, MeasureConfig, skip=NOT_FLAGS, base=MEASURE_DEFAULTS)


def run(args: argparse.Namespace) -> int:
    from ticketbench.bench.runner import (
        LAYER_PROFILE_CALLS,
        is_remote,
        measure_session,
        runtime_columns,
        start_power,
        timing_input,
    )
    from ticketbench.devices.layer_profile import LayerProfile, LayerProfileUnavailable
    from ticketbench.devices.power_meter import PowerMeter
    from ticketbench.results import empty_row

    path = Path(args.model)
    if not 1 <= args.batch <= 65536:
        raise UsageError(f"--batch must be a whole number in [1, 65536], got {args.batch}")
    m = from_args(MeasureConfig, args, replace(MEASURE_DEFAULTS, batch_sizes=[args.batch]))
    check_device_choice(args, known=False)
    check_host(args.host)
    if not path.is_file():
        raise UsageError(f"{path}: no such ONNX file")
    shape = _onnx_input_shape(path, args.batch)
    device = open_device(args)
    # the runner's own measurement: power lifecycle, interleaved rounds, row columns (one method for both commands)
    power = PowerMeter()  # no source until start_power: closing it is a no-op
    profile: LayerProfile | None = None
    no_profile = ""
    try:
        ident = device.identity()
        try:
            session = device.load(path, m.precision, args.batch)
        except (ValueError, OSError):
            raise
        except Exception as exc:  # the runtime refuses the graph (ORT's InvalidGraph, Fail, ...): bad input
            raise UsageError(f"{path}: {device.name} cannot load this model ({one_line(exc)[:200]})") from exc
        power = start_power(device, idle_seconds=m.idle_seconds)
        runtime = runtime_columns(ident)
        (bm,) = measure_session(session, shape, m, power, threads=runtime["threads"], measure_load=not is_remote(ident))
        if m.layer_profile:  # after the timed rounds, in a window of its own
            try:
                profile = session.profile_layers(timing_input(args.batch, shape), LAYER_PROFILE_CALLS)
            except LayerProfileUnavailable as exc:
                no_profile = str(exc)
    except UsageError:
        raise
    except ValueError as exc:  # e.g. a precision the backend does not run
        raise UsageError(str(exc)) from exc
    except Exception as exc:  # the measurement itself failed (runtime, device): one line, the trace under -v
        log.debug("measure failed", exc_info=True)
        print(f"error: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        return 1
    finally:
        power.stop()
        device.close()
    row = empty_row(
        **bm.columns,
        **runtime,
        device=device.name,
        device_name=ident.get("device_name"),
        backend=ident.get("backend"),
        precision=m.precision,
        batch_size=args.batch,
        size_mb=path.stat().st_size / 1e6,
        status="ok",
    )
    if profile is not None:
        p50 = row.get("latency_ms_p50")
        row["layers_coverage"] = profile.total_ms / p50 if isinstance(p50, float) and p50 > 0 else None
        row["layers_profile_overhead"] = profile.overhead
    if no_profile:
        print(f"no per-layer profile: {no_profile}", file=sys.stderr)
    if args.json:
        print(json.dumps(row))
    else:
        for k, v in row.items():  # the results.csv columns this measurement filled, in their order
            if v is not None and v != "":
                print(f"{k:36s} {v}")
        if profile is not None:
            _print_layers(profile)
    return 0


def _print_layers(profile) -> None:
    """`measure --layers`: the per-layer table of one ONNX (bench/layers.py), most time first; no dense reference and
    no MACs here (those need the PyTorch model: `bench run` has them)."""
    from ticketbench.bench.layers import format_table, layer_rows

    print(f"\nper-layer profile: {profile.source}, {profile.iterations} calls at batch {profile.batch_size}")
    print(format_table(layer_rows(profile, [])))
    if profile.overhead is not None:
        ms = f"{profile.plain_ms:.4g} → {profile.profiled_ms:.4g} ms"
        print(f"profiling slowed a call by {100 * profile.overhead:.0f} % ({ms})")


def _onnx_input_shape(path: Path, batch: int) -> tuple[int, ...]:
    """Per-example input shape of a model `measure` can feed: one float32 graph input (initializers aside) of
    at most 8 dims, symbolic dims taken as 1, and at most 2**27 values per batch (512 MB). Else UsageError."""
    import onnx

    if path.stat().st_size == 0:
        raise UsageError(f"{path}: empty file, not an ONNX model")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise UsageError(f"{path}: not an ONNX model ({one_line(exc)[:200]})") from exc
    init = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in init]
    if len(inputs) != 1:
        raise UsageError(f"{path}: has {len(inputs)} graph inputs; measure feeds exactly one")
    tt = inputs[0].type.tensor_type
    if not inputs[0].type.HasField("tensor_type") or tt.elem_type != onnx.TensorProto.FLOAT:
        name = onnx.TensorProto.DataType.Name(tt.elem_type) if tt.elem_type else "not a tensor"
        raise UsageError(f"{path}: input {inputs[0].name!r} is {name}; measure feeds float32")
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in tt.shape.dim]
    if not 1 <= len(dims) <= 8:
        raise UsageError(f"{path}: input {inputs[0].name!r} has {len(dims)} dims; expected a batch dim and 0-7 more")
    shape = tuple(dims[1:])
    if batch * prod(shape) > 2**27:
        raise UsageError(f"{path}: input shape {shape} × batch {batch} is over 2**27 values; too large to feed")
    return shape

"""The bench layer's typed settings, each declared once (ticketbench.settings): a suite's `[measure]` table and
`bench measure`'s flags (MeasureConfig); the regression gate's floors, `bench compare`'s flags, a farm inventory's
`[compare]` table and a job.json's `compare` (CompareConfig).

Kept light (no torch, no pandas): every command declares its flags from these when the CLI starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from ticketbench.settings import SettingError, check, setting

PRECISIONS = ("fp32", "fp16", "int8")
CALIBRATION_METHODS = ("entropy", "minmax", "percentile")
ENERGY_FLOOR_MIN = 0.10


def default_energy_floor(latency_floor: float) -> float:
    """The energy floor when none is given: never tighter than the latency floor, nor than 10% (energy is noisier)."""
    return max(ENERGY_FLOOR_MIN, latency_floor)


@dataclass
class MeasureConfig:
    """A suite's `[measure]` table (ticketbench.settings: every number with its range, every name with its
    choices, one declaration)."""

    batch_sizes: list[int] = setting(factory=lambda: [1], help="batch sizes timed per case")
    min_iterations: int = setting(50, 1, 10_000_000, help="timed iterations per (case, batch), over all rounds")
    min_seconds: float = setting(
        1.0, 0, 3600, aliases=("--duration",), help="timed seconds per (case, batch), over all rounds"
    )
    warmup_iterations: int = setting(10, 0, 1_000_000, help="untimed iterations before the rounds")
    rounds: int = setting(
        5, 1, 1000, help="interleaved timing windows per (case, batch), the dense reference timed beside the ticket"
    )
    window_seconds: float = setting(
        0.01, 0.001, 10,
        help="within a round the ticket and its dense reference take turns in timing windows of this length (s; "
        "at least 3 iterations, each after one untimed call): neighbouring windows see the same machine",
    )  # fmt: skip
    round_precision: float = setting(
        0.02, 0, 1, lo_open=True,
        help="rounds are added until the 95% interval of each ticket's ratio to its reference is within ± this",
    )  # fmt: skip
    max_rounds: int = setting(15, 1, 1000, help="at most this many rounds per (case, batch), added ones included")
    precision: str = setting("fp32", choices=PRECISIONS, help="one precision; precisions replaces it with several")
    idle_seconds: float = setting(
        0.0, 0, 3600, aliases=("--idle",),
        help="idle power baseline measured once before the cases (0 = off), reported beside energy",
    )  # fmt: skip
    precisions: list[str] | None = setting(
        None, help='e.g. ["fp32", "int8"]: one row per precision, the ticket built once'
    )
    calibration_size: int = setting(256, 1, 1_000_000, help="int8: training images in the calibration set")
    calibration_seed: int = setting(0, 0, 2**32 - 1, help="int8: seed of the calibration draw")
    calibration_method: str = setting(
        "entropy", choices=CALIBRATION_METHODS, help="int8 on ONNX Runtime: how activation ranges are chosen"
    )
    layer_profile: bool = setting(
        True,
        aliases=("--layers",),
        help="per-layer profile of every case and its dense reference, after the timed rounds "
        "(samples/<case>-b<bs>-layers.csv); backends without a profiler skip it",
    )

    def precision_list(self) -> list[str]:
        return list(self.precisions) if self.precisions else [self.precision]

    def check(self, where: str) -> None:
        """Ranges and choices as declared, and the precisions list: known names, no repeats; else SettingError
        (a wrong precision is an error at load, not a failed case later)."""
        for p in self.precision_list():
            if p not in PRECISIONS:
                raise SettingError(f"{where} precision {p!r} unknown (known: {', '.join(PRECISIONS)})")
        if len(set(self.precision_list())) != len(self.precision_list()):
            raise SettingError(f"{where} precisions repeat: {self.precision_list()}")
        check(self, where)


@dataclass
class CompareConfig:
    """The gate's settings, each with its range (ticketbench.settings: checked the same way from flags and job
    files; a NaN or absurd floor would turn every regression into a pass)."""

    latency_floor: float = setting(
        0.10, 0, 10, hi_open=True, aliases=("--threshold",),
        help="relative latency floor for rows tested on their ratio to the dense reference",
    )  # fmt: skip
    time_floor: float = setting(
        0.20, 0, 10, hi_open=True, aliases=("--time-threshold",),
        help="relative latency floor for rows tested on a time: dense rows, --normalize none, runs without rounds "
        "(a shared machine's speed drifts between runs; lower it on a dedicated device)",
    )  # fmt: skip
    energy_floor: float | None = setting(
        None, 0, 10, hi_open=True, aliases=("--energy-threshold",),
        help="relative energy floor; None: max(0.10, latency_floor) (energy is noisier)",
    )  # fmt: skip
    accuracy_floor_points: float = setting(
        1.0, 0, 100, aliases=("--accuracy-points",), help="top-1 drop floor, in points"
    )
    alpha: float = setting(0.01, 0, 1, lo_open=True, hi_open=True, help="one-sided significance level")
    spread_multiple: float = setting(
        3.0, 0, 100, hi_open=True, help="latency floor is at least this × the baseline's between-round spread"
    )
    normalize: str = setting(
        "dense", choices=("dense", "none"),
        help="per-round latency ÷ the round's dense reference (dense rows always use time), or raw time",
    )  # fmt: skip
    history_runs: int = setting(
        4, 0, 100, help="farm: earlier good nights whose rounds join the last good night's (bench compare --history)"
    )
    gate_times: bool = setting(
        False,
        help="also flag rows tested on a time under --normalize dense (dense rows; rows without a reference: int8, "
        "imported tickets). Off by default: identical runs on a shared machine drift apart in time by up to 27% "
        "(measured), so those rows are reported as time-not-gated; turn on for a dedicated device",
    )
    gate_disturbed: bool = setting(
        False,
        help="also flag time and energy of rows disturbed in either run (results.csv `disturbed`: other load crowded "
        "the threads, or rounds disagreed). Off by default: identical runs, one disturbed, differed by 42% in a "
        "ticket's ratio to dense (measured), so those rows are reported as disturbed-not-gated",
    )
    n_boot: int = setting(2000, 100, 1_000_000, help="bootstrap resamples of the energy interval")
    seed: int = setting(0, 0, 2**32 - 1, help="seed of the bootstrap")

    def __post_init__(self) -> None:
        if self.energy_floor is None:
            self.energy_floor = default_energy_floor(self.latency_floor)

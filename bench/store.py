"""The results database: every run directory ingested through SQLAlchemy (optional extra `farm`).

SQLite file `runs/ticketbench.sqlite` by default (embedded, nothing to set up); any SQLAlchemy URL
(e.g. `postgresql+psycopg://...`) for a store shared by a device farm. The schema is versioned by a
one-row `schema_version` table. Ingest is idempotent: a run whose results.csv and run.json are
byte-identical to what is stored changes nothing. Raw samples stay in the run directory; rows keep
`samples_file` (relative) and the run keeps `run_dir` (absolute), so samples are found by path.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from ticketbench.files import InputError, read_json_object, read_results_csv
from ticketbench.results import COLUMNS, CONTRACT_COLUMNS

log = logging.getLogger("ticketbench.bench.store")

SCHEMA_VERSION = 1
DEFAULT_DB = Path("runs") / "ticketbench.sqlite"

# Column types of the results table: integers, floats, and text for every other column (unknown ones included).
INT_COLUMNS = {
    "params_dense",
    "params",
    "macs_dense",
    "macs",
    "batch_size",
    "eb_epoch",
    "params_nonzero",
    "macs_nonzero",
    "channels_removed",
    "latency_samples",
    "threads",
    "params_bias_maps",
    "latency_windows",
    "latency_windows_preempted",
}
STR_COLUMNS = {"run_id", "case_id", "model", "dataset", "method", "device", "device_name", "backend", "precision",
               "power_source", "status", "error", "power_note", "samples_file"}  # fmt: skip
FLOAT_COLUMNS = {c for c in CONTRACT_COLUMNS if c not in INT_COLUMNS | STR_COLUMNS} | {
    "accuracy_top1_torch",
    "onnx_max_abs_error",
    "power_w_idle",
    "energy_mj_per_inference_above_idle",
    "speedup_lo",
    "speedup_hi",
    "speedup_round_cv",
    "mac_reduction",
    "other_load_cores",
}
NIGHT_STATUSES = ("ok", "regressed", "failed", "down")


class StoreError(Exception):
    """The database cannot be used (missing driver, newer schema, unknown run)."""


def sqlalchemy_available() -> bool:
    try:
        import sqlalchemy  # noqa: F401
    except ImportError:
        return False
    return True


def db_url(db: str | Path | None = None) -> str:
    """`--db` value → SQLAlchemy URL: a URL passes through, a path becomes a SQLite file, None the default.

    The environment variable TICKETBENCH_DB, when set, replaces the default.
    """
    db = db or os.environ.get("TICKETBENCH_DB") or DEFAULT_DB
    text = str(db)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


@dataclass
class IngestResult:
    run_id: str
    action: str  # "inserted" | "updated" | "unchanged"
    rows: int


def _clean(v: Any, col: str | None = None) -> Any:
    """pandas cell → DB value: NaN → None, numpy scalars → Python, ints stay ints."""
    if v is None:
        return None
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    if col in INT_COLUMNS and isinstance(v, float):
        return int(v) if v.is_integer() else v
    if col in FLOAT_COLUMNS and isinstance(v, int | float):
        return float(v)
    if col is not None and col not in INT_COLUMNS | FLOAT_COLUMNS and not isinstance(v, str):
        return str(v)
    return v


def _content_hash(run_dir: Path) -> str:
    h = hashlib.sha256()
    for name in ("run.json", "results.csv"):
        p = run_dir / name
        h.update(name.encode() + b"\0" + (p.read_bytes() if p.exists() else b"") + b"\0")
    return h.hexdigest()


CONNECT_TIMEOUT_S = 10  # PostgreSQL: give up connecting after this long (libpq connect_timeout, whole handshake)


class ResultsStore:
    """Runs, their results rows, farm devices and nightly outcomes in one SQL database."""

    def __init__(self, db: str | Path | None = None) -> None:
        try:
            import sqlalchemy as sa
        except ImportError as exc:
            raise StoreError('the results store needs SQLAlchemy: pip install "ticketbench[farm]"') from exc
        self.sa = sa
        self.url = db_url(db)
        kwargs: dict[str, Any] = {}
        if self.url.startswith("sqlite:///"):
            try:
                Path(self.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the folder of results database {self.url}: {exc.strerror}") from exc
            kwargs["connect_args"] = {"timeout": 60}  # farm workers write concurrently; wait for the lock
        elif self.url.startswith("postgresql"):
            # a server that accepts and never answers hung compare, run and the farm forever (its retry never began)
            kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
        try:
            self.engine = sa.create_engine(self.url, **kwargs)
        except Exception as exc:  # unknown dialect or missing driver
            raise StoreError(f"cannot open results database {self.url}: {exc}") from exc
        self._define(sa)
        try:
            self._migrate()
        except sa.exc.SQLAlchemyError as exc:  # e.g. --db pointing at a file that is not an SQLite database
            msg = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]
            raise StoreError(f"cannot use results database {self.url}: {msg}") from exc

    # -- schema ---------------------------------------------------------------------------------
    def _define(self, sa) -> None:
        md = self.metadata = sa.MetaData()
        self.t_version = sa.Table("schema_version", md, sa.Column("version", sa.Integer, nullable=False))
        self.t_runs = sa.Table(
            "runs",
            md,
            sa.Column("run_id", sa.String(128), primary_key=True),
            sa.Column("run_dir", sa.Text),  # absolute path; raw samples live there
            sa.Column("content_sha256", sa.String(64), nullable=False),
            sa.Column("start_time", sa.String(64)),
            sa.Column("end_time", sa.String(64)),
            sa.Column("git_sha", sa.String(64)),
            sa.Column("hostname", sa.String(256)),
            sa.Column("suite", sa.String(256)),
            sa.Column("device", sa.String(64)),
            sa.Column("device_name", sa.String(256)),
            sa.Column("backend", sa.String(64)),
            sa.Column("power_source", sa.String(64)),
            sa.Column("n_rows", sa.Integer),
            sa.Column("n_failed", sa.Integer),
            sa.Column("farm_device", sa.String(128), index=True),  # inventory name, for nightly runs
            sa.Column("night", sa.String(64)),
            sa.Column("meta_json", sa.Text),  # run.json verbatim
            sa.Column("ingested_at", sa.String(64)),
        )
        cols = [
            sa.Column("run_id", sa.String(128), sa.ForeignKey("runs.run_id"), primary_key=True),
            sa.Column("row_index", sa.Integer, primary_key=True),  # position in results.csv
        ]
        for c in COLUMNS:
            if c == "run_id":
                continue
            typ = sa.BigInteger if c in INT_COLUMNS else sa.Float if c in FLOAT_COLUMNS else sa.Text
            cols.append(sa.Column(c, typ))
        cols.append(sa.Column("extra_json", sa.Text))  # columns added to results.csv after this schema
        self.t_results = sa.Table("results", md, *cols)
        self.t_devices = sa.Table(
            "devices",
            md,
            sa.Column("name", sa.String(128), primary_key=True),
            sa.Column("kind", sa.String(64)),
            sa.Column("host", sa.String(256)),
            sa.Column("labels_json", sa.Text),
            sa.Column("updated_at", sa.String(64)),
        )
        self.t_nights = sa.Table(
            "nights",
            md,
            sa.Column("night", sa.String(64), primary_key=True),
            sa.Column("farm_device", sa.String(128), primary_key=True),
            sa.Column("suite", sa.String(256), primary_key=True),
            sa.Column("status", sa.String(16), nullable=False),  # ok | regressed | failed | down
            sa.Column("run_id", sa.String(128)),
            sa.Column("baseline_run_id", sa.String(128)),
            sa.Column("regressions", sa.Integer),
            sa.Column("message", sa.Text),
            sa.Column("recorded_at", sa.String(64)),
        )

    def _migrate(self) -> None:
        sa = self.sa
        with self.engine.begin() as conn:
            self.metadata.create_all(conn)
            found = conn.execute(sa.select(self.t_version.c.version)).scalars().all()
            if not found:
                conn.execute(self.t_version.insert().values(version=SCHEMA_VERSION))
            elif max(found) > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.url} has schema version {max(found)}; this ticketbench knows {SCHEMA_VERSION}: upgrade it"
                )
            # versions below SCHEMA_VERSION would be migrated here, one step per version
            # results columns added to results.csv after this database was created go to extra_json:
            self.t_results = sa.Table("results", sa.MetaData(), autoload_with=conn)

    def close(self) -> None:
        """Release pooled connections (each farm job opens its own store)."""
        self.engine.dispose()

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(self.sa.select(self.sa.func.max(self.t_version.c.version))).scalar_one())

    # -- ingest ---------------------------------------------------------------------------------
    def ingest(self, run_dir: Path, farm_device: str | None = None, night: str | None = None) -> IngestResult:
        """Store one run directory (run.json + results.csv). Re-ingesting identical content changes nothing;
        changed content (a resumed run) replaces that run's rows in one transaction.

        Two processes may ingest the same new run at once (farm workers, a run and a user): both see no row,
        one insert wins and the other's fails on the primary key. The loser then simply ingests again, which
        finds the winner's identical content: a no-op, never an IntegrityError."""
        for attempt in range(3):
            try:
                return self._ingest_once(run_dir, farm_device, night)
            except self.sa.exc.IntegrityError:
                if attempt == 2:
                    raise
                log.info("results store: %s was ingested concurrently; checking again", run_dir)
        raise AssertionError("unreachable")

    def _existing(self, conn, run_id: str):
        """The stored runs row of run_id, or None."""
        return conn.execute(self.sa.select(self.t_runs).where(self.t_runs.c.run_id == run_id)).mappings().first()

    def _ingest_once(self, run_dir: Path, farm_device: str | None, night: str | None) -> IngestResult:
        run_dir = Path(run_dir).resolve()
        csv = run_dir / "results.csv"
        if not csv.is_file():
            raise StoreError(f"{run_dir}: not a run directory (no results.csv)")
        try:
            meta = read_json_object(run_dir / "run.json", "run.json") if (run_dir / "run.json").exists() else {}
            df = read_results_csv(csv)
        except InputError as exc:
            raise StoreError(str(exc)) from exc
        run_id = str(meta.get("run_id") or (df["run_id"].dropna().iloc[0] if df["run_id"].notna().any() else ""))
        if not run_id:
            raise StoreError(f"{run_dir}: no run_id in run.json or results.csv")
        digest = _content_hash(run_dir)
        with self.engine.begin() as conn:
            old = self._existing(conn, run_id)
            if old is not None and old["content_sha256"] == digest:
                changes = {
                    k: v
                    for k, v in (("run_dir", str(run_dir)), ("farm_device", farm_device), ("night", night))
                    if v is not None and old[k] != v
                }
                if changes:
                    conn.execute(self.t_runs.update().where(self.t_runs.c.run_id == run_id).values(**changes))
                return IngestResult(run_id, "updated" if changes else "unchanged", int(old["n_rows"] or 0))
            device = meta.get("device") or {}
            run_row = {
                "run_id": run_id,
                "run_dir": str(run_dir),
                "content_sha256": digest,
                "start_time": meta.get("start_time"),
                "end_time": meta.get("end_time"),
                "git_sha": meta.get("git_sha"),
                "hostname": (meta.get("host") or {}).get("hostname"),
                "suite": (meta.get("suite") or {}).get("name"),
                "device": device.get("device") or device.get("name") or _first(df, "device"),
                "device_name": device.get("device_name") or _first(df, "device_name"),
                "backend": device.get("backend") or _first(df, "backend"),
                "power_source": meta.get("power_source") or _first(df, "power_source"),
                "n_rows": len(df),
                "n_failed": int((df["status"] == "failed").sum()) if "status" in df else 0,
                "farm_device": farm_device if farm_device is not None else (old or {}).get("farm_device"),
                "night": night if night is not None else (old or {}).get("night"),
                "meta_json": json.dumps(meta, sort_keys=True, default=str),
                "ingested_at": datetime.now(timezone.utc).isoformat(),
            }
            if old is not None:
                conn.execute(self.t_results.delete().where(self.t_results.c.run_id == run_id))
                conn.execute(self.t_runs.update().where(self.t_runs.c.run_id == run_id).values(**run_row))
            else:
                conn.execute(self.t_runs.insert().values(**run_row))
            rows = [self._result_row(run_id, i, rec) for i, rec in enumerate(df.to_dict("records"))]
            if rows:
                conn.execute(self.t_results.insert(), rows)
        return IngestResult(run_id, "updated" if old is not None else "inserted", len(df))

    def _result_row(self, run_id: str, index: int, rec: dict[str, Any]) -> dict[str, Any]:
        stored = set(self.t_results.c.keys()) - {"run_id", "row_index", "extra_json"}
        row = {c: _clean(rec.get(c), c) for c in COLUMNS if c in stored}
        row.update(run_id=run_id, row_index=index)
        extra = {k: _clean(v) for k, v in rec.items() if k not in stored and k != "run_id"}
        row["extra_json"] = json.dumps(extra, sort_keys=True, default=str) if extra else None
        return row

    # -- queries --------------------------------------------------------------------------------
    def runs(self, farm_device: str | None = None) -> pd.DataFrame:
        """All runs (newest first by start time), optionally one farm device's."""
        q = self.sa.select(self.t_runs)
        if farm_device is not None:
            q = q.where(self.t_runs.c.farm_device == farm_device)
        with self.engine.connect() as conn:
            df = pd.DataFrame(conn.execute(q).mappings().all(), columns=[c.name for c in self.t_runs.columns])
        return df.sort_values(["start_time", "run_id"], ascending=False, na_position="last", ignore_index=True)

    def run(self, run_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(self.sa.select(self.t_runs).where(self.t_runs.c.run_id == run_id)).mappings().first()
        if row is None:
            raise StoreError(f"run {run_id!r} is not in {self.url}")
        out = dict(row)
        out["meta"] = json.loads(out.pop("meta_json") or "{}")
        return out

    def results(self, run_ids: list[str] | None = None) -> pd.DataFrame:
        """Results rows in results.csv column order (plus extra columns), in csv row order."""
        q = self.sa.select(self.t_results).order_by(self.t_results.c.run_id, self.t_results.c.row_index)
        if run_ids is not None:
            q = q.where(self.t_results.c.run_id.in_(list(run_ids)))
        with self.engine.connect() as conn:
            recs = [dict(r) for r in conn.execute(q).mappings().all()]
        for r in recs:
            r.pop("row_index")
            r.update(json.loads(r.pop("extra_json") or "{}"))
        df = pd.DataFrame(recs)
        extra = [c for c in df.columns if c not in COLUMNS]
        df = df.reindex(columns=COLUMNS + extra)
        for c in df.columns:  # as pandas reads results.csv: numbers numeric, empty cells NaN
            col = df[c].astype(object)
            if c not in STR_COLUMNS:
                try:
                    col = pd.to_numeric(col)
                except (ValueError, TypeError):
                    pass
            df[c] = col.where(col.notna(), float("nan"))
        return df

    # -- farm -----------------------------------------------------------------------------------
    def upsert_device(self, name: str, kind: str, host: str, labels: list[str]) -> None:
        values = {
            "kind": kind,
            "host": host,
            "labels_json": json.dumps(sorted(labels)),
            "updated_at": datetime.now(timezone.utc).isoformat(),
        }
        with self.engine.begin() as conn:
            t = self.t_devices
            if conn.execute(self.sa.select(t.c.name).where(t.c.name == name)).first():
                conn.execute(t.update().where(t.c.name == name).values(**values))
            else:
                conn.execute(t.insert().values(name=name, **values))

    def devices(self) -> pd.DataFrame:
        with self.engine.connect() as conn:
            rows = conn.execute(self.sa.select(self.t_devices).order_by(self.t_devices.c.name)).mappings().all()
        return pd.DataFrame(rows, columns=[c.name for c in self.t_devices.columns])

    def record_night(
        self,
        night: str,
        farm_device: str,
        suite: str,
        status: str,
        run_id: str | None = None,
        baseline_run_id: str | None = None,
        regressions: int = 0,
        message: str = "",
    ) -> None:
        """One (night, device, suite) outcome; recording it again replaces it."""
        if status not in NIGHT_STATUSES:
            raise ValueError(f"status must be one of {NIGHT_STATUSES}, got {status!r}")
        t = self.t_nights
        key = (t.c.night == night) & (t.c.farm_device == farm_device) & (t.c.suite == suite)
        values = {
            "status": status,
            "run_id": run_id,
            "baseline_run_id": baseline_run_id,
            "regressions": regressions,
            "message": message,
            "recorded_at": datetime.now(timezone.utc).isoformat(),
        }
        with self.engine.begin() as conn:
            conn.execute(t.delete().where(key))
            conn.execute(t.insert().values(night=night, farm_device=farm_device, suite=suite, **values))

    def nights(self, farm_device: str | None = None) -> pd.DataFrame:
        t = self.t_nights
        q = self.sa.select(t).order_by(t.c.night, t.c.farm_device, t.c.suite)
        if farm_device is not None:
            q = q.where(t.c.farm_device == farm_device)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return pd.DataFrame(rows, columns=[c.name for c in t.columns])

    def last_good_run(self, farm_device: str, suite: str, before_night: str | None = None) -> str | None:
        """The run of the latest night on which this device and suite ran clean (no failure, no regression)."""
        runs = self.last_good_runs(farm_device, suite, before_night, 1)
        return runs[0] if runs else None

    def last_good_runs(self, farm_device: str, suite: str, before_night: str | None = None, n: int = 1) -> list[str]:
        """The runs of the latest `n` clean nights of this device and suite, newest first."""
        t = self.t_nights
        q = (
            self.sa.select(t.c.run_id)
            .where((t.c.farm_device == farm_device) & (t.c.suite == suite) & (t.c.status == "ok"))
            .where(t.c.run_id.is_not(None))
            .order_by(t.c.night.desc())
        )
        if before_night is not None:
            q = q.where(t.c.night < before_night)
        with self.engine.connect() as conn:
            return list(conn.execute(q.limit(n)).scalars())

    def trend(self, metric: str = "latency_ms_p50") -> pd.DataFrame:
        """One metric over nights: night, farm_device, suite, case_id, batch_size, value (ok rows only)."""
        if metric not in COLUMNS:
            raise KeyError(f"not a results column: {metric}")
        r, n = self.t_results, self.t_nights
        q = (
            self.sa.select(n.c.night, n.c.farm_device, n.c.suite, r.c.case_id, r.c.method, r.c.batch_size, r.c[metric])
            .select_from(n.join(r, r.c.run_id == n.c.run_id))
            .where(r.c.status == "ok")
            .order_by(n.c.farm_device, n.c.night)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        cols = ["night", "farm_device", "suite", "case_id", "method", "batch_size", "value"]
        return pd.DataFrame(rows, columns=cols)


def _first(df: pd.DataFrame, col: str) -> Any:
    if col not in df or df[col].dropna().empty:
        return None
    return _clean(df[col].dropna().iloc[0], col)


def ingest_after_run(run_dir: Path, db: str | None = None) -> IngestResult | None:
    """What `bench run` calls when a run ends: ingest if SQLAlchemy is here, else log why not. Never raises."""
    if not sqlalchemy_available():
        log.info('results store skipped: SQLAlchemy is not installed (pip install "ticketbench[farm]")')
        return None
    try:
        res = ResultsStore(db).ingest(run_dir)
    except Exception as exc:  # the run's files are already safe; a store problem must not fail the run
        log.warning("results store: could not ingest %s: %s", run_dir, exc)
        return None
    log.info("results store: %s run %s (%d rows) in %s", res.action, res.run_id, res.rows, db_url(db))
    return res

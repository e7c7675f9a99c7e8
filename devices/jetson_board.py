"""Board-side code for NVIDIA Jetson: power readers, clock/temperature snapshots, board facts, trtexec runs.

This module runs ON the board, unchanged, under the board's own python3 (3.6 on JetPack 4.6 / TX2, 3.8 on
JetPack 5, 3.10 on JetPack 6): standard library only, no dataclasses, no `subprocess.run(capture_output=)`,
no postponed annotations. In remote mode devices/jetson.py sends this file's source over SSH to
`python3 -` with one argument (a base64 JSON spec) and reads one JSON object back; in local mode the same
functions are imported, so each reader and parser exists once.

Power sources, in order of preference (total board power only: VDD_IN or POM_5V_IN; sub-rails are never
summed, so a module without a total rail, such as AGX Xavier or AGX Orin, reports no power):
- INA3221 sysfs: iio `rail_name_N` + `in_powerN_input` (mW, JetPack 4) or hwmon `inN_label` +
  `inN_input` (mV) x `currN_input` (mA) (JetPack 5+), polled directly at the requested rate,
- jtop (jetson-stats v3 or v4+) when its service socket exists and it starts (it refreshes at its
  service's interval, 1 s by default: only used when sysfs is not readable),
- tegrastats, streamed and parsed (TX2/TX1 `VDD_IN 3140/3208`, Nano `POM_5V_IN 2611/2611`, Orin
  `VDD_IN 5263mW/5263mW`).
All paths are relative to `root` ("/" on a board; a fake sysfs tree in tests). Times are time.monotonic().
"""
# ruff: noqa: UP021, UP022, UP031

import base64
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from typing import Dict, Tuple  # noqa: F401, UP035 - for type comments: this module runs on Python 3.6

TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")
GPU_DEVFREQ_NAMES = ("gpu", "gp10b", "gv11b", "ga10b", "gm20b", "gb10b")
TRTEXEC_FALLBACK = "/usr/src/tensorrt/bin/trtexec"


def _p(root, rel):
    return os.path.join(root, rel.lstrip("/"))


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip("\x00 \n\t")
    except (OSError, UnicodeDecodeError):
        return None


def _read_int(path):
    text = _read(path)
    try:
        return int(text.split()[0]) if text else None
    except ValueError:
        return None


# -- INA3221 sysfs -------------------------------------------------------------------------------------
def find_ina3221_rails(root="/"):
    """{rail name: spec}: ("mw", power_file) on JetPack 4 (iio), ("mv_ma", volt_file, curr_file) on 5+."""
    rails = {}  # type: Dict[str, Tuple[str, ...]]
    for label in sorted(glob.glob(_p(root, "sys/bus/i2c/drivers/ina3221x/*/iio:device*/rail_name_*"))):
        n = label.rsplit("_", 1)[1]
        name = _read(label)
        if name:
            rails[name] = ("mw", os.path.join(os.path.dirname(label), "in_power%s_input" % n))
    for label in sorted(glob.glob(_p(root, "sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*/in*_label"))):
        n = os.path.basename(label)[2 : -len("_label")]
        name = _read(label)
        if not name or name.startswith("NC") or "sum of shunt" in name.lower():
            continue
        d = os.path.dirname(label)
        rails[name] = ("mv_ma", os.path.join(d, "in%s_input" % n), os.path.join(d, "curr%s_input" % n))
    return rails


def total_rail(names):
    """The total-board rail among `names` (VDD_IN, else POM_5V_IN), or None."""
    for name in TOTAL_RAILS:
        if name in names:
            return name
    return None


class Ina3221Reader:
    """Total board power (W) from the INA3221 total rail; files stay open and are re-read with pread."""

    source = "ina3221-sysfs"
    kind = "power"
    max_rate_hz = None
    min_window_s = 0.0

    def idle_window(self, seconds):
        return None  # sampled here while idle

    def __init__(self, root="/"):
        rails = find_ina3221_rails(root)
        if not rails:
            raise OSError("no INA3221 rails in sysfs (not a Jetson, or Nano 2GB without a monitor)")
        self.rail = total_rail(rails)
        if self.rail is None:
            raise OSError(
                "INA3221 rails %s have no total-board rail (VDD_IN/POM_5V_IN); sub-rails are never summed"
                % ",".join(sorted(rails))
            )
        spec = rails[self.rail]
        self.layout = spec[0]
        self.fds = [os.open(path, os.O_RDONLY) for path in spec[1:]]
        self.read_watts()  # fail now (PermissionError, bad format), not inside the sampler thread

    def _value(self, fd):
        return int(os.pread(fd, 64, 0).split()[0])

    def read_watts(self):
        if self.layout == "mw":
            return self._value(self.fds[0]) / 1e3
        return self._value(self.fds[0]) * self._value(self.fds[1]) / 1e6

    def close(self):
        for fd in self.fds:
            os.close(fd)
        self.fds = []


# -- jtop (jetson-stats) ---------------------------------------------------------------------------------
# jetson-stats v4+ names its total ("tot") after the rail it is; Thor carrier boards measure the system input "VIN"
JTOP_TOTALS = TOTAL_RAILS + ("VIN",)
# Interval (s) asked of the jtop service: it reads every subsystem each tick, so it is not asked for more than 10 Hz
JTOP_MIN_INTERVAL_S = 0.1


def jtop_v3_name(rail):
    """A rail as jetson-stats v3 names it: 'VDD_'/'POM_' stripped, '_' -> ' ' (VDD_IN -> 'IN', POM_5V_IN -> '5V IN')."""
    return rail.replace("VDD_", "").replace("POM_", "").replace("_", " ")


def jtop_total_watts(power, board_total=None):
    """Total board power (W) from jtop's `power` property, or None when jtop cannot show it.

    v4+: {"rail": {name: {"power": mW, ...}}, "tot": {"power": mW, "name": rail}}; "tot" carries a name
    only when it is a real total rail, otherwise it is jtop's sum of sub-rails (rejected).
    v3: (total {"cur": mW, "avg": mW}, rails {renamed: {"cur": mW, "avg": mW}}): v3 renames every rail
    (jtop_v3_name) and moves the first rail whose new name contains "IN" into `total`, or sums all rails
    when none does. That rail is the board's total only when it was VDD_IN/POM_5V_IN (AGX Orin's
    VIN_SYS_5V0 contains "IN" too), so a v3 total is trusted only when `board_total`, the total rail the
    board's own INA3221 labels name, is known.
    """
    if isinstance(power, dict):
        tot = power.get("tot") or {}
        if tot.get("name") in JTOP_TOTALS:
            return float(tot["power"]) / 1e3
        rails = power.get("rail") or {}
        name = total_rail(rails)
        return float(rails[name]["power"]) / 1e3 if name else None
    if isinstance(power, (tuple, list)) and len(power) == 2:
        total, rails = power
        rails = rails or {}
        if board_total is None:
            return None
        renamed = jtop_v3_name(board_total)
        if renamed in rails:  # another "IN" rail came first and was taken as the total
            return float(rails[renamed]["cur"]) / 1e3
        if not total or "cur" not in total:
            return None
        return float(total["cur"]) / 1e3
    return None


class JtopReader:
    """Total board power (W) through the jtop service (jetson-stats v3 or v4+ client API).

    jtop refreshes at the service's interval (its default is 1 s; this asks for 1/rate_hz, at most 10 Hz,
    but a service already serving another client keeps that client's interval): `max_rate_hz` is the
    rate jtop really delivers, which caps the sampler. `jtop().start()` raises JtopException (not an
    OSError) when the service is down, unreachable for this user or of another version: turned into
    OSError here so that the next power source is tried.
    """

    source = "jtop"
    kind = "power"
    max_rate_hz = None
    min_window_s = 0.0

    def idle_window(self, seconds):
        return None  # sampled here while idle

    def __init__(self, root="/", rate_hz=50.0):
        if not os.path.exists(_p(root, "run/jtop.sock")):
            raise OSError("jtop service not running (/run/jtop.sock missing)")
        from jtop import jtop  # optional: jetson-stats

        self.jetson = jtop(interval=max(JTOP_MIN_INTERVAL_S, 1.0 / float(rate_hz)))
        try:
            self.jetson.start()
        except Exception as exc:  # JtopException, or the socket's own OSErrors
            raise OSError("jtop could not start: %s" % " ".join(str(exc).split())) from None
        interval = getattr(self.jetson, "interval", None)  # the service's interval (s), which may not be ours
        self.max_rate_hz = 1.0 / float(interval) if interval and float(interval) > 0 else None
        self.board_total = total_rail(find_ina3221_rails(root))
        if jtop_total_watts(self.jetson.power, self.board_total) is None:
            self.close()
            raise OSError(
                "jtop reports no total-board rail (VDD_IN/POM_5V_IN), or (v3) none the board's labels confirm; "
                "sub-rails are never summed"
            )

    def read_watts(self):
        watts = jtop_total_watts(self.jetson.power, self.board_total)
        return float("nan") if watts is None else watts

    def close(self):
        self.jetson.close()


# -- tegrastats ---------------------------------------------------------------------------------------
RAIL_RE = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")
TEMP_RE = re.compile(r"\b([A-Za-z][A-Za-z0-9_]*)@(-?\d+(?:\.\d+)?)C\b")
GR3D_RE = re.compile(r"GR3D_FREQ (\d+)%(?:@\[?(\d+))?")


def parse_tegrastats(line):
    """One tegrastats line → rails (instant and average mW), temperatures (°C), GPU load/clock, total W.

    Handles TX1/TX2 (`VDD_IN 3140/3208`), Nano (`POM_5V_IN 2611/2611`), AGX Xavier (`GPU 0/0 ... SYS5V`,
    no total rail), Xavier NX and Orin (`VDD_IN 5263mW/5263mW`, optional leading date). Sensors reading
    -256C (powered off) are dropped.
    """
    rails = {}
    for name, cur, avg in RAIL_RE.findall(line):
        rails[name] = [int(cur), int(avg)]
    temps = {}
    for name, value in TEMP_RE.findall(line):
        if float(value) > -200:
            temps[name] = float(value)
    out = {"rails": rails, "temps_c": temps, "gpu_load": None, "gpu_mhz": None}
    m = GR3D_RE.search(line)
    if m:
        out["gpu_load"] = int(m.group(1))
        out["gpu_mhz"] = int(m.group(2)) if m.group(2) else None
    name = total_rail(rails)
    out["total_rail"] = name
    out["total_w"] = rails[name][0] / 1e3 if name else None
    return out


def find_tegrastats():
    return shutil.which("tegrastats") or ("/usr/bin/tegrastats" if os.path.exists("/usr/bin/tegrastats") else None)


class TegrastatsStream:
    """Streams `tegrastats --interval MS` and pushes (monotonic s, W) per line to a sink (a push reader).

    Each line is timestamped when it arrives; tegrastats prints one line per interval.
    """

    source = "tegrastats"
    kind = "push"
    max_rate_hz = None
    min_window_s = 0.0

    def idle_window(self, seconds):
        return None  # sampled here while idle

    def __init__(self, interval_ms=20, exe=None):
        self.exe = exe or find_tegrastats()
        if not self.exe:
            raise OSError("tegrastats not found (not a Jetson)")
        self.interval_ms = int(interval_ms)
        self.proc = None
        self.thread = None
        self.error = ""

    def attach(self, sink):
        self.proc = subprocess.Popen(
            [self.exe, "--interval", str(self.interval_ms)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            universal_newlines=True,
            bufsize=1,
        )
        self.thread = threading.Thread(target=self._pump, args=(sink,), daemon=True)
        self.thread.start()

    def _pump(self, sink):
        stdout = self.proc.stdout if self.proc is not None else None  # a pipe: attach() opened it before this thread
        if stdout is None:
            return
        for line in iter(stdout.readline, ""):
            t = time.monotonic()
            parsed = parse_tegrastats(line)
            if parsed["total_w"] is None:
                self.error = "tegrastats shows no total-board rail (VDD_IN/POM_5V_IN); sub-rails are never summed"
                continue
            sink(t, parsed["total_w"])

    def detach(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.thread is not None:
            self.thread.join(timeout=2)

    def close(self):
        self.detach()


POWER_ORDER = ("ina3221-sysfs", "jtop", "tegrastats")


def open_power(root="/", want="auto", rate_hz=50.0):
    """The first usable source and why the others were skipped.

    INA3221 sysfs comes first: read directly it is polled at rate_hz (50 Hz), where jtop refreshes at
    its service's interval (1 s by default) and tegrastats prints at most every few ms with process
    overhead. Returns (reader or None, {source: reason}). Readers declare what devices/power.py's
    PowerReader does: source, kind ("power": read_watts(); "push": attach(sink)/detach()), max_rate_hz,
    min_window_s, idle_window(seconds) and close().
    """
    reasons = {}  # type: Dict[str, str]
    order = POWER_ORDER if want == "auto" else (want,)
    for name in order:
        try:
            if name == "jtop":
                return JtopReader(root, rate_hz), reasons
            if name == "ina3221-sysfs":
                return Ina3221Reader(root), reasons
            if name == "tegrastats":
                return TegrastatsStream(max(1, int(1000.0 / rate_hz))), reasons
            reasons[name] = "unknown power source"
        except ImportError as exc:
            reasons[name] = "jetson-stats not installed (%s)" % exc
        except PermissionError as exc:
            reasons[name] = "permission denied: %s" % exc
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            reasons[name] = str(exc)
    return None, reasons


class Sampler:
    """Collects [t, W] pairs from a polling reader (own thread at rate_hz) or a push reader."""

    def __init__(self, reader, rate_hz=50.0):
        self.reader = reader
        max_rate = reader.max_rate_hz  # jtop: polling faster than it refreshes only repeats values
        self.rate_hz = min(float(rate_hz), float(max_rate)) if max_rate else float(rate_hz)
        self.samples = []
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.thread = None

    def _sink(self, t, watts):
        with self.lock:
            self.samples.append([t, watts])

    def wait_first(self, timeout=2.0):
        """Wait (up to `timeout` s) for the first sample, so that a window opened next starts inside the trace."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.samples:
                    return True
            time.sleep(0.2 / self.rate_hz)
        return False

    def start(self):
        if self.reader.kind == "push":
            self.reader.attach(self._sink)
            return self
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        return self

    def _loop(self):
        period = 1.0 / self.rate_hz
        nxt = time.monotonic()
        while not self.stop_event.is_set():
            watts = self.reader.read_watts()
            self._sink(time.monotonic(), watts)
            nxt += period
            self.stop_event.wait(max(0.0, nxt - time.monotonic()))

    def stop(self):
        self.stop_event.set()
        if self.reader.kind == "push":
            self.reader.detach()
        if self.thread is not None:
            self.thread.join(timeout=2)
        self.reader.close()
        with self.lock:
            return list(self.samples)


# -- clocks, temperatures, power mode ---------------------------------------------------------------------
def gpu_devfreq(root="/"):
    for d in sorted(glob.glob(_p(root, "sys/class/devfreq/*"))):
        if any(k in os.path.basename(d) for k in GPU_DEVFREQ_NAMES):
            return d
    return None


def snapshot(root="/"):
    """Clocks (MHz), temperatures (°C) and their passive/hot trip limits (°C), for throttle detection."""
    clocks, temps, limits = {}, {}, {}
    gpu = gpu_devfreq(root)
    if gpu:
        hz = _read_int(os.path.join(gpu, "cur_freq"))
        if hz:
            clocks["gpu"] = hz / 1e6
    for f in sorted(glob.glob(_p(root, "sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq"))):
        khz = _read_int(f)
        if khz:
            clocks[f.split("/")[-3]] = khz / 1e3
    for zone in sorted(glob.glob(_p(root, "sys/devices/virtual/thermal/thermal_zone*"))):
        name = _read(os.path.join(zone, "type"))
        milli = _read_int(os.path.join(zone, "temp"))
        if not name or milli is None or milli <= -200000:
            continue
        key = name if name not in temps else "%s-%s" % (name, os.path.basename(zone))
        temps[key] = milli / 1e3
        trips = []
        for tfile in glob.glob(os.path.join(zone, "trip_point_*_type")):
            if _read(tfile) in ("passive", "hot"):
                value = _read_int(tfile[: -len("type")] + "temp")
                if value and value > 0:
                    trips.append(value / 1e3)
        if trips:
            limits[key] = min(trips)
    return {"clocks_mhz": clocks, "temps_c": temps, "temp_limits_c": limits}


def nvpmodel(root="/"):
    """The nvpmodel power mode {"id", "name", "how"}, from `nvpmodel -q` or its status file."""
    try:
        out = subprocess.check_output(["nvpmodel", "-q"], stderr=subprocess.STDOUT, universal_newlines=True, timeout=10)
        m = re.search(r"NV Power Mode:\s*(\S+)\s*\n\s*(\d+)", out)
        if m:
            return {"id": int(m.group(2)), "name": m.group(1), "how": "nvpmodel -q"}
    except (OSError, subprocess.SubprocessError):
        pass
    status = _read(_p(root, "var/lib/nvpmodel/status"))
    m = re.search(r"pmode:(\d+)", status or "")
    if m:
        return {"id": int(m.group(1)), "name": None, "how": "/var/lib/nvpmodel/status"}
    return None


def jetson_clocks(root="/"):
    """Whether jetson_clocks is on: it pins min = max on the GPU (and CPU) frequency ranges.

    `jetson_clocks --show` needs root, so this reads the devfreq/cpufreq ranges instead.
    """
    gpu = gpu_devfreq(root)
    if not gpu:
        return {"state": "unknown", "evidence": "no GPU devfreq node"}
    gmin, gmax = _read_int(os.path.join(gpu, "min_freq")), _read_int(os.path.join(gpu, "max_freq"))
    cpu = _p(root, "sys/devices/system/cpu/cpu0/cpufreq")
    cmin, cmax = _read_int(os.path.join(cpu, "scaling_min_freq")), _read_int(os.path.join(cpu, "scaling_max_freq"))
    if gmin is None or gmax is None:
        return {"state": "unknown", "evidence": "GPU min/max_freq unreadable"}
    pinned = gmin == gmax and (cmin is None or cmin == cmax)
    evidence = "gpu min/max %s/%s Hz, cpu0 min/max %s/%s kHz" % (gmin, gmax, cmin, cmax)
    return {"state": "on" if pinned else "off", "evidence": evidence}


def l4t_release(root="/"):
    """'32.7.1' from /etc/nv_tegra_release ('# R32 (release), REVISION: 7.1, ...')."""
    m = re.search(r"R(\d+) \(release\), REVISION: ([\d.]+)", _read(_p(root, "etc/nv_tegra_release")) or "")
    return "%s.%s" % (m.group(1), m.group(2)) if m else None


def jetpack_version(root="/"):
    """JetPack from the nvidia-jetpack package when installed, else the major line implied by L4T."""
    if root == "/":
        try:
            out = subprocess.check_output(
                ["dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack"],
                stderr=subprocess.DEVNULL,
                universal_newlines=True,
                timeout=10,
            )
            if out.strip():
                return out.strip().split("-")[0]
        except (OSError, subprocess.SubprocessError):
            pass
    l4t = l4t_release(root)
    major = {"32": "4.x", "34": "5.x", "35": "5.x", "36": "6.x"}.get((l4t or "").split(".")[0])
    return major


def board_model(root="/"):
    return _read(_p(root, "proc/device-tree/model"))


def find_trtexec():
    return shutil.which("trtexec") or (TRTEXEC_FALLBACK if os.path.exists(TRTEXEC_FALLBACK) else None)


def trtexec_banner(exe):
    """trtexec's first line ('&&&& RUNNING TensorRT.trtexec [TensorRT v8201] # ...'), or None."""
    try:
        proc = subprocess.Popen(
            [exe, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True
        )
        out, _ = proc.communicate(timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        if "TensorRT.trtexec" in line:
            return line.strip()
    return None


def info(root="/", want_power="auto"):
    """Everything identity() records about the board, plus which power source a run would use and why."""
    reader, reasons = open_power(root, want_power)
    source = reader.source if reader else "none"
    if reader is not None:
        reader.close()
    exe = find_trtexec()
    return {
        "model": board_model(root),
        "l4t": l4t_release(root),
        "jetpack": jetpack_version(root),
        "nvpmodel": nvpmodel(root),
        "jetson_clocks": jetson_clocks(root),
        "power_source": source,
        "power_reasons": reasons,
        "trtexec": exe,
        "trtexec_banner": trtexec_banner(exe) if exe else None,
        "python": "%d.%d.%d" % sys.version_info[:3],
        "snapshot": snapshot(root),
        "clock": time.monotonic(),
    }


# -- running trtexec next to the sampler ------------------------------------------------------------------
def run_logged(argv, markers=("Starting inference",)):
    """Run a command, timestamping each output line on arrival; returns rc, log and marker times."""
    t_start = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, bufsize=1
        )
    except OSError as exc:
        return {"rc": 127, "log": str(exc), "t_start": t_start, "t_end": time.monotonic(), "marks": {}}
    lines, marks = [], {}
    assert proc.stdout is not None  # stdout=PIPE
    for line in iter(proc.stdout.readline, ""):
        t = time.monotonic()
        lines.append(line)
        for marker in markers:
            if marker in line and marker not in marks:
                marks[marker] = t
    rc = proc.wait()
    return {"rc": rc, "log": "".join(lines), "t_start": t_start, "t_end": time.monotonic(), "marks": marks}


def run_jobs(spec):
    """Run spec["jobs"] in order while one sampler records board power; returns all logs and samples.

    A job is {"argv": [...], "skip_if_exists": path, "read": [paths]}: skipped when the path exists (a
    cached engine), otherwise run with its output lines timestamped; files in "read" come back inline.
    """
    root = spec.get("root", "/")
    rate = float(spec.get("rate_hz", 50.0))
    for d in spec.get("mkdir", []):
        if not os.path.isdir(d):
            os.makedirs(d)
    reader, reasons = (None, {"all": "not requested"})
    if spec.get("sample", True):
        reader, reasons = open_power(root, spec.get("power", "auto"), rate)
    sampler = Sampler(reader, rate).start() if reader is not None else None
    if sampler is not None:
        sampler.wait_first(max(2.0, 5.0 / sampler.rate_hz))  # windows must not open before the first sample
    before = snapshot(root)
    results = []
    for job in spec.get("jobs", []):
        skip = job.get("skip_if_exists")
        if skip and os.path.exists(skip):
            results.append({"skipped": True, "rc": 0})
            continue
        res = run_logged(job["argv"])
        res["files"] = dict((p, _read(p)) for p in job.get("read", []))
        results.append(res)
        if res["rc"] != 0:
            break
    idle = None
    if spec.get("idle_s"):
        idle = [time.monotonic()]
        time.sleep(float(spec["idle_s"]))
        idle.append(time.monotonic())
    time.sleep(float(spec.get("tail_s", 2.0 / rate)))  # at least one sample past the last window
    after = snapshot(root)
    samples = sampler.stop() if sampler is not None else []
    return {
        "clock": time.monotonic(),
        "power_source": reader.source if reader is not None else "none",
        "power_reasons": reasons,
        "samples": samples,
        "snapshot_before": before,
        "snapshot_after": after,
        "jobs": results,
        "idle_window": idle,
    }


def main(argv):
    spec = json.loads(base64.b64decode(argv[0]).decode("utf-8")) if argv else {"cmd": "info"}
    if spec.get("cmd") == "run":
        out = run_jobs(spec)
    else:
        out = info(spec.get("root", "/"), spec.get("power", "auto"))
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

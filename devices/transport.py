"""How commands and files reach a Jetson: the local machine, or a board over SSH (system `ssh`/`scp`).

Hosts come from the command line and from farm inventories that other people write, so every host goes through
`validate_host` (`[user@]host[:port]`: no leading `-`, no whitespace or shell metacharacters) before any
subprocess, argv is always a list, and `--` ends the options before the destination of ssh and scp: a host can
never become an ssh option (`-oProxyCommand=...`, `-E file`).

SSH uses BatchMode (keys only, never a password prompt) and one shared connection (ControlMaster) so the
handful of commands per case do not each pay a handshake. Extra options (port, identity, jump host) come
from the `ssh_options` argument or the TICKETBENCH_SSH_OPTS environment variable (shell-split).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path


class TransportError(RuntimeError):
    """A command or copy on the board failed; the message carries its stderr."""


class HostError(ValueError):
    """A host string that is not `[user@]host[:port]`; the message (one line) says why."""


_USER = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}"
_HOSTNAME = r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?"  # DNS name or IPv4; starts with a letter or digit
_IPV6 = r"\[[0-9A-Fa-f:.]{2,45}\]"
_HOST = re.compile(rf"(?:(?P<user>{_USER})@)?(?P<host>{_HOSTNAME}|{_IPV6})(?::(?P<port>[0-9]{{1,5}}))?")


def validate_host(host: object) -> str:
    """`host` unchanged if it is `[user@]host[:port]` (host: a DNS name, IPv4, or [IPv6]; port 1-65535), else
    HostError. The one check for every host that reaches ssh/scp: the CLI's --host, the farm inventory, farm
    reachability. A leading `-`, whitespace, quotes and shell metacharacters can never match."""
    if not isinstance(host, str) or not host:
        raise HostError(f"host must be [user@]host[:port], got {host!r}")
    m = _HOST.fullmatch(host)
    if m is None:
        why = "starts with '-'" if host.startswith("-") else "is not [user@]host[:port] (letters, digits, '.', '-')"
        raise HostError(f"host {host!r} {why}"[:300])
    if m["port"] is not None and not 1 <= int(m["port"]) <= 65535:
        raise HostError(f"host {host!r}: port must be 1-65535")
    return host


def split_host(host: str, brackets: bool = False) -> tuple[str, str | None]:
    """(`[user@]host` destination, port or None) of a validated host. ssh wants an IPv6 address bare,
    scp's `host:path` wants it in brackets (`brackets=True`)."""
    m = _HOST.fullmatch(validate_host(host))
    assert m is not None
    name = m["host"] if brackets else m["host"].strip("[]")
    return (f"{m['user']}@{name}" if m["user"] else name), m["port"]


def ssh_argv(host: str, options: Sequence[str], *remote: str) -> list[str]:
    """`ssh OPTIONS [-p PORT] -- DEST REMOTE...`: the host validated, `--` before it."""
    dest, port = split_host(host)
    return ["ssh", *options, *(["-p", port] if port else []), "--", dest, *remote]


def scp_argv(host: str, options: Sequence[str], local: Sequence[str], remote_dir: str) -> list[str]:
    """`scp -q OPTIONS [-P PORT] -- FILES... DEST:DIR/`: the host validated, `--` before the operands."""
    dest, port = split_host(host, brackets=True)
    return ["scp", "-q", *options, *(["-P", port] if port else []), "--", *local, f"{dest}:{remote_dir}/"]


class LocalTransport:
    """Runs on this machine (a Jetson running ticketbench itself)."""

    remote = False
    where = "local"

    def __init__(self, workdir: str | None = None) -> None:
        self.workdir = workdir or os.path.expanduser("~/.cache/ticketbench/jetson")

    def run(self, argv: Sequence[str], input: str | None = None, timeout: float = 600) -> str:
        proc = subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise TransportError(f"{argv[0]} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
        return proc.stdout

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def listdir(self, path: str) -> set[str]:
        return set(os.listdir(path)) if os.path.isdir(path) else set()

    def put(self, local: Sequence[Path], remote_dir: str) -> None:
        os.makedirs(remote_dir, exist_ok=True)
        for f in local:
            dst = os.path.join(remote_dir, Path(f).name)
            if os.path.abspath(f) != os.path.abspath(dst):
                shutil.copyfile(f, dst)

    def close(self) -> None:
        pass


class SshTransport:
    """Runs on `user@host` through the system ssh client; files go with scp."""

    remote = True

    def __init__(self, host: str, ssh_options: Sequence[str] | None = None, workdir: str | None = None) -> None:
        self.host = validate_host(host)
        self.where = host
        opts = list(ssh_options) if ssh_options is not None else shlex.split(os.environ.get("TICKETBENCH_SSH_OPTS", ""))
        self._cm_dir = tempfile.mkdtemp(prefix="tb-ssh-")
        self.options = [
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=15",
            "-o",
            "ControlMaster=auto",
            "-o",
            f"ControlPath={self._cm_dir}/%C",
            "-o",
            "ControlPersist=120",
            *opts,
        ]
        # relative paths resolve in the login directory for both ssh commands and scp
        self.workdir = workdir or os.environ.get("TICKETBENCH_JETSON_WORKDIR", ".cache/ticketbench/jetson")

    def _ssh(self, command: str, input: str | None, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run(
            ssh_argv(self.host, self.options, command), input=input, capture_output=True, text=True, timeout=timeout
        )

    def run(self, argv: Sequence[str], input: str | None = None, timeout: float = 600) -> str:
        proc = self._ssh(" ".join(shlex.quote(a) for a in argv), input, timeout)
        if proc.returncode != 0:
            err = proc.stderr.strip()[-500:] or proc.stdout[-300:]
            raise TransportError(f"ssh {self.host} {argv[0]} exited {proc.returncode}: {err}")
        return proc.stdout

    def exists(self, path: str) -> bool:
        return self._ssh(f"test -e {shlex.quote(path)}", None, 60).returncode == 0

    def listdir(self, path: str) -> set[str]:
        proc = self._ssh(f"ls -1 {shlex.quote(path)} 2>/dev/null", None, 60)
        return set(proc.stdout.split()) if proc.returncode == 0 else set()

    def put(self, local: Sequence[Path], remote_dir: str) -> None:
        if not local:
            return
        self.run(["mkdir", "-p", remote_dir], timeout=60)
        scp_opts = [o.replace("-p", "-P", 1) if o == "-p" else o for o in self.options]  # scp spells port -P
        proc = subprocess.run(
            scp_argv(self.host, scp_opts, [str(f) for f in local], remote_dir),
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0:
            raise TransportError(f"scp to {self.host}:{remote_dir} failed: {proc.stderr.strip()[-500:]}")

    def close(self) -> None:
        """Stop the shared connection this transport opened (ssh -O exit), and remove its socket dir."""
        subprocess.run(ssh_argv(self.host, [*self.options, "-O", "exit"]), capture_output=True, timeout=30)
        shutil.rmtree(self._cm_dir, ignore_errors=True)

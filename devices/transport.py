"""How commands and files reach a Jetson: the local machine, or a board over SSH (system `ssh`/`scp`).

SSH uses BatchMode (keys only, never a password prompt) and one shared connection (ControlMaster) so the
handful of commands per case do not each pay a handshake. Extra options (port, identity, jump host) come
from the `ssh_options` argument or the TICKETBENCH_SSH_OPTS environment variable (shell-split).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path


class TransportError(RuntimeError):
    """A command or copy on the board failed; the message carries its stderr."""


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
        self.host = host
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
            ["ssh", *self.options, self.host, command], input=input, capture_output=True, text=True, timeout=timeout
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
            ["scp", "-q", *scp_opts, *[str(f) for f in local], f"{self.host}:{remote_dir}/"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0:
            raise TransportError(f"scp to {self.host}:{remote_dir} failed: {proc.stderr.strip()[-500:]}")

    def close(self) -> None:
        """Stop the shared connection this transport opened (ssh -O exit), and remove its socket dir."""
        subprocess.run(["ssh", *self.options, "-O", "exit", self.host], capture_output=True, timeout=30)
        shutil.rmtree(self._cm_dir, ignore_errors=True)

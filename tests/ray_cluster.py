"""A real Ray cluster on this machine for tests and bench/cluster_bench.py: one ``ray start --head --block``
process and one ``ray start --address=... --block`` process per further node, each with its own CPUs and
resource labels. Stopped by signalling exactly those processes (and, after, killing what they left below
them, by PID): nothing else on the machine is touched (no ``ray stop``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _descendants(pids: list[int]) -> list[int]:
    """Every live process below ``pids`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], list(pids)
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            out.append(child)
            todo.append(child)
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class Cluster:
    """``nodes``: per node, its Ray resources (``CPU`` and any labels); the first is the head. With ``client``
    the head also runs a Ray Client server (needs ``ray[client]``), at :attr:`client_address`."""

    def __init__(
        self, root: Path, nodes: list[Mapping[str, float]], env: Mapping[str, str], client: bool = False
    ) -> None:
        self.root = root
        self.nodes = nodes
        self.env = dict(env)
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.client_port = _free_port() if client else None
        self.client_address = f"ray://127.0.0.1:{self.client_port}" if client else None
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        for k, node in enumerate(self.nodes):
            labels = {n: v for n, v in node.items() if n != "CPU"}
            args = [str(VENV_BIN / "ray"), "start", "--block", "--disable-usage-stats", "--node-ip-address=127.0.0.1",
                    f"--num-cpus={int(node.get('CPU', 1))}", f"--resources={json.dumps(labels)}"]  # fmt: skip
            if k == 0:
                args += [
                    "--head",
                    f"--port={self.port}",
                    "--include-dashboard=false",
                    f"--temp-dir={self.root}",
                ]
                if self.client_port is not None:
                    args += [f"--ray-client-server-port={self.client_port}"]
            else:
                args += [f"--address={self.address}"]
            log = open(self.root / f"node{k}.log", "wb")  # noqa: SIM115  # closed with the process
            self.procs.append(subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT))
            self._wait_nodes(k + 1)

    def _wait_nodes(self, count: int) -> None:
        deadline = time.monotonic() + 120
        status = None
        while time.monotonic() < deadline:
            status = subprocess.run([str(VENV_BIN / "ray"), "status", f"--address={self.address}"], env=self.env,
                                    capture_output=True, text=True)  # fmt: skip
            if status.returncode == 0 and status.stdout.count("node_") >= count:
                return
            for k, proc in enumerate(self.procs):
                if proc.poll() is not None:
                    log = (self.root / f"node{k}.log").read_text(errors="replace")[-2000:]
                    raise AssertionError(f"ray start exited with {proc.returncode}: {log}")
            time.sleep(0.5)
        raise AssertionError(f"the Ray cluster did not reach {count} node(s): {status}")

    def workers(self, name: str) -> list[int]:
        """PIDs of this cluster's worker processes whose title starts with ``ray::NAME``."""
        return [
            p for p in _descendants([p.pid for p in self.procs]) if _cmdline(p).startswith(f"ray::{name}")
        ]

    def stop(self) -> None:
        below = _descendants([p.pid for p in self.procs])
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in below:  # anything of ours `ray start` left behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def ray_cluster(
    *nodes: Mapping[str, float], env: Mapping[str, str] | None = None, client: bool = False
) -> Iterator[Cluster]:
    """A running cluster of ``nodes`` (default one CPU each), stopped and its files removed on exit; ``client``:
    with a Ray Client server on the head."""
    root = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    cluster = Cluster(root, [{"CPU": 1.0, **n} for n in nodes], env or os.environ, client)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)

"""sd_notify against a fake NOTIFY_SOCKET: a real AF_UNIX datagram socket, path and abstract namespace."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from phototag.daemon.sdnotify import Notifier


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    name = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(name)
    sock.settimeout(5)
    yield sock, name
    sock.close()


@pytest.fixture
def abstract_socket() -> Iterator[tuple[socket.socket, str]]:
    name = f"phototag-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    yield sock, "@" + name
    sock.close()


def received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_messages_reach_a_path_socket(path_socket: tuple[socket.socket, str]) -> None:
    sock, name = path_socket
    n = Notifier({"NOTIFY_SOCKET": name})
    assert n.enabled
    assert n.ready("watching 2 folders")
    assert received(sock) == ["READY=1", "STATUS=watching 2 folders", f"MAINPID={os.getpid()}"]
    assert n.status("queue 3\nin flight 1")  # a newline would split STATUS into two assignments
    assert received(sock) == ["STATUS=queue 3 in flight 1"]
    assert n.watchdog()
    assert received(sock) == ["WATCHDOG=1"]
    assert n.stopping("draining")
    assert received(sock) == ["STOPPING=1", "STATUS=draining"]
    assert n.reloading()
    assert received(sock) == ["RELOADING=1"]


def test_abstract_namespace_socket(abstract_socket: tuple[socket.socket, str]) -> None:
    sock, name = abstract_socket
    assert Notifier({"NOTIFY_SOCKET": name}).ready()
    assert received(sock)[0] == "READY=1"


def test_without_systemd_nothing_is_sent_and_nothing_fails() -> None:
    n = Notifier({})
    assert not n.enabled
    assert n.ready() is False and n.watchdog() is False
    assert n.watchdog_interval is None


def test_a_vanished_socket_is_logged_once_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert n.status("x") is False
    assert n.status("y") is False
    assert len([r for r in caplog.records if "cannot notify systemd" in r.getMessage()]) == 1


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert Notifier({"WATCHDOG_USEC": "30000000"}).watchdog_interval == 15.0
    assert Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}).watchdog_interval == 15.0
    not_for_us = Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"})
    assert not_for_us.watchdog_interval is None
    assert Notifier({"WATCHDOG_USEC": "0"}).watchdog_interval is None

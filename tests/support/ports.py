"""Free TCP ports on the loopback interface for throwaway servers.

The kernel hands out an ephemeral port when we bind to port 0; we close the socket and give the
number to a server that binds it a moment later. That leaves a small race with other processes on
the machine, so ports handed out by this process are remembered and never handed out twice, and
callers that start a server retry on "address in use".
"""

from __future__ import annotations

import socket
import threading
import time

_lock = threading.Lock()
_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that nothing listens on now and that this process never handed out."""
    with _lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port: int = sock.getsockname()[1]
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise RuntimeError("no free TCP port found after 100 tries")


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Return ``count`` distinct free ports."""
    return [free_port(host) for _ in range(count)]


def port_is_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a TCP connect to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float = 30.0, interval: float = 0.05) -> bool:
    """Poll until host:port accepts a TCP connection; False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_is_open(host, port):
            return True
        time.sleep(interval)
    return False

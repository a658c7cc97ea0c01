"""Range serving benchmark: a viewing URL under uvicorn against nginx serving the same file.

A benchmark, not a test: nothing here asserts a timing. Both servers are measured in the same
run, alternately, so read the ratios, not the absolute numbers, on a noisy machine.

One embedded-profile store (local object store) in a temp dir holds one object of --mib MiB of
seeded random bytes. The same file is served

- by nginx (Debian's nginx-light, `sendfile on`), as a static file. `tcp_nopush` stays off:
  with it on, each 64 KiB answer waited for the client's delayed ACK (about 200 req/s
  instead of thousands), which would flatter the API;
- by the API app (`api.app.create_app`) under uvicorn at a viewing URL
  (`/api/v1/viewings/{token}`, api/viewing.py), whose token is signed with the store's
  viewing key as `POST .../viewings` signs it. Opening the viewing (the policy and the one
  ledger entry) happens once per viewing, so it is not part of what is measured here.

With --accel (as `make bench` runs it), a third: nginx in front of the API, which checks the
token and hands the file back with X-Accel-Redirect (docs/media.md), as a deployment may.

Each server gets the same number of processes (--procs: nginx workers, uvicorn workers).
--clients connections (keep-alive, one request at a time each, as a player or a download
manager sends them) ask for random ranges for --seconds per run:

1. MB/s with 1 MiB ranges;
2. requests/s with 64 KiB ranges.

The client is one process of raw asyncio sockets (uvloop when installed); it runs on the same
machine, so both servers share the cores with it. Every run is checked: each response is a
206 with the asked-for length, and the bytes of one range per run are compared with the file.

    .venv/bin/python bench/serve.py --quick    # 2 rounds of 2 s: smoke run
    .venv/bin/python bench/serve.py            # 3 rounds of 5 s: the figures

Prints the medians of the rounds with the ratios to nginx, and each server's CPU time per
request (user + system of its processes: what the load of a shared machine changes least,
while the rates swing with it). When the client's own CPU is what limits nginx (64 KiB
ranges on a small machine), the rate ratio flatters the API; the CPU ratio does not. Raw
figures go to
bench/results/serve-<timestamp>.json (git-ignored). MB = 10^6 bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import pwd
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `evidence` without an install

from evidence.config import Settings
from evidence.context import Context
from evidence.viewings import LIFETIME, ROUTE, Grant, sign

MiB, KiB, MB = 1024 * 1024, 1024, 1_000_000
KEY = "derivatives/bench/proxy.mp4"
T0 = time.perf_counter()
_TICKS = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(server: Server, seconds: float = 30) -> None:
    """Until the server answers on its port (any answer: check_bytes judges it)."""
    end = time.monotonic() + seconds
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


# -- the servers --------------------------------------------------------------------------


NGINX_CONF = """
{user}
worker_processes {procs};
daemon off;
pid {tmp}/nginx-{name}.pid;
error_log {tmp}/nginx-{name}-error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    sendfile on;
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    types {{ video/mp4 mp4; }}
    server {{
        listen 127.0.0.1:{port};
{body}
    }}
}}
"""
STATIC = "        root {root};"
# nginx in front of the API (docs/media.md): the API checks the token, nginx sends the file.
ACCEL = """
        location /_footage/ {{ internal; alias {root}/; }}
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}"""


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    path: str
    behind: Server | None = None  # the API behind nginx (X-Accel-Redirect)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server's processes have used so far."""
        total = self.behind.cpu_seconds() if self.behind else 0.0
        todo = [self.proc.pid]
        while todo:
            pid = todo.pop()
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime
            todo += [int(c) for c in children]
        return total

    def stop(self) -> None:
        if self.behind:
            self.behind.stop()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "")
    if not found:
        sys.exit("nginx is missing: apt-get install -y nginx-light (scripts/system-deps.sh)")
    return found


def start_nginx(
    tmp: Path, root: Path, procs: int, behind: Server | None = None, path: str = "/" + KEY
) -> Server:
    """nginx serving the store's files (`behind` None), or in front of the API `behind`."""
    port = free_port()
    name = "accel" if behind else "static"
    conf = tmp / f"nginx-{name}.conf"
    # The store's directory is private (0700): nginx's workers read it as its owner, as a
    # deployment's nginx reads the store it serves with X-Accel-Redirect.
    user = f"user {pwd.getpwuid(os.getuid()).pw_name};" if os.geteuid() == 0 else ""
    body = ACCEL.format(root=root, upstream=behind.port) if behind else STATIC.format(root=root)
    conf.write_text(
        NGINX_CONF.format(user=user, procs=procs, tmp=tmp, name=name, port=port, body=body)
    )
    proc = subprocess.Popen(
        [nginx_binary(), "-c", str(conf), "-p", str(tmp), "-e", "stderr"],
        stdout=subprocess.DEVNULL,
        stderr=(tmp / f"nginx-{name}-stderr.log").open("wb"),
    )
    if behind:
        return Server("nginx + viewing (accel)", proc, port, path, behind)
    return Server("nginx", proc, port, path)


def start_uvicorn(
    data_dir: Path, procs: int, http: str, loop: str, token: str, accel: str | None = None
) -> Server:
    port = free_port()
    env = {
        **os.environ,
        **({"EVIDENCE_VIEWING_ACCEL_REDIRECT": accel} if accel else {}),
        "EVIDENCE_DATA_DIR": str(data_dir),
        "EVIDENCE_STORAGE_BACKEND": "local",
        "EVIDENCE_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "PYTHONPATH": str(ROOT),
    }
    cmd = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(procs)]
    cmd += ["--http", http, "--loop", loop, "--log-level", "warning", "--no-access-log"]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    return Server(f"viewing ({http}, {loop})", proc, port, ROUTE + token)


# -- the client ---------------------------------------------------------------------------


class _RangeClient(asyncio.BufferedProtocol):
    """One keep-alive connection asking for random ranges, one at a time, until `until`.
    The body is counted, not kept, into one reused buffer: the client should cost as little
    as possible, so that the servers, not it, are what is measured."""

    def __init__(self, path: str, size: int, span: int, until: float, seed: int):
        self.path, self.size, self.span, self.until = path, size, span, until
        self.rng = random.Random(seed)
        self.buf = bytearray(256 * KiB)
        self.head = bytearray()
        self.left = -1  # body bytes still to come; -1 while reading the head
        self.done = 0
        self.finished: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self._ask()

    def _ask(self) -> None:
        if time.perf_counter() >= self.until:
            self.transport.close()
            return
        start = self.rng.randrange(0, self.size - self.span + 1)
        self.transport.write(  # type: ignore[attr-defined]
            f"GET {self.path} HTTP/1.1\r\nHost: bench\r\n"
            f"Range: bytes={start}-{start + self.span - 1}\r\n\r\n".encode()
        )

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self.buf)

    def buffer_updated(self, nbytes: int) -> None:
        if self.left < 0:
            self.head += self.buf[:nbytes]
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            self._check(bytes(self.head[:end]))
            self.left = self.span - (len(self.head) - end - 4)
            self.head.clear()
        else:
            self.left -= nbytes
        if self.left == 0:
            self.done += 1
            self.left = -1
            self._ask()
        elif self.left < 0:
            raise RuntimeError(f"{self.path}: more bytes than the range asked for")

    def _check(self, head: bytes) -> None:
        length = -1
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if head[9:12] != b"206" or length != self.span:
            raise RuntimeError(f"{self.path}: {head[:200]!r}")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished.done():
            self.finished.set_result(self.done)


def measure(
    server: Server, size: int, span: int, clients: int, seconds: float
) -> tuple[float, float]:
    """Requests per second, all clients together, and the server's CPU microseconds per
    request (what the load on the machine changes least)."""

    async def run() -> tuple[int, float]:
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        until = t0 + seconds
        conns = []
        for i in range(clients):
            _, proto = await loop.create_connection(
                lambda i=i: _RangeClient(server.path, size, span, until, i * 7919 + span),
                "127.0.0.1",
                server.port,
            )
            conns.append(proto)
        counts = await asyncio.gather(*(c.finished for c in conns))
        return sum(counts), time.perf_counter() - t0

    cpu0 = server.cpu_seconds()
    done, elapsed = _run(run())
    return done / elapsed, (server.cpu_seconds() - cpu0) / max(done, 1) * 1e6


def _run(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def check_bytes(server: Server, data: bytes) -> None:
    """One range, compared with the file: a fast server that sends the wrong bytes is no use."""
    start = len(data) // 3
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{server.path}",
        headers={"Range": f"bytes={start}-{start + 64 * KiB - 1}"},
    )
    with urllib.request.urlopen(req) as r:  # noqa: S310 - our own loopback
        got = r.read()
    if got != data[start : start + 64 * KiB]:
        raise RuntimeError(f"{server.name} sent other bytes than the file's")


# -- main -----------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--mib", type=int, default=64, help="the object's size")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--procs", type=int, default=1, help="nginx workers = uvicorn workers")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--http", default="auto", help="uvicorn's --http: auto, h11, httptools")
    p.add_argument("--loop", default="auto", help="uvicorn's --loop: auto, asyncio, uvloop")
    p.add_argument("--quick", action="store_true", help="2 rounds of 2 s")
    p.add_argument(
        "--accel",
        action="store_true",
        help="also nginx in front of the API, serving with X-Accel-Redirect",
    )
    args = p.parse_args()
    if args.quick:
        args.rounds, args.seconds = 2, 2.0

    results: dict[str, Any] = {
        "args": vars(args),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_before": Path("/proc/loadavg").read_text().strip(),
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp_name:
        tmp = Path(tmp_name)
        data_dir = tmp / "var"
        settings = Settings(data_dir=data_dir, storage_backend="local")
        ctx = Context(settings)
        data = random.Random(14).randbytes(args.mib * MiB)
        stored = ctx.store.put(KEY, _Bytes(data))
        grant = Grant(
            key=KEY,
            subject="clip:bench:proxy",
            sha256=stored.sha256,
            size=stored.size,
            media_type="video/mp4",
            filename=None,
            viewer="bench",
            expires=int(time.time() + LIFETIME.total_seconds()),
        )
        token = sign(ctx.viewing_key, grant)
        log(f"{args.mib} MiB object; {args.clients} clients; {args.procs} process(es) each")
        servers: list[Server] = []
        try:
            root = settings.resolved_storage_dir()
            servers.append(start_nginx(tmp, root, args.procs))
            servers.append(start_uvicorn(data_dir, args.procs, args.http, args.loop, token))
            if args.accel:
                api = start_uvicorn(data_dir, args.procs, args.http, args.loop, token, "/_footage/")
                wait_for(api)
                servers.append(start_nginx(tmp, root, args.procs, api, ROUTE + token))
            for s in servers:
                wait_for(s)
                check_bytes(s, data)
            for rnd in range(args.rounds):
                for span, what in ((MiB, "1MiB"), (64 * KiB, "64KiB")):
                    order = servers if rnd % 2 == 0 else servers[::-1]
                    for s in order:
                        rps, cpu = measure(s, len(data), span, args.clients, args.seconds)
                        mbps = rps * span / MB
                        line = (
                            f"{what:>5} {s.name:<28} {rps:9.0f} req/s {mbps:7.1f} MB/s "
                            f"{cpu:7.0f} CPU us/req"
                        )
                        log(f"round {rnd + 1} {line}")
                        results["runs"].append(
                            {
                                "round": rnd,
                                "span": span,
                                "server": s.name,
                                "rps": rps,
                                "mbps": mbps,
                                "cpu_us_per_request": cpu,
                            }
                        )
        finally:
            for s in servers:
                s.stop()
    results["loadavg_after"] = Path("/proc/loadavg").read_text().strip()
    report(results, [s.name for s in servers])


class _Bytes:
    def __init__(self, data: bytes):
        self._data, self._at = memoryview(data), 0

    def read(self, n: int = -1) -> bytes:
        n = len(self._data) - self._at if n < 0 else n
        out = bytes(self._data[self._at : self._at + n])
        self._at += len(out)
        return out


def report(results: dict[str, Any], names: list[str]) -> None:
    base = names[0]
    summary: dict[str, Any] = {}
    for span, what, unit in ((MiB, "1 MiB", "MB/s"), (64 * KiB, "64 KiB", "req/s")):
        figures: dict[str, Any] = {}
        for name in names:
            rows = [r for r in results["runs"] if r["server"] == name and r["span"] == span]
            rps = statistics.median(r["rps"] for r in rows)
            figures[name] = {
                unit: rps * span / MB if unit == "MB/s" else rps,
                "cpu_us_per_request": statistics.median(r["cpu_us_per_request"] for r in rows),
            }
        for name in names:
            figures[name]["ratio"] = figures[name][unit] / figures[base][unit]
        summary[f"{what} ranges, {unit}"] = figures
    results["summary"] = summary
    for title, figures in summary.items():
        print(title)
        for name, f in figures.items():
            value = next(v for k, v in f.items() if k in ("MB/s", "req/s"))
            print(
                f"  {name:<30}{value:>10.1f}   ratio {f['ratio']:6.3f}"
                f"   server CPU {f['cpu_us_per_request']:6.0f} us/request"
            )
    print(f"load average before/after: {results['loadavg_before']} / {results['loadavg_after']}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = out / f"serve-{stamp}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"raw figures: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

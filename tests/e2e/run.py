"""Runs the end-to-end suite: real ML clients -> outbound bloscar -> counted link ->
inbound bloscar -> real ML servers, and prints the table of results.

Topology per server (all on 127.0.0.1):

    client --app relay--> outbound sidecar --link relay--> inbound sidecar --> server

The relay (relay.py) counts the bytes on every hop: "app bytes" are what the client
exchanged with its sidecar, "link bytes" what crossed between the sidecars, "server bytes"
what the inbound sidecar exchanged with the server (smaller than app bytes when the server
compresses its responses: the sidecars decode them and the client gets identity). Servers: Triton (nvidia-
pytriton) without and with its response compression, and a TF Serving Predict echo server
without and with gzip responses. Each client prints one JSON line per case.

With --direct the sidecars are left out (the client talks to the link relay, which goes
straight to the server): the same cases, as a baseline. Standard library only.
Exit status: 0 when every case was bit-exact and every process behaved, 1 otherwise.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PYTRITON = REPO / ".venvs/pytriton/bin/python"
TFS = REPO / ".venvs/tfs/bin/python"

# name -> (server script, interpreter, response compression flag, cases script)
SERVERS = {
    "triton": ("triton_server.py", PYTRITON, "none", "triton_cases.py"),
    "triton-rc": ("triton_server.py", PYTRITON, "high", "triton_cases.py"),
    "tfs": ("tfs_echo_server.py", TFS, "none", "tfs_cases.py"),
    "tfs-rc": ("tfs_echo_server.py", TFS, "gzip", "tfs_cases.py"),
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(msg: str) -> None:
    print(f"[e2e] {msg}", file=sys.stderr, flush=True)


class Processes:
    """Every child process, stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, logdir: Path):
        self.logdir = logdir
        self.children: list = []

    def start(self, name: str, argv: list, env: dict | None = None) -> subprocess.Popen:
        logfile = open(self.logdir / f"{name}.log", "wb")
        proc = subprocess.Popen(
            [str(a) for a in argv],
            stdout=logfile,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=HERE,
            start_new_session=True,
        )
        self.children.append((name, proc))
        return proc

    def check_alive(self) -> list:
        return [name for name, p in self.children if p.poll() is not None]

    def stop_all(self) -> None:
        for _, p in self.children:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, p in self.children:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def wait_for_file(path: Path, procs: Processes, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return json.loads(path.read_text())
        dead = procs.check_alive()
        if dead:
            raise RuntimeError(f"exited early: {', '.join(dead)} (logs in {procs.logdir})")
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {path.name}")


def wait_ready(admin_port: int, procs: Processes, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{admin_port}/ready"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        dead = procs.check_alive()
        if dead:
            raise RuntimeError(f"exited early: {', '.join(dead)} (logs in {procs.logdir})")
        time.sleep(0.2)
    raise RuntimeError(f"sidecar admin {admin_port} never became ready")


def table(records: list) -> str:
    head = ("suite", "tensor", "mode", "req comp", "resp comp", "app bytes", "server bytes", "link bytes",
            "ratio", "bit-exact")
    rows = []
    for r in records:
        app, link = r.get("app_bytes"), r.get("link_bytes")
        ratio = f"{app / link:.2f}" if app and link else "-"
        rows.append((
            r["suite"], r["tensor"], r["mode"], r["request_compression"], r["response_compression"],
            str(app) if app is not None else "-",
            str(r["server_bytes"]) if r.get("server_bytes") is not None else "-",
            str(link) if link is not None else "-", ratio,
            "yes" if r["bit_exact"] else "NO" + (f" ({r['error'][:80]})" if r.get("error") else ""),
        ))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    numeric = {5, 6, 7, 8}

    def fmt(row):
        return "| " + " | ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))) + " |"

    sep = "|" + "|".join("-" * (w + 1) + (":" if i in numeric else "-") for i, w in enumerate(widths)) + "|"
    return "\n".join([fmt(head), sep, *map(fmt, rows)])


def summary(records: list) -> str:
    """One row per (suite, tensor, mode): every compression combination added up."""
    groups: dict = {}
    for r in records:
        g = groups.setdefault((r["suite"], r["tensor"], r["mode"]), {"cases": 0, "exact": 0, "app": 0, "link": 0})
        g["cases"] += 1
        g["exact"] += bool(r["bit_exact"])
        g["app"] += r.get("app_bytes") or 0
        g["link"] += r.get("link_bytes") or 0
    head = ("suite", "tensor", "mode", "cases", "app bytes", "link bytes", "ratio", "bit-exact")
    rows = [
        (suite, tensor, mode, str(g["cases"]), str(g["app"]), str(g["link"]),
         f"{g['app'] / g['link']:.2f}" if g["link"] else "-", f"{g['exact']}/{g['cases']}")
        for (suite, tensor, mode), g in groups.items()
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    numeric = {3, 4, 5, 6}

    def fmt(row):
        return "| " + " | ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))) + " |"

    sep = "|" + "|".join("-" * (w + 1) + (":" if i in numeric else "-") for i, w in enumerate(widths)) + "|"
    return "\n".join([fmt(head), sep, *map(fmt, rows)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bloscar", help="path of the bloscar binary")
    parser.add_argument("--direct", action="store_true", help="no sidecars: the baseline")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated subset of " + ",".join(SERVERS))
    parser.add_argument("--json", help="also write the records to this file")
    parser.add_argument("--logdir", help="where process logs go (default: a temporary directory)")
    args = parser.parse_args()
    if not args.direct and not args.bloscar:
        parser.error("--bloscar is required unless --direct")

    # A runner stopped by SIGTERM (a CI timeout) still stops its servers and sidecars.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    logdir = Path(args.logdir or tempfile.mkdtemp(prefix="bloscar-e2e-"))
    logdir.mkdir(parents=True, exist_ok=True)
    procs = Processes(logdir)
    servers = [s for s in args.servers.split(",") if s]
    records: list = []
    failed = []
    try:
        log(f"starting {len(servers)} servers (logs in {logdir})")
        for name in servers:
            script, python, rc, _ = SERVERS[name]
            procs.start(name, [python, script, "--ports-file", logdir / f"{name}.ports",
                               "--response-compression", rc])
        backend = {name: wait_for_file(logdir / f"{name}.ports", procs, 300)["grpc"] for name in servers}
        log("servers ready: " + ", ".join(f"{n}=:{p}" for n, p in backend.items()))

        inbound = {name: free_port() for name in servers}
        outbound = {name: free_port() for name in servers}
        routes = []
        for name in servers:
            if args.direct:
                routes.append(f"link-{name}=127.0.0.1:{backend[name]}")
            else:
                routes.append(f"link-{name}=127.0.0.1:{inbound[name]}")
                routes.append(f"app-{name}=127.0.0.1:{outbound[name]}")
                routes.append(f"server-{name}=127.0.0.1:{backend[name]}")
        procs.start("relay", [sys.executable, "relay.py", "--ports-file", logdir / "relay.ports",
                              *[a for r in routes for a in ("--route", r)]])
        relay = wait_for_file(logdir / "relay.ports", procs, 10)

        if not args.direct:
            common = {"BLOSCAR_LOG": os.environ.get("BLOSCAR_LOG", "warn")}
            for name in servers:
                admin_in, admin_out = free_port(), free_port()
                procs.start(f"bloscar-inbound-{name}", [args.bloscar], {
                    **common,
                    "BLOSCAR_MODE": "inbound",
                    "BLOSCAR_INBOUND_LISTEN": f"127.0.0.1:{inbound[name]}",
                    "BLOSCAR_INBOUND_FORWARD": f"127.0.0.1:{relay[f'server-{name}']}",
                    "BLOSCAR_ADMIN_LISTEN": f"127.0.0.1:{admin_in}",
                })
                procs.start(f"bloscar-outbound-{name}", [args.bloscar], {
                    **common,
                    "BLOSCAR_MODE": "outbound",
                    "BLOSCAR_OUTBOUND_LISTEN": f"127.0.0.1:{outbound[name]}",
                    "BLOSCAR_OUTBOUND_FORWARD": f"127.0.0.1:{relay[f'link-{name}']}",
                    "BLOSCAR_ADMIN_LISTEN": f"127.0.0.1:{admin_out}",
                })
                wait_ready(admin_in, procs)
                wait_ready(admin_out, procs)
            log("sidecars ready")

        for name in servers:
            _, python, rc, cases = SERVERS[name]
            app_route = f"link-{name}" if args.direct else f"app-{name}"
            log(f"running {cases} against {name}")
            result = subprocess.run(
                [str(python), cases, "--url", f"127.0.0.1:{relay[app_route]}",
                 "--relay-control", str(relay["control"]), "--app-route", app_route,
                 "--link-route", f"link-{name}", "--response-compression", rc,
                 *([] if args.direct else ["--server-route", f"server-{name}"])],
                cwd=HERE, stdout=subprocess.PIPE, stderr=open(logdir / f"{cases}-{name}.log", "wb"), text=True,
                timeout=600,
            )
            lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
            records.extend(lines)
            if result.returncode != 0 or not lines:
                failed.append(f"{cases} against {name} (exit {result.returncode}; log {logdir}/{cases}-{name}.log)")
        dead = procs.check_alive()
        if dead:
            failed.append("processes exited during the run: " + ", ".join(dead))
    except Exception as exc:
        failed.append(f"{type(exc).__name__}: {exc}")
    finally:
        procs.stop_all()

    if records:
        print("app bytes: client <-> outbound sidecar; server bytes: inbound sidecar <-> server;")
        print("link bytes: between the sidecars; ratio = app bytes / link bytes; both directions.")
        print(table(records))
        print("\nPer tensor and mode (all request/response compression settings added up):")
        print(summary(records))
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1))
    exact = sum(r["bit_exact"] for r in records)
    failed += [f"not bit-exact: {r['suite']} {r['tensor']} {r['mode']}" for r in records if not r["bit_exact"]]
    app = sum(r.get("app_bytes", 0) for r in records)
    link = sum(r.get("link_bytes", 0) for r in records)
    if link:
        print(f"\ntotal: app bytes {app}, link bytes {link}, ratio {app / link:.2f}")
    for f in failed:
        print(f"FAILED: {f}")
    if failed:
        # What the processes said, for a failure seen only in CI.
        for path in sorted(logdir.glob("*.log")):
            lines = path.read_text(errors="replace").splitlines()[-20:]
            if lines:
                print(f"--- last lines of {path.name} ---")
                print("\n".join(lines))
    if not failed and not args.logdir:
        shutil.rmtree(logdir, ignore_errors=True)
    print(f"e2e: {exact} passed, {len(records) - exact} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

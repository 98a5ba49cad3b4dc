"""Runs the end-to-end suite: real ML clients -> outbound bloscar -> counted link ->
inbound bloscar -> real ML servers, and prints the table of results.

Topology per server (all on 127.0.0.1):

    client --app relay--> outbound sidecar --link relay--> inbound sidecar --> server

The relay (relay.py) counts the bytes on every hop: "app bytes" are what the client
exchanged with its sidecar, "link bytes" what crossed between the sidecars, "server bytes"
what the inbound sidecar exchanged with the server (smaller than app bytes when the server
compresses its responses: the sidecars decode them and the client gets identity). Servers: Triton (nvidia-
pytriton) without and with its response compression, Triton's HTTP endpoint (KServe v2
REST: tritonclient[http] with binary and JSON tensors, with and without its own request and
response compression, and a client that writes the binary extension by hand), and a TF
Serving Predict echo server without and with gzip responses. Each client prints one JSON line per case.

Then the link guard (link_cases.py): two more sidecar pairs in front of the Triton server,
with the default configuration, one over a link the relay paces at --throttle-mbit and
one over plain loopback. It checks the decisions the sidecars take from the link they
measure: compress on the paced link, store on loopback.

With --hop-tls the sidecars talk TLS to each other (the inbound serves a certificate of a
CA made for the run with hop_certs.py, which the outbound checks); --hop-mtls adds mutual
TLS (the outbound presents a client certificate, the inbound checks it and its SPIFFE ID).
The link guard's pairs stay cleartext. After the cases, the inbound sidecars must show
TLS handshakes counted and none failed.

With --direct the sidecars are left out (the client talks to the link relay, which goes
straight to the server): the same cases, as a baseline, and no link guard. Standard
library only.
Exit status: 0 when every case was bit-exact and every process behaved, 1 otherwise.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import hop_certs

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
    "triton-http": ("triton_server.py", PYTRITON, "none", "triton_http_cases.py"),
}
# Suites that talk to another suite's server on another of its ports (Triton serves
# KServe v2 over HTTP beside gRPC): name -> (server, key in its ports file).
VIEWS = {"triton-http": ("triton", "http")}


def free_port() -> int:
    """A free port below the kernel's ephemeral range: a port from port 0 is in that
    range, and between being picked here and being bound by the process it is meant
    for, any outgoing connection (Triton's, the relay's) may take it."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(1000):
        port = random.randrange(10000, max(low, 10001))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def log(msg: str) -> None:
    print(f"[e2e] {msg}", file=sys.stderr, flush=True)


class Processes:
    """Every child process, stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, logdir: Path):
        self.logdir = logdir
        self.children: list = []

    def start(self, name: str, argv: list, env: dict | None = None, inherit_bloscar: bool = True) -> subprocess.Popen:
        """Starts NAME; without INHERIT_BLOSCAR, no BLOSCAR_ setting of this environment reaches it."""
        logfile = open(self.logdir / f"{name}.log", "wb")
        inherited = {k: v for k, v in os.environ.items() if inherit_bloscar or not k.startswith("BLOSCAR_")}
        proc = subprocess.Popen(
            [str(a) for a in argv],
            stdout=logfile,
            stderr=subprocess.STDOUT,
            env={**inherited, **(env or {})},
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


# The link guard's sidecar pairs: name -> (expected decision, label in the report).
GUARD_PAIRS = {
    "guard-paced": ("compressed", "paced link"),
    "guard-loopback": ("stored", "loopback"),
}


def start_pair(procs: "Processes", bloscar: str, name: str, inbound: int, outbound: int, link_port: int,
               server_port: int, hop_tls: tuple = ({}, {})) -> int:
    """An inbound sidecar in front of SERVER_PORT and an outbound one that forwards to
    LINK_PORT (the relay's route to the inbound), both in the default configuration;
    returns their admin ports (inbound, outbound) once both are ready. The link guard's pairs get
    none of the caller's BLOSCAR_ settings (BLOSCAR_LOG aside): they must measure the link.
    HOP_TLS: the TLS variables of the inbound and of the outbound sidecar."""
    guard = name in GUARD_PAIRS
    common = {"BLOSCAR_LOG": os.environ.get("BLOSCAR_LOG", "warn")}
    admin_in, admin_out = free_port(), free_port()
    procs.start(f"bloscar-inbound-{name}", [bloscar], {
        **common,
        "BLOSCAR_MODE": "inbound",
        "BLOSCAR_INBOUND_LISTEN": f"127.0.0.1:{inbound}",
        "BLOSCAR_INBOUND_FORWARD": f"127.0.0.1:{server_port}",
        "BLOSCAR_ADMIN_LISTEN": f"127.0.0.1:{admin_in}",
        **hop_tls[0],
    }, inherit_bloscar=not guard)
    procs.start(f"bloscar-outbound-{name}", [bloscar], {
        **common,
        "BLOSCAR_MODE": "outbound",
        "BLOSCAR_OUTBOUND_LISTEN": f"127.0.0.1:{outbound}",
        "BLOSCAR_OUTBOUND_FORWARD": f"127.0.0.1:{link_port}",
        "BLOSCAR_ADMIN_LISTEN": f"127.0.0.1:{admin_out}",
        **hop_tls[1],
    }, inherit_bloscar=not guard)
    wait_ready(admin_in, procs)
    wait_ready(admin_out, procs)
    return admin_in, admin_out


# The two exposition formats a scraper may ask for, and the parser of each.
SCRAPE_FORMATS = {
    "text": "text/plain;version=0.0.4",
    "openmetrics": "application/openmetrics-text;version=1.0.0",
}
PROMETHEUS_PYTHON = REPO / ".venvs/prometheus/bin/python"


def check_metrics(name: str, admin: dict, out: Path, min_models: int) -> list:
    """Scrapes both sidecars of pair NAME in both formats into OUT, parses every scrape
    with prometheus_client's parsers, and checks that the calls were counted per model
    (at least MIN_MODELS models). Returns what failed."""
    failed = []
    for role, port in admin.items():
        for fmt, accept in SCRAPE_FORMATS.items():
            request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Accept": accept})
            with urllib.request.urlopen(request, timeout=10) as response:
                body = response.read().decode()
            path = out / f"metrics-{name}-{role}.{fmt}"
            path.write_text(body)
            parsed = subprocess.run([str(PROMETHEUS_PYTHON), str(REPO / "tests/python/parse_metrics.py"), fmt,
                                     str(path)], capture_output=True, text=True)
            if parsed.returncode != 0:
                failed.append(f"/metrics of the {role} sidecar ({fmt}) does not parse: {parsed.stderr[-500:]}")
        models = set(re.findall(r'^bloscar_calls_total\{[^}]*model="([^"]+)"', body, re.M))
        if len(models - {"other"}) < min_models:
            failed.append(f"the {role} sidecar counted calls for {sorted(models)}: not per model")
    return failed


def check_hop_tls(name: str, admin_in: int) -> list:
    """The inbound sidecar of pair NAME served TLS (its TLS series exist) and refused no
    handshake. Returns what failed."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_in}/metrics", timeout=10) as response:
        body = response.read().decode()
    failures = re.findall(r'^bloscar_tls_handshake_failures_total\{listener="inbound",reason="([a-z_]+)"\} (\S+)$',
                          body, re.M)
    if not failures:
        return [f"the inbound sidecar of {name} does not serve TLS (no TLS series in /metrics)"]
    refused = {reason: float(value) for reason, value in failures if float(value) > 0}
    if refused:
        return [f"the inbound sidecar of {name} refused TLS handshakes: {refused}"]
    return []


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
    parser.add_argument("--metrics-out", help="keep each sidecar's /metrics after its cases in this directory")
    parser.add_argument("--no-link-guard", action="store_true", help="leave out the link guard")
    parser.add_argument("--throttle-mbit", type=float, default=40, help="the link guard's paced link (Mbit/s)")
    parser.add_argument("--pace", action="append", default=[], metavar="SUITE=MBIT",
                        help="pace SUITE's link between the sidecars (or to the server, with --direct) "
                             "at MBIT Mbit/s each way; repeatable")
    parser.add_argument("--hop-tls", action="store_true", help="TLS between the sidecars")
    parser.add_argument("--hop-mtls", action="store_true", help="mutual TLS between the sidecars")
    args = parser.parse_args()
    if args.direct and (args.hop_tls or args.hop_mtls):
        parser.error("--hop-tls and --hop-mtls need the sidecars (not --direct)")
    if not args.direct and not args.bloscar:
        parser.error("--bloscar is required unless --direct")

    # A runner stopped by SIGTERM (a CI timeout) still stops its servers and sidecars.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    logdir = Path(args.logdir or tempfile.mkdtemp(prefix="bloscar-e2e-"))
    logdir.mkdir(parents=True, exist_ok=True)
    procs = Processes(logdir)
    servers = [s for s in args.servers.split(",") if s]
    link_guard = not args.direct and not args.no_link_guard
    # The link guard talks to Triton (without response compression) through its own pairs.
    backends = [s for s in servers if s not in VIEWS]
    backends += [VIEWS[s][0] for s in servers if s in VIEWS and VIEWS[s][0] not in backends]
    if link_guard and "triton" not in backends:
        backends.append("triton")
    records: list = []
    verdicts: list = []
    failed = []
    hop_tls = ({}, {})
    if args.hop_tls or args.hop_mtls:
        hop_tls = hop_certs.sidecar_env(hop_certs.make(logdir / "certs"), mutual=args.hop_mtls)
        log(f"{'mutual ' if args.hop_mtls else ''}TLS between the sidecars (certificates in {logdir / 'certs'})")
    try:
        log(f"starting {len(backends)} servers (logs in {logdir})")
        for name in backends:
            script, python, rc, _ = SERVERS[name]
            procs.start(name, [python, script, "--ports-file", logdir / f"{name}.ports",
                               "--response-compression", rc])
        ports = {name: wait_for_file(logdir / f"{name}.ports", procs, 300) for name in backends}
        backend = {name: ports[name]["grpc"] for name in backends}
        backend.update({name: ports[server][key] for name, (server, key) in VIEWS.items() if name in servers})
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
        if link_guard:
            for guard in GUARD_PAIRS:
                inbound[guard] = free_port()
                outbound[guard] = free_port()
            # Loopback is left as it is (a Python relay would be its bottleneck); the
            # metrics count its bytes.
            routes.append(f"link-guard-paced=127.0.0.1:{inbound['guard-paced']}")
            routes.append(f"app-guard-paced=127.0.0.1:{outbound['guard-paced']}")
        procs.start("relay", [sys.executable, "relay.py", "--ports-file", logdir / "relay.ports",
                              *[a for r in routes for a in ("--route", r)],
                              *(["--rate", f"link-guard-paced={args.throttle_mbit:g}"] if link_guard else []),
                              *[a for p in args.pace for a in ("--rate", f"link-{p}")]])
        relay = wait_for_file(logdir / "relay.ports", procs, 10)

        admin_in, admin_out = {}, {}
        if not args.direct:
            pairs = [(name, relay[f"server-{name}"]) for name in servers]
            if link_guard:
                pairs += [(guard, backend["triton"]) for guard in GUARD_PAIRS]
            for name, server_port in pairs:
                link_port = relay[f"link-{name}"] if f"link-{name}" in relay else inbound[name]
                admin_in[name], admin_out[name] = start_pair(procs, args.bloscar, name, inbound[name],
                                                             outbound[name], link_port, server_port,
                                                             hop_tls if name in servers else ({}, {}))
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
            if not args.direct:
                metrics_dir = Path(args.metrics_out or logdir)
                metrics_dir.mkdir(parents=True, exist_ok=True)
                failed += check_metrics(name, {"inbound": admin_in[name], "outbound": admin_out[name]},
                                        metrics_dir, 2 if name.startswith("triton") else 1)
                if hop_tls[0]:
                    failed += check_hop_tls(name, admin_in[name])
        if link_guard:
            for guard, (expect, label) in GUARD_PAIRS.items():
                log(f"running the link guard over {label}")
                counted = ["--url", f"127.0.0.1:{outbound[guard]}"]
                if f"link-{guard}" in relay:
                    counted = ["--url", f"127.0.0.1:{relay[f'app-{guard}']}", "--relay-control",
                               str(relay["control"]), "--app-route", f"app-{guard}", "--link-route", f"link-{guard}"]
                result = subprocess.run(
                    [str(PYTRITON), "link_cases.py", *counted,
                     "--metrics", f"http://127.0.0.1:{admin_out[guard]}/metrics",
                     "--expect", expect, "--label", label, "--throttle-mbit", f"{args.throttle_mbit:g}"],
                    cwd=HERE, stdout=subprocess.PIPE, stderr=open(logdir / f"link_cases-{guard}.log", "wb"),
                    text=True, timeout=300,
                )
                lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
                records.extend(r for r in lines if "suite" in r)
                verdicts.extend(r["link_guard"] for r in lines if "link_guard" in r)
                if result.returncode != 0 or not lines:
                    failed.append(f"link guard over {label} (exit {result.returncode}; "
                                  f"log {logdir}/link_cases-{guard}.log)")
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
    if verdicts:
        print("\nLink guard (default configuration: the outbound measures the link; link bytes per call,"
              " both directions):")
        for v in verdicts:
            print(f"  {v['mode']}: expected {v['expect']}, decided {v['verdict'] or 'nothing'}; estimate "
                  f"{v['link_rate_mbps']} Mbit/s"
                  + (f" (pace {v['throttle_mbit']:g})" if v["throttle_mbit"] else "")
                  + f"; tensor {v['tensor_bytes']} B; link bytes per call "
                  + " ".join(str(b) for b in v["link_bytes_per_call"]))
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
    hop = "mutual TLS" if args.hop_mtls else "TLS" if args.hop_tls else "cleartext"
    print(f"e2e: {exact} passed, {len(records) - exact} failed ({'direct' if args.direct else 'hop: ' + hop})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

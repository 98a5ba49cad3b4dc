"""A TCP relay that counts the bytes it carries in each direction.

Each `--route NAME=TARGET_HOST:TARGET_PORT` gets a listener on a free 127.0.0.1 port that
forwards every connection to the target. `--rate NAME=MBIT` paces that route like a
link of MBIT Mbit/s each way (a token bucket per direction, shared by the route's
connections; the relay stops reading while it waits, so TCP holds the sender back as a
slow link would). A control listener answers each connection with
the JSON counters `{NAME: {"up": n, "down": n}}` (up = towards the target) and closes.
Ports are written as JSON to --ports-file once all listeners are bound. Runs until
SIGTERM/SIGINT. Standard library only, so any interpreter runs it.
"""

import argparse
import asyncio
import json
import os
import signal
import sys
import time

CHUNK = 256 * 1024
# A paced route moves small pieces, so that the rate holds over milliseconds too.
PACED_CHUNK = 16 * 1024


class TokenBucket:
    """Paces one direction of a link at `rate` bytes per second, with bursts of at most
    `burst` bytes. A taker may go into debt and then sleeps it off, so concurrent takers
    share the rate."""

    def __init__(self, rate: float, burst: float):
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.last = time.monotonic()

    async def take(self, n: int) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        self.tokens -= n
        if self.tokens < 0:
            await asyncio.sleep(-self.tokens / self.rate)


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counters: dict, key: str,
               bucket: TokenBucket | None) -> None:
    try:
        while True:
            data = await reader.read(PACED_CHUNK if bucket else CHUNK)
            if not data:
                break
            if bucket:
                await bucket.take(len(data))
            counters[key] += len(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, RuntimeError):
            pass


async def serve_route(name: str, target: str, counters: dict, mbit: float | None) -> asyncio.AbstractServer:
    host, port = target.rsplit(":", 1)
    buckets = {"up": None, "down": None}
    if mbit:
        rate = mbit * 1e6 / 8
        # Bursts of 5 ms at the rate, as a shaped link's queue releases them.
        buckets = {d: TokenBucket(rate, max(PACED_CHUNK, rate * 0.005)) for d in buckets}

    async def on_client(client_reader, client_writer):
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pump(client_reader, up_writer, counters[name], "up", buckets["up"]),
            pump(up_reader, client_writer, counters[name], "down", buckets["down"]),
        )
        for w in (up_writer, client_writer):
            w.close()

    return await asyncio.start_server(on_client, "127.0.0.1", 0)


async def main_async(args) -> None:
    rates = {}
    for rate in args.rate or []:
        name, mbit = rate.split("=", 1)
        rates[name] = float(mbit)
    counters = {}
    servers = {}
    for route in args.route:
        name, target = route.split("=", 1)
        counters[name] = {"up": 0, "down": 0}
        servers[name] = await serve_route(name, target, counters, rates.get(name))

    async def on_control(reader, writer):
        writer.write(json.dumps(counters).encode())
        await writer.drain()
        writer.close()

    control = await asyncio.start_server(on_control, "127.0.0.1", 0)
    ports = {name: s.sockets[0].getsockname()[1] for name, s in servers.items()}
    ports["control"] = control.sockets[0].getsockname()[1]
    tmp = args.ports_file + ".tmp"
    with open(tmp, "w") as f:
        json.dump(ports, f)
    os.replace(tmp, args.ports_file)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--route", action="append", required=True, help="NAME=HOST:PORT")
    parser.add_argument("--rate", action="append", help="NAME=MBIT: pace route NAME at MBIT Mbit/s each way")
    parser.add_argument("--ports-file", required=True)
    asyncio.run(main_async(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

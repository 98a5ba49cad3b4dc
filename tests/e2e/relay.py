"""A TCP relay that counts the bytes it carries in each direction.

Each `--route NAME=TARGET_HOST:TARGET_PORT` gets a listener on a free 127.0.0.1 port that
forwards every connection to the target. A control listener answers each connection with
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

CHUNK = 256 * 1024


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counters: dict, key: str) -> None:
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
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


async def serve_route(name: str, target: str, counters: dict) -> asyncio.AbstractServer:
    host, port = target.rsplit(":", 1)

    async def on_client(client_reader, client_writer):
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pump(client_reader, up_writer, counters[name], "up"),
            pump(up_reader, client_writer, counters[name], "down"),
        )
        for w in (up_writer, client_writer):
            w.close()

    return await asyncio.start_server(on_client, "127.0.0.1", 0)


async def main_async(args) -> None:
    counters = {}
    servers = {}
    for route in args.route:
        name, target = route.split("=", 1)
        counters[name] = {"up": 0, "down": 0}
        servers[name] = await serve_route(name, target, counters)

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
    parser.add_argument("--ports-file", required=True)
    asyncio.run(main_async(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

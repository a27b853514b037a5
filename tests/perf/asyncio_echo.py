#!/usr/bin/env python3
"""Python asyncio echo server of the performance benchmark.

    asyncio_echo.py SOCKET_PATH

The idiomatic streams version: one coroutine per connection, read up to 64 KiB, write it back,
await drain() (backpressure: nothing more is read from a client that does not read).
"""
import asyncio
import os
import signal
import sys


async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def main(path: str) -> None:
    if os.path.exists(path):
        os.unlink(path)
    server = await asyncio.start_unix_server(session, path=path, backlog=4096)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} SOCKET_PATH")
    asyncio.run(main(sys.argv[1]))

#!/usr/bin/env python3
"""Hold N idle keep-alive TLS connections to a proxy, for the per-connection memory figure.

Each connection does a full TLS handshake (ALPN http/1.1 or h2), sends one GET / and reads
its whole response, then stays open and silent, as an idle keep-alive client does. Once all
N are held (or the deadline passes) it prints one line, `held N`, waits for stdin to close
or for --hold seconds, then closes everything. Loopback only; bounded in count and time.

    python3 benches/peer/idle_conns.py --port 9443 --conns 5000 --proto h1 --hold 30

h2 is spoken by hand (no dependency): the client preface, an empty SETTINGS frame, the
server's SETTINGS acknowledged, and one HEADERS frame (GET / on stream 1, HPACK static
table entries and one literal :authority).
"""

import argparse
import asyncio
import ssl
import struct
import sys
import time

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def h2_get(authority: bytes) -> bytes:
    # :method GET (2), :scheme https (7), :path / (4), :authority literal with indexed name (1).
    block = bytes([0x82, 0x87, 0x84, 0x41, len(authority)]) + authority
    return frame(0x1, 0x5, 1, block)  # HEADERS, END_STREAM | END_HEADERS


async def read_h2_response(reader, writer) -> None:
    """Reads frames until stream 1 ends; acknowledges the server's SETTINGS."""
    while True:
        head = await reader.readexactly(9)
        length = int.from_bytes(head[:3], "big")
        kind, flags = head[3], head[4]
        stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
        await reader.readexactly(length)
        if kind == 0x4 and not flags & 0x1:  # SETTINGS, not an ACK
            writer.write(frame(0x4, 0x1, 0, b""))
        if stream == 1 and kind in (0x0, 0x1) and flags & 0x1:  # DATA/HEADERS with END_STREAM
            return
        if kind == 0x7:  # GOAWAY
            raise ConnectionError("GOAWAY")


async def read_h1_response(reader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)


async def open_one(args, ctx: ssl.SSLContext, held: list) -> None:
    reader, writer = await asyncio.open_connection(
        args.host, args.port, ssl=ctx, server_hostname=args.sni
    )
    if args.proto == "h2":
        writer.write(H2_PREFACE + frame(0x4, 0, 0, b"") + h2_get(args.sni.encode()))
        await writer.drain()
        await read_h2_response(reader, writer)
    else:
        writer.write(f"GET / HTTP/1.1\r\nHost: {args.sni}\r\n\r\n".encode())
        await writer.drain()
        await read_h1_response(reader)
    await writer.drain()
    held.append(writer)


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sni", default="localhost")
    p.add_argument("--conns", type=int, default=5000)
    p.add_argument("--proto", choices=["h1", "h2"], default="h1")
    p.add_argument("--parallel", type=int, default=32, help="handshakes in flight at once")
    p.add_argument("--hold", type=float, default=30.0, help="seconds to hold, at most")
    p.add_argument("--deadline", type=float, default=120.0, help="seconds to open them all, at most")
    args = p.parse_args()
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        print("loopback only", file=sys.stderr)
        return 2

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2" if args.proto == "h2" else "http/1.1"])

    held: list = []
    failures = 0
    gate = asyncio.Semaphore(args.parallel)

    async def guarded() -> None:
        nonlocal failures
        async with gate:
            try:
                await asyncio.wait_for(open_one(args, ctx, held), timeout=10)
            except Exception as e:  # noqa: BLE001 - counted and reported
                failures += 1
                if failures <= 3:
                    print(f"connection failed: {e!r}", file=sys.stderr)

    start = time.monotonic()
    tasks = [asyncio.create_task(guarded()) for _ in range(args.conns)]
    done, pending = await asyncio.wait(tasks, timeout=args.deadline)
    for t in pending:
        t.cancel()
    print(f"held {len(held)} failed {failures} in {time.monotonic() - start:.1f}s", flush=True)

    loop = asyncio.get_running_loop()
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    try:
        await asyncio.wait_for(stdin_closed, timeout=args.hold)
    except asyncio.TimeoutError:
        pass
    for w in held:
        w.close()
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

#!/usr/bin/env python3
"""Per-request latency through a TLS proxy to a backend that writes head and body apart.

The backend is Python's own `http.server` (HTTP/1.1 keep-alive, no TCP_NODELAY: the head
and the body leave in two sends, so Nagle holds the body until the head is ACKed). Each
proxy named on the command line (name=port) is measured in turn, ABAB, on new
connections (one TLS connection per request) and on one kept-alive connection; p50 and p99
in milliseconds are printed as a Markdown table. Loopback only; bounded in count.

    python3 benches/peer/split_latency.py --backend-port 18090 levee=9443 haproxy=8443

The proxies must already forward to 127.0.0.1:<backend-port> (this script starts the
backend there and stops it at the end).
"""

import argparse
import http.server
import socket
import ssl
import statistics
import threading
import time


class Split(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 - http.server's naming
        body = b"x" * 64
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()  # the head: one send
        self.wfile.write(body)  # the body: a second send

    def log_message(self, *args):
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a proxy closing an idle backend connection is not an error here


def request(sock) -> None:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    while len(rest) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        rest += chunk


def measure(port: int, n: int, keep_alive: bool) -> list:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    times = []
    conn = None
    for _ in range(n):
        if conn is None or not keep_alive:
            raw = socket.create_connection(("127.0.0.1", port), timeout=5)
            conn = ctx.wrap_socket(raw, server_hostname="localhost")
        started = time.perf_counter()
        request(conn)
        times.append((time.perf_counter() - started) * 1000)
        if not keep_alive:
            conn.close()
    if conn is not None:
        conn.close()
    return times


def pct(values: list, p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend-port", type=int, default=18090)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("proxies", nargs="+", help="name=port")
    args = ap.parse_args()
    server = QuietServer(("127.0.0.1", args.backend_port), Split)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxies = [(p.split("=")[0], int(p.split("=")[1])) for p in args.proxies]
    results = {}
    try:
        for r in range(args.rounds):
            order = proxies if r % 2 == 0 else list(reversed(proxies))
            for name, port in order:
                for keep in (False, True):
                    t = measure(port, args.requests, keep)
                    results.setdefault((name, keep), []).extend(t)
    finally:
        server.shutdown()
    print("| proxy | connections | requests | p50 ms | p99 ms | mean ms |")
    print("|---|---|---|---|---|---|")
    for name, _ in proxies:
        for keep in (False, True):
            t = results[(name, keep)]
            kind = "kept alive" if keep else "new per request"
            print(f"| {name} | {kind} | {len(t)} | {pct(t, 0.5):.2f} | {pct(t, 0.99):.2f} | {statistics.mean(t):.2f} |")


if __name__ == "__main__":
    main()

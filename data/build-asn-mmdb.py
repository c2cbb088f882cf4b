#!/usr/bin/env python3
"""Builds data/ip-location-db-asn.mmdb from the npm package @ip-location-db/asn (CSV).

Reproducible: the package version and the SHA-256 of its tarball are pinned below, the
script uses the Python standard library only, and the output is byte-for-byte the same
on every run (no timestamps but the pinned one, records written in a fixed order).
See data/README.md.

    python3 data/build-asn-mmdb.py                    # npm pack, then build
    python3 data/build-asn-mmdb.py --tarball FILE.tgz # build from a tarball at hand

The file written is a MaxMind DB (format 2.0), IPv6 tree with IPv4 at ::/96, 24/28/32-bit
records as the size needs, and GeoLite2-ASN shaped records:
{"autonomous_system_number": u32, "autonomous_system_organization": str}.

Conversion rules: each CSV row is an inclusive range; a row that overlaps the one before it
(one such row in 2.3.2026061719, in DoD space) is clipped to start after it, so the earlier
row wins; adjacent rows with the same record are merged.
"""

import argparse
import csv
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile

PACKAGE = "@ip-location-db/asn"
VERSION = "2.3.2026061719"
TARBALL_SHA256 = "b9425daf2f011c28f8586685d4f89166e77627e2c15fd93c6262c3e2dead6153"
# The SHA-256 this script's output had when data/ip-location-db-asn.mmdb was committed.
OUTPUT_SHA256 = "2d8f4c88c1a118820042f9213ebe7943a1113fd236f838306190df07c06c67bd"
# 2026-06-17 19:00:00 UTC: the date and hour in the package version.
BUILD_EPOCH = 1781722800
DATABASE_TYPE = "ip-location-db-asn"
DESCRIPTION = (
    f"ip-location-db asn {VERSION} (RouteViews, NRO, DB-IP; CC BY 4.0), "
    "converted from CSV by levee data/build-asn-mmdb.py"
)
CSV_FILES = ("package/asn-ipv4-num.csv", "package/asn-ipv6-num.csv")
IPV4_SPACE = 1 << 32

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ip-location-db-asn.mmdb")


# --- MaxMind DB data section encoding -------------------------------------------------------


def control(type_id, size):
    """The control byte(s) of a field: type in the top 3 bits (extended above 7), size."""
    if size < 29:
        head, tail = size, b""
    elif size < 29 + 256:
        head, tail = 29, bytes([size - 29])
    elif size < 285 + 65536:
        head, tail = 30, (size - 285).to_bytes(2, "big")
    else:
        head, tail = 31, (size - 65821).to_bytes(3, "big")
    if type_id <= 7:
        return bytes([(type_id << 5) | head]) + tail
    return bytes([head, type_id - 7]) + tail


def enc_str(s):
    b = s.encode("utf-8")
    return control(2, len(b)) + b


def enc_uint(type_id, n):
    b = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return control(type_id, len(b)) + b


def enc_pointer(offset):
    if offset < 1 << 11:
        return bytes([0x20 | (offset >> 8), offset & 0xFF])
    if offset < 2048 + (1 << 19):
        v = offset - 2048
        return bytes([0x28 | (v >> 16)]) + (v & 0xFFFF).to_bytes(2, "big")
    if offset < 526336 + (1 << 27):
        v = offset - 526336
        return bytes([0x30 | (v >> 24)]) + (v & 0xFFFFFF).to_bytes(3, "big")
    return bytes([0x38]) + offset.to_bytes(4, "big")


def enc_value(v):
    """Metadata values: str, dict, list, or (type name, int)."""
    if isinstance(v, str):
        return enc_str(v)
    if isinstance(v, dict):
        return control(7, len(v)) + b"".join(enc_str(k) + enc_value(x) for k, x in v.items())
    if isinstance(v, list):
        return control(11, len(v)) + b"".join(enc_value(x) for x in v)
    kind, n = v
    return enc_uint({"u16": 5, "u32": 6, "u64": 9}[kind], n)


# --- Input ----------------------------------------------------------------------------------


def fetch_tarball(workdir):
    spec = f"{PACKAGE}@{VERSION}"
    subprocess.run(["npm", "pack", spec, "--silent"], cwd=workdir, check=True)
    names = [n for n in os.listdir(workdir) if n.endswith(".tgz")]
    if len(names) != 1:
        sys.exit(f"npm pack {spec}: expected one .tgz, found {names}")
    return os.path.join(workdir, names[0])


def read_ranges(tarball):
    """Sorted, non-overlapping, merged (start, end, (asn, org)) over the 128-bit space."""
    ranges = []
    with tarfile.open(tarball, "r:gz") as tar:
        for name in CSV_FILES:
            raw = tar.extractfile(name)
            if raw is None:
                sys.exit(f"{tarball}: no {name}")
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            is_v4 = "ipv4" in name
            for row in csv.reader(text):
                start, end, asn, org = int(row[0]), int(row[1]), int(row[2]), row[3]
                if is_v4 and end >= IPV4_SPACE or not is_v4 and start < IPV4_SPACE:
                    sys.exit(f"{name}: range {row[0]}-{row[1]} outside its address space")
                ranges.append((start, end, (asn, org)))
    ranges.sort(key=lambda r: r[0])
    out = []
    for start, end, rec in ranges:
        if out and start <= out[-1][1]:
            start = out[-1][1] + 1  # overlap: the earlier row wins
            if start > end:
                continue
        if out and out[-1][1] + 1 == start and out[-1][2] == rec:
            out[-1] = (out[-1][0], end, rec)
        else:
            out.append((start, end, rec))
    return out


# --- Tree -----------------------------------------------------------------------------------

EMPTY = None


def build_tree(ranges, records):
    """The search tree as a list of [left, right] nodes; a child is a node index (int >= 0),
    a record index encoded as -(index + 1), or EMPTY."""
    nodes = []
    starts = [r[0] for r in ranges]

    def child(lo, bits, i, j):
        # ranges[i:j] are those that meet [lo, lo + 2**bits).
        if i == j:
            return EMPTY
        hi = lo + (1 << bits) - 1
        start, end, rec = ranges[i]
        if j - i == 1 and start <= lo and end >= hi:
            return -(records[rec] + 1)
        return node(lo, bits, i, j)

    def node(lo, bits, i, j):
        index = len(nodes)
        nodes.append([EMPTY, EMPTY])
        half = bits - 1
        mid = lo + (1 << half)
        k = bisect_left(starts, mid, i, j)
        # A range that starts below mid and ends at or above it meets both halves.
        left_j = k
        right_i = k - 1 if k > i and ranges[k - 1][1] >= mid else k
        nodes[index][0] = child(lo, half, i, left_j)
        nodes[index][1] = child(mid, half, right_i, j)
        return index

    node(0, 128, 0, len(ranges))
    return nodes


def bisect_left(a, x, lo, hi):
    while lo < hi:
        mid = (lo + hi) // 2
        if a[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def write_tree(nodes, data_offsets):
    node_count = len(nodes)
    data_size = data_offsets[-1]

    def value(c):
        if c is EMPTY:
            return node_count
        if c >= 0:
            return c
        return node_count + 16 + data_offsets[-c - 1]

    top = node_count + 16 + data_size
    record_size = next(bits for bits in (24, 28, 32) if top < 1 << bits)
    out = bytearray()
    for left, right in nodes:
        a, b = value(left), value(right)
        if record_size == 24:
            out += a.to_bytes(3, "big") + b.to_bytes(3, "big")
        elif record_size == 28:
            out += (a & 0xFFFFFF).to_bytes(3, "big")
            out.append(((a >> 24) << 4) | (b >> 24))
            out += (b & 0xFFFFFF).to_bytes(3, "big")
        else:
            out += a.to_bytes(4, "big") + b.to_bytes(4, "big")
    return bytes(out), record_size


def build(tarball):
    got = sha256_file(tarball)
    if got != TARBALL_SHA256:
        sys.exit(f"{tarball}: SHA-256 {got}, expected {TARBALL_SHA256}")
    ranges = read_ranges(tarball)

    # Records in order of first appearance; keys written once and pointed to.
    data = bytearray()
    key_asn = len(data)
    data += enc_str("autonomous_system_number")
    key_org = len(data)
    data += enc_str("autonomous_system_organization")
    records, offsets = {}, []
    for _, _, rec in ranges:
        if rec in records:
            continue
        records[rec] = len(offsets)
        asn, org = rec
        offsets.append(len(data))
        data += control(7, 2) + enc_pointer(key_asn) + enc_uint(6, asn)
        data += enc_pointer(key_org) + enc_str(org)
    offsets.append(len(data))

    nodes = build_tree(ranges, records)
    tree, record_size = write_tree(nodes, offsets)
    metadata = {
        "binary_format_major_version": ("u16", 2),
        "binary_format_minor_version": ("u16", 0),
        "build_epoch": ("u64", BUILD_EPOCH),
        "database_type": DATABASE_TYPE,
        "description": {"en": DESCRIPTION},
        "ip_version": ("u16", 6),
        "languages": ["en"],
        "node_count": ("u32", len(nodes)),
        "record_size": ("u16", record_size),
    }
    blob = tree + bytes(16) + bytes(data) + b"\xab\xcd\xefMaxMind.com" + enc_value(metadata)
    with open(OUT + ".tmp", "wb") as f:
        f.write(blob)
    os.replace(OUT + ".tmp", OUT)
    digest = hashlib.sha256(blob).hexdigest()
    print(f"{OUT}: {len(blob)} bytes, {len(ranges)} ranges, {len(records)} records, "
          f"{len(nodes)} nodes, {record_size}-bit records")
    print(f"SHA-256 {digest}")
    if digest != OUTPUT_SHA256:
        sys.exit(f"differs from the recorded SHA-256 {OUTPUT_SHA256}")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tarball", help="the package tarball, instead of running npm pack")
    args = parser.parse_args()
    if args.tarball:
        build(args.tarball)
        return
    with tempfile.TemporaryDirectory() as workdir:
        build(fetch_tarball(workdir))


if __name__ == "__main__":
    main()

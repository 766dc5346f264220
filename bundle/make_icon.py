"""Writes bundle/icon.png (512x512, the size Claude Desktop recommends): three agents'
dots joined to one shared board. Standard library only (zlib); run it again after
changing the drawing."""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

SIZE = 512
S = SIZE / 256  # the drawing below is in a 256-unit square
BACKGROUND = (32, 41, 56)
BOARD = (236, 240, 245)
LINE = (120, 134, 156)
AGENTS = [((64, 64), (231, 76, 60)), ((192, 64), (241, 196, 15)), ((128, 204), (26, 188, 156))]


def _inside_rounded_square(x: float, y: float, margin: float, radius: float) -> bool:
    lo, hi = margin + radius, 256 - margin - radius
    dx = max(lo - x, 0.0, x - hi)
    dy = max(lo - y, 0.0, y - hi)
    return dx * dx + dy * dy <= radius * radius


def _near_segment(p: tuple[float, float], a: tuple[int, int], b: tuple[int, int]) -> float:
    (px, py), (ax, ay), (bx, by) = p, a, b
    along = ((px - ax) * (bx - ax) + (py - ay) * (by - ay)) / ((bx - ax) ** 2 + (by - ay) ** 2)
    t = max(0.0, min(1.0, along))
    return math.hypot(px - (ax + t * (bx - ax)), py - (ay + t * (by - ay)))


def pixel(x: int, y: int) -> tuple[int, int, int, int]:
    p = ((x + 0.5) / S, (y + 0.5) / S)
    if not _inside_rounded_square(*p, margin=4, radius=40):
        return (0, 0, 0, 0)
    centre = (128, 118)
    for at, colour in AGENTS:
        if math.dist(p, at) <= 26:
            return (*colour, 255)
    if _inside_rounded_square(p[0] - centre[0] + 128, p[1] - centre[1] + 128, margin=92, radius=10):
        return (*BOARD, 255)
    if any(_near_segment(p, at, centre) <= 5 for at, _ in AGENTS):
        return (*LINE, 255)
    return (*BACKGROUND, 255)


def png() -> bytes:
    rows = b"".join(
        b"\x00" + b"".join(bytes(pixel(x, y)) for x in range(SIZE)) for y in range(SIZE)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", SIZE, SIZE, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


if __name__ == "__main__":
    Path(__file__).with_name("icon.png").write_bytes(png())

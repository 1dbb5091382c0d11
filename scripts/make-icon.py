#!/usr/bin/env python3
"""One-off generator of the connector icon (src/spec/icon.png), kept for reference.

The icon is committed; `insights-connector export` copies the committed bytes and never runs
this script. Python standard library only (zlib + struct), deterministic output.

Certification rules (connector-rules.md §5): PNG, 230x230 square, a ~160x160 logo on a solid,
non-transparent background whose colour equals `iconBrandColor` in apiProperties.json
(`spec::ICON_BRAND_COLOR` in the code). Run from the repository root:

    python3 scripts/make-icon.py src/spec/icon.png
"""
import struct
import sys
import zlib

SIZE = 230
BRAND = (0x1E, 0x5B, 0x8C)  # must equal spec::ICON_BRAND_COLOR (#1E5B8C)
WHITE = (0xFF, 0xFF, 0xFF)
SUPERSAMPLE = 4

# The logo: three people of rising height (a growing audience, or three rising measure bars)
# inside the 160x160 box 35..195: a rounded bar for each body and a disc for each head.
BARS = [(45, 80, 145), (97, 132, 110), (150, 185, 75)]  # (left, right, top); bottom is BOTTOM
BOTTOM = 190
RADIUS = 8
HEAD_RADIUS = 15.0
HEAD_GAP = 10.0


def inside_logo(x: float, y: float) -> bool:
    for left, right, top in BARS:
        cx, cy = (left + right) / 2, top - HEAD_GAP - HEAD_RADIUS
        if (x - cx) ** 2 + (y - cy) ** 2 <= HEAD_RADIUS * HEAD_RADIUS:
            return True
    for left, right, top in BARS:
        if not (left <= x <= right and top <= y <= BOTTOM):
            continue
        # Rounded top corners.
        if y < top + RADIUS:
            for corner_x in (left + RADIUS, right - RADIUS):
                if abs(x - corner_x) <= RADIUS and (x < left + RADIUS or x > right - RADIUS):
                    return (x - corner_x) ** 2 + (y - (top + RADIUS)) ** 2 <= RADIUS * RADIUS
        return True
    return False


def pixel(px: int, py: int) -> bytes:
    hits = 0
    for sy in range(SUPERSAMPLE):
        for sx in range(SUPERSAMPLE):
            x = px + (sx + 0.5) / SUPERSAMPLE
            y = py + (sy + 0.5) / SUPERSAMPLE
            hits += inside_logo(x, y)
    a = hits / (SUPERSAMPLE * SUPERSAMPLE)
    return bytes(round(b + (w - b) * a) for b, w in zip(BRAND, WHITE))


def chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else "src/spec/icon.png"
    rows = b"".join(b"\x00" + b"".join(pixel(x, y) for x in range(SIZE)) for y in range(SIZE))
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", SIZE, SIZE, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )
    with open(out, "wb") as f:
        f.write(png)
    print(f"wrote {out} ({len(png)} bytes)")


if __name__ == "__main__":
    main()

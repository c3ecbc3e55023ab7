"""The --html page in a real browser: headless Chromium opens it and paints the heatmaps.

Skips where no Chromium is installed (CI need not download a browser); the HTML-parser
tests in test_display.py run everywhere.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from gradcheck import check
from gradcheck.display.page import page_html
from gradcheck.report import Report
from tests.test_display import _relu, relu_backward, relu_mask_from_gradient

CHROMIUM = next(
    (found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no headless Chromium installed (apt-get install chromium)"
)


@dataclass(frozen=True)
class _Row:
    derivation: object
    verdict: str
    message: str
    report: Report | None
    elapsed: float


def _chromium(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--user-data-dir={tmp_path / 'profile'}", *arguments],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip


def _pixels(png: bytes) -> np.ndarray:
    """An 8-bit RGB or RGBA PNG (what Chromium writes) as an (height, width, 3) array."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    position, data, header = 8, b"", b""
    while position < len(png):
        (length,) = struct.unpack(">I", png[position : position + 4])
        kind = png[position + 4 : position + 8]
        body = png[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            data += body
        position += 12 + length
    width, height, depth, colour_type = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour_type in (2, 6) and header[12] == 0  # not interlaced
    channels = 3 if colour_type == 2 else 4
    raw = zlib.decompress(data)
    stride = width * channels
    rows = np.zeros((height, stride), dtype=np.int64)
    previous = np.zeros(stride, dtype=np.int64)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], np.frombuffer(raw[start + 1 : start + 1 + stride], np.uint8)
        line = line.astype(np.int64)
        if kind == 0:
            row = line
        elif kind == 1:  # Sub: a running sum along each channel
            pixels = line.reshape(width, channels)
            row = (np.cumsum(pixels, axis=0) % 256).reshape(stride)
        elif kind == 2:
            row = (line + previous) % 256
        else:  # Average and Paeth depend on the pixel to the left: element by element
            row = np.zeros(stride, dtype=np.int64)
            for x in range(stride):
                left = row[x - channels] if x >= channels else 0
                up, corner = previous[x], previous[x - channels] if x >= channels else 0
                if kind == 3:
                    predicted = (left + up) // 2
                else:
                    p = left + up - corner
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                    predicted = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                row[x] = (line[x] + predicted) % 256
        rows[y], previous = row, row
    return rows.reshape(height, width, channels)[:, :, :3]


def test_chromium_paints_both_ends_of_the_palette_in_the_heatmaps(tmp_path):
    rng = np.random.default_rng(3)
    h, upstream = rng.standard_normal((6, 9)), rng.standard_normal((6, 9))
    failing = check(_relu(relu_mask_from_gradient), {"h": h}, grad_output=upstream)
    passing = check(_relu(relu_backward), {"h": h}, grad_output=upstream)
    page = tmp_path / "report.html"
    rows = [
        _Row(_relu(relu_backward), "pass", str(passing), passing, 0.1),
        _Row(_relu(relu_mask_from_gradient), "fail", str(failing), failing, 0.1),
    ]
    page.write_text(page_html(rows), encoding="utf-8")

    shot = tmp_path / "shot.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1000,800", page.as_uri())
    pixels = _pixels(shot.read_bytes())
    red = (pixels[:, :, 0] > 150) & (pixels[:, :, 2] < 110) & (pixels[:, :, 1] < 140)
    blue = (pixels[:, :, 2] > 150) & (pixels[:, :, 0] < 110)
    assert red.sum() > 100 and blue.sum() > 100  # both ends of the palette were painted

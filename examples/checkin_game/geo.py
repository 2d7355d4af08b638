"""A tiny geo index: fixed grid cells standing in for geohash prefixes.

persistio has no geo index (neither does a plain Redis hash). The app makes one out of volatile
entries keyed by a grid cell id: a check-in is filed under the cell its venue falls in, and
"nearby" means the same cell or one of its eight neighbours, then an exact distance filter.

Why 3x3 cells are enough: a cell is CELL_DEG degrees on each side. Within |latitude| <= 60 deg a
cell is at least ~556 m wide (longitude degrees shrink with cos(latitude)) and ~1.1 km tall, so
any point within NEARBY_M = 500 m of a position lies in that position's cell or a neighbour.
Reading 9 keys per lookup is cheap, and each cell only holds who was there in the last
NEARBY_TTL, so the lists stay short.
"""

from __future__ import annotations

import math

CELL_DEG = 0.01
NEARBY_M = 500.0
EARTH_RADIUS_M = 6_371_000.0


def cell_of(lat: float, lon: float) -> str:
    """The id of the grid cell holding (lat, lon), e.g. ``"4071:-7400"``."""
    return f"{math.floor(lat / CELL_DEG)}:{math.floor(lon / CELL_DEG)}"


def cells_around(lat: float, lon: float) -> list[str]:
    """The cell of (lat, lon) and its eight neighbours (the cell itself first)."""
    row, col = math.floor(lat / CELL_DEG), math.floor(lon / CELL_DEG)
    around = [(row + dr, col + dc) for dr in (0, -1, 1) for dc in (0, -1, 1)]
    return [f"{r}:{c}" for r, c in around]


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))

"""Who is here now (per venue) and who is nearby (per grid cell): volatile rosters.

persistio's volatile tier stores one value per key and cannot list keys, so "everyone at venue V"
is one value per venue (a roster) and "everyone near P" is one value per grid cell. Both are
read-modify-write: read the roster, merge the batch's check-ins, write it back. Volatile writes
resolve last-write-wins, so two processes updating one roster at the same instant can lose an
entry. That is the trade volatile data accepts: a lost entry reappears with the user's next
check-in, a lost roster is rebuilt from the amorphous counting rows (``here``), and a user who
has moved on is filtered out through ``game_where_now``, the per-user key that is exact.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping, Sequence
from datetime import datetime, timedelta

import persistio as pio

from .geo import NEARBY_M, cell_of, cells_around, distance_m
from .models import HERE_TTL, NEARBY_TTL, Checkin, GeoCell, Presence, VenueRoster, Visit
from .reads import friends_of, rows_of

ROSTER_CAP = 500  # a roster is one value: bound it (a stadium shows its 500 latest arrivals)
CellCache = MutableMapping[str, GeoCell | None]


def presence_of(c: Checkin) -> Presence:
    return Presence(c.user_id, c.venue_id, c.at, c.lat, c.lon)


def merge(old: Sequence[Presence], new: Iterable[Presence], cutoff: datetime) -> list[Presence]:
    """Each user's latest presence since ``cutoff``, newest first, at most ROSTER_CAP."""
    latest: dict[int, Presence] = {}
    for p in (*old, *new):
        current = latest.get(p.user_id)
        if p.at >= cutoff and (current is None or p.at >= current.at):
            latest[p.user_id] = p
    return sorted(latest.values(), key=lambda p: p.at, reverse=True)[:ROSTER_CAP]


def record(
    store: pio.Persistio, checkins: Sequence[Checkin], now: datetime, cells: CellCache
) -> None:
    """File a batch's recent check-ins in their venues' rosters and their grid cells: one read
    and one write per venue and per cell, however many check-ins of the batch share it.

    ``cells`` receives the cells as written, so nearby lookups of the same batch reuse them.
    """
    by_venue: dict[int, list[Presence]] = {}
    by_cell: dict[str, list[Presence]] = {}
    for c in checkins:
        if c.at >= now - HERE_TTL:
            by_venue.setdefault(c.venue_id, []).append(presence_of(c))
        if c.at >= now - NEARBY_TTL:
            by_cell.setdefault(cell_of(c.lat, c.lon), []).append(presence_of(c))
    writes: list[VenueRoster | GeoCell] = []
    for venue_id, arrivals in by_venue.items():
        roster = store.get(VenueRoster, "game_venue_here", venue_id=venue_id)
        # a miss (expired, or lost with a restart): rebuild, or the roster would restart empty
        old = roster.present if roster is not None else rows_present(store, venue_id, now)
        writes.append(VenueRoster(venue_id, merge(old, arrivals, now - HERE_TTL)))
    for cell_id, arrivals in by_cell.items():
        cell = _cell(store, cell_id, cells)
        old = cell.present if cell is not None else []
        fresh = GeoCell(cell_id, merge(old, arrivals, now - NEARBY_TTL))
        cells[cell_id] = fresh
        writes.append(fresh)
    if writes:
        store.save_many(writes)


def _cell(store: pio.Persistio, cell_id: str, cells: CellCache) -> GeoCell | None:
    if cell_id not in cells:
        cells[cell_id] = store.get(GeoCell, "game_geo_cells", cell=cell_id)
    return cells[cell_id]


def still_there(store: pio.Persistio, p: Presence) -> bool:
    """False when the user's latest check-in (``game_where_now``) is at another venue."""
    now_at = store.get(Checkin, "game_where_now", user_id=p.user_id)
    return now_at is None or now_at.venue_id == p.venue_id


def here(store: pio.Persistio, venue_id: int, now: datetime) -> list[Presence]:
    """Who checked in at the venue within HERE_TTL and has not checked in elsewhere since."""
    roster = store.get(VenueRoster, "game_venue_here", venue_id=venue_id)
    if roster is None:
        roster = VenueRoster(venue_id, rows_present(store, venue_id, now))
        store.save(roster)
    present = [p for p in roster.present if p.at >= now - HERE_TTL]
    return [p for p in present if still_there(store, p)]


def rows_present(store: pio.Persistio, venue_id: int, now: datetime) -> list[Presence]:
    """A lost or expired roster's content, rebuilt from the venue's hourly counting rows
    (long-term storage): volatile data is what can be rebuilt from normal operation."""
    cutoff = now - HERE_TTL
    hour = cutoff.replace(minute=0, second=0, microsecond=0)
    arrivals: list[Presence] = []
    while hour <= now:
        rows = rows_of(store, Checkin, "game_venue_hours", Visit, venue_id=venue_id, hour=hour)
        arrivals.extend(Presence(r.user_id, r.venue_id, r.at) for r in rows)
        hour += timedelta(hours=1)
    return merge([], arrivals, cutoff)


def people_near(
    store: pio.Persistio, lat: float, lon: float, now: datetime, cells: CellCache
) -> dict[int, Presence]:
    """Everyone seen within NEARBY_M of (lat, lon) in the last NEARBY_TTL, by user id: the 3x3
    cells around the point, then an exact distance filter (see geo.py)."""
    found: dict[int, Presence] = {}
    for cell_id in cells_around(lat, lon):
        cell = _cell(store, cell_id, cells)
        for p in cell.present if cell is not None else ():
            recent = p.at >= now - NEARBY_TTL
            if recent and distance_m(lat, lon, p.lat, p.lon) <= NEARBY_M:
                current = found.get(p.user_id)
                if current is None or p.at > current.at:
                    found[p.user_id] = p
    return found


def nearby_friends(
    store: pio.Persistio, c: Checkin, now: datetime, cells: CellCache
) -> list[Presence]:
    """The friends of ``c``'s user who are near ``c``'s venue now, nearest first."""
    if c.at < now - NEARBY_TTL:
        return []  # "nearby" is about now: an old check-in (a backfill) has no one nearby
    near = people_near(store, c.lat, c.lon, now, cells)
    near.pop(c.user_id, None)
    if not near:
        return []  # nobody around: no need to read the friend list
    friends = set(friends_of(store, c.user_id))
    found = [p for u, p in near.items() if u in friends and still_there(store, p)]
    return sorted(found, key=lambda p: distance_m(c.lat, c.lon, p.lat, p.lon))

"""Task 4, game mechanics: the badge engine, the consumer of ``game_badge_jobs``.

Badges: ``newbie`` (a first check-in), ``explorer`` (EXPLORER_VENUES distinct venues in one UTC
day) and ``mayor`` (most check-ins at a venue in the MAYOR_WINDOW up to the check-in's hour; a tie
keeps the incumbent; a check-in older than the current reign changes nothing).

Exact under replay: a ``BadgeCheck`` row per evaluated check-in (an idempotency key) commits
in the same transaction as the check-in's awards, so a redelivered job or a replayed save finds it
and does nothing. Behind it, every input is exact under replay too: mayors compare counts
(``game_visit_counts``, a ``pio.Count`` by check-in id, so a task applied twice counts once) over
the MAYOR_WINDOW of whole hours ending with the check-in's hour, explorer reads the day's rows
(one per check-in id), and award ids derive from what earned them (``explorer:<day>``,
``mayor:<venue>:<check-in>``) and are checked against the ledger. An award, the ledger row
(points = sum of the awards listed) and a new mayor commit in one transaction: points never exist
without their award or vice versa.

Concurrency: the evaluation is one transaction that reads the user's ledger, then the venue's
mayor, for update (``tx.get(..., for_update=True)``): another worker, thread or process,
evaluating the same user or venue waits for the commit, so no award and no ledger update is lost
and no lock of the app's is needed. Every evaluation takes the user before the venue, so two of
them never wait for each other in a cycle.
"""

from __future__ import annotations

from datetime import UTC

import persistio as pio

from .models import (
    BADGE_POINTS,
    EXPLORER_VENUES,
    Award,
    BadgeCheck,
    Checkin,
    Mayor,
    Points,
    Visit,
)
from .reads import rows_of, visit_count


class BadgeEngine:
    """Registered with ``store.consumer("game_badge_jobs")``."""

    def __init__(self, store: pio.Persistio) -> None:
        self.store = store

    def __call__(self, c: Checkin) -> None:
        with self.store.transaction() as tx:  # all of it, or none of it
            self._evaluate(c, tx)

    def _evaluate(self, c: Checkin, tx: pio.Transaction) -> None:
        # the ledger first: holding it, a redelivery of this job waits here and then finds the
        # check below
        ledger = tx.get(Points, "game_points", for_update=True, user_id=c.user_id)
        if tx.get(BadgeCheck, "game_badge_checks", checkin_id=c.id) is not None:
            return  # evaluated before: a redelivery or a replayed save changes nothing
        if ledger is None:
            ledger = Points(c.user_id, 0, [])
        held = set(ledger.award_ids)
        awards: list[Award] = []
        if "newbie" not in held:
            awards.append(self._award(c, "newbie", "newbie"))
        explorer = self._explorer(c, held)
        if explorer is not None:
            awards.append(explorer)
        crowned = self._mayor(c, held, tx)
        if crowned is not None:
            awards.append(crowned[0])
        check = BadgeCheck(c.id, c.user_id, [a.award_id for a in awards])
        tx.save(check)
        if not awards:
            return
        for award in awards:
            tx.save(award)
        tx.save(
            Points(
                c.user_id,
                ledger.total + sum(a.points for a in awards),
                [*ledger.award_ids, *check.award_ids],
            )
        )
        if crowned is not None:
            tx.save(crowned[1])

    def _award(self, c: Checkin, badge: str, award_id: str) -> Award:
        return Award(c.user_id, award_id, badge, BADGE_POINTS[badge], c.at, c.id, c.venue_id)

    def _explorer(self, c: Checkin, held: set[str]) -> Award | None:
        day = c.at.astimezone(UTC).date()
        award_id = f"explorer:{day.isoformat()}"
        if award_id in held:
            return None
        rows = rows_of(self.store, Checkin, "game_user_days", Visit, user_id=c.user_id, day=day)
        # the job's own check-in counts even if its row were not readable yet
        venues = {r.venue_id for r in rows} | {c.venue_id}
        return self._award(c, "explorer", award_id) if len(venues) >= EXPLORER_VENUES else None

    def _mayor(self, c: Checkin, held: set[str], tx: pio.Transaction) -> tuple[Award, Mayor] | None:
        award_id = f"mayor:{c.venue_id}:{c.id}"
        if award_id in held:
            return None  # this check-in's crowning is already in the ledger (a replay)
        mayor = tx.get(Mayor, "game_mayors", for_update=True, venue_id=c.venue_id)
        if mayor is not None and (mayor.user_id == c.user_id or c.at <= mayor.since):
            # already the mayor; or a check-in older than the current reign (a late replay, or
            # jobs run out of order): mayorship is decided as of the check-in's own time
            return None
        # the job's own check-in counts even if its count were not written yet (spooled)
        mine = max(1, visit_count(self.store, c.venue_id, c.user_id, c.at))
        if mayor is not None and visit_count(self.store, c.venue_id, mayor.user_id, c.at) >= mine:
            return None  # the incumbent has at least as many: a tie keeps the title
        return self._award(c, "mayor", award_id), Mayor(c.venue_id, c.user_id, mine, c.at)

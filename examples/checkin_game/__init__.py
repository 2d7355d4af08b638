"""The check-in game: persistio's reference app (see README.md).

Importing it declares the game's models (intent names prefixed ``game_``) and does no I/O.
"""

from .game import CheckinResult, Game, open_store
from .models import Award, Checkin, FeedItem, Friends, Points, User, Venue

__all__ = [
    "Award",
    "Checkin",
    "CheckinResult",
    "FeedItem",
    "Friends",
    "Game",
    "Points",
    "User",
    "Venue",
    "open_store",
]

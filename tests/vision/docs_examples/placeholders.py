"""What the Vision Agents docs leave to their reader, for the examples of this folder.

``get_weather_by_location`` (the agent server example's tool),
``validate_token_and_get_user`` (the runner docs' users) and the JWT example's
``myapp.auth`` / ``myapp.database``: ``decode_jwt``, ``get_user_by_id``,
``get_db`` and the ``AsyncSession`` it yields (a stand-in for SQLAlchemy's:
an in-memory user table). Tokens: ``Bearer token-<name>`` for the runner
docs, ``Bearer <make_jwt(user_id)>`` for the JWT example.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import jwt
from fastapi import HTTPException

SECRET = "the docs examples sign their test tokens with this"


async def get_weather_by_location(location: str) -> dict[str, Any]:
    return {"location": location, "forecast": "sunny", "temperature_f": 72}


@dataclass(frozen=True)
class StoredUser:
    id: str
    name: str
    permissions: frozenset[str]
    over_quota: bool = False

    def has_permission(self, permission: str) -> bool:
        return permission in self.permissions

    async def exceeded_session_quota(self, db: AsyncSession) -> bool:
        assert not db.closed, "the database session was closed before the check ended"
        return self.over_quota


ALL = frozenset({"start_session", "agents:start"})
USERS = {
    user.id: user
    for user in (
        StoredUser("u-alice", "alice", ALL),
        StoredUser("u-bob", "bob", ALL),
        StoredUser("u-mallory", "mallory", frozenset()),  # may not start agents
        StoredUser("u-carol", "carol", ALL, over_quota=True),
    )
}


async def validate_token_and_get_user(authorization: str) -> StoredUser:
    """The runner docs' user lookup: ``Bearer token-<name>``."""
    token = authorization.removeprefix("Bearer ")
    for user in USERS.values():
        if token == f"token-{user.name}":
            return user
    raise HTTPException(status_code=401, detail="Invalid token")


# ------------------------------------------- the JWT example's myapp modules


def make_jwt(user_id: str, secret: str = SECRET) -> str:
    return jwt.encode({"user_id": user_id}, secret, algorithm="HS256")


def decode_jwt(token: str) -> dict[str, Any]:
    """Raises if invalid (as the docs say), as the 401 a FastAPI app would answer."""
    try:
        payload: dict[str, Any] = jwt.decode(token, SECRET, algorithms=["HS256"])
    except jwt.InvalidTokenError:
        raise HTTPException(status_code=401, detail="Invalid token") from None
    return payload


class AsyncSession:
    """What ``get_db`` yields: open while the request's dependencies run."""

    def __init__(self) -> None:
        self.closed = False


async def get_db() -> AsyncIterator[AsyncSession]:
    db = AsyncSession()
    try:
        yield db
    finally:
        db.closed = True


async def get_user_by_id(db: AsyncSession, user_id: str) -> StoredUser | None:
    assert not db.closed, "the database session was closed before the lookup"
    return USERS.get(user_id)

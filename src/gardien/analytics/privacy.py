"""Cookieless visitor ids and IP anonymisation: what makes a hit storable without consent.

The visitor id is ``HMAC(salt of the day, ip | user agent | site)`` cut to 16 hex characters:
stable for one visitor during one UTC day, unlinkable across days because each day's salt is
random and deleted once the day after is over (it is never exported or backed up). The raw IP
only ever enters this computation and the anonymisation; neither keeps it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import secrets
import threading
import weakref

from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gardien.analytics.models import AnalyticsSalt

SALT_BYTES = 32
IPV4_MASKED_BYTES = 2
IPV6_KEPT_BITS = {1: 64, 2: 48, 3: 24, 4: 0}
"""Matomo's IPv6 masks for each IPv4 level: 1 byte masks 64 bits, 2 bytes 80, 3 bytes 104."""


def anonymise_ip(ip: str, ipv4_masked_bytes: int = IPV4_MASKED_BYTES) -> str | None:
    """The network the address belongs to, with its host part zeroed: IPv4 loses its last
    ``ipv4_masked_bytes`` bytes (1-4, 4 keeps nothing), IPv6 keeps 64, 48, 24 or 0 bits at the
    same levels (Matomo's). IPv4-mapped IPv6 is read as IPv4. ``None`` when ``ip`` is not an
    address."""
    if not 1 <= ipv4_masked_bytes <= 4:
        raise ValueError("ipv4_masked_bytes must be 1 to 4")
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv4Address):
        prefix = 32 - 8 * ipv4_masked_bytes
    else:
        prefix = IPV6_KEPT_BITS[ipv4_masked_bytes]
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


def visitor_id(salt: bytes, ip: str, user_agent: str, site_id: int) -> str:
    """The cookieless id of a visitor on a site for the day ``salt`` belongs to."""
    material = f"{ip}|{user_agent}|{site_id}".encode("utf-8", "surrogatepass")
    return hmac.new(salt, material, hashlib.sha256).hexdigest()[:16]


def forget_old_salts(session: Session, today: dt.date) -> int:
    """Delete the salts of days before yesterday (yesterday's is kept so hits received around
    midnight in another instance still find it). Returns how many were deleted."""
    cutoff = today - dt.timedelta(days=1)
    result = session.execute(delete(AnalyticsSalt).where(AnalyticsSalt.day < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)


def salt_of_day(session: Session, day: dt.date) -> bytes:
    """The day's salt, created on first use. Instances racing to create it meet on the primary
    key: the loser reads the winner's. Creating a day's salt also forgets the old ones."""
    found = session.scalar(select(AnalyticsSalt.salt).where(AnalyticsSalt.day == day))
    if found is not None:
        return bytes(found)
    try:
        with session.begin_nested():
            session.execute(insert(AnalyticsSalt).values(day=day, salt=secrets.token_bytes(32)))
    except IntegrityError:
        pass
    forget_old_salts(session, day)
    stored = session.scalar(select(AnalyticsSalt.salt).where(AnalyticsSalt.day == day))
    if stored is None:  # pragma: no cover - the row was just inserted or found
        raise RuntimeError("the day's salt could not be stored")
    return bytes(stored)


class DailySalts:
    """Salts read from the database once per day and process; a lost cache is re-read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: weakref.WeakKeyDictionary[Engine, tuple[dt.date, bytes]] = (
            weakref.WeakKeyDictionary()
        )

    def cached(self, engine: Engine, day: dt.date) -> bytes | None:
        """The day's salt if this process has read it already (no database access)."""
        with self._lock:
            cached = self._cache.get(engine)
        return cached[1] if cached is not None and cached[0] == day else None

    def get(self, engine: Engine, day: dt.date) -> bytes:
        cached = self.cached(engine, day)
        if cached is not None:
            return cached
        with Session(engine) as session, session.begin():
            salt = salt_of_day(session, day)
        with self._lock:
            self._cache[engine] = (day, salt)
        return salt


daily_salts = DailySalts()

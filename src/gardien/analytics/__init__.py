"""Audience measurement: Matomo-compatible hits, cookieless by default, kept six months."""

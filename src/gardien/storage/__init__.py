"""Infrastructure shared by every domain: engine, sessions, Base, UTC time, clock, locks."""

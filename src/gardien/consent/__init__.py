"""Consent: the cookie banner's configuration, the proof-of-consent records, the revisions."""

"""Phone numbers as the rights workflow compares and stores them: E.164, parsed with the
``phonenumbers`` library, a number written in national form (``0722 …``) read in the
operator's country (the register's first address), so ``0722 123 456`` and ``+40722123456``
are the same number."""

from __future__ import annotations

import phonenumbers


def e164(value: str, region: str) -> str | None:
    """``value`` in E.164 (``+40722123456``), or ``None`` when it is not a valid number;
    a national form is read in ``region`` (an ISO 3166 country code)."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))

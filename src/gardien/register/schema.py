"""The processing register's shape: every key a register may hold, strictly typed.

Pydantic checks types, required keys and unknown keys (``extra="forbid"``: a key nobody
declared is an error). Cross-field rules that need the whole document (languages, references,
advertising, exemptions) live in ``validation.py`` so their messages can name the exact field.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StringConstraints

Text = dict[str, str]
"""Translatable text: a mapping of language code to text, e.g. ``{en: ..., fr: ..., ro: ...}``."""

Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
Duration = Annotated[str, StringConstraints(min_length=2, max_length=40)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LegalBasis(StrEnum):
    """The six lawful bases of GDPR Art. 6(1)."""

    consent = "consent"
    contract = "contract"
    legal_obligation = "legal_obligation"
    vital_interests = "vital_interests"
    public_task = "public_task"
    legitimate_interests = "legitimate_interests"


ARTICLE_6 = {
    LegalBasis.consent: "6(1)(a)",
    LegalBasis.contract: "6(1)(b)",
    LegalBasis.legal_obligation: "6(1)(c)",
    LegalBasis.vital_interests: "6(1)(d)",
    LegalBasis.public_task: "6(1)(e)",
    LegalBasis.legitimate_interests: "6(1)(f)",
}


class RetentionTrigger(StrEnum):
    """The event from which a retention period runs."""

    collected = "collected"
    last_activity = "last_activity"
    consent_given = "consent_given"
    case_closed = "case_closed"
    account_closed = "account_closed"
    created = "created"


class RetentionAction(StrEnum):
    delete = "delete"
    anonymise = "anonymise"
    archive = "archive"  # accepted by the schema so validation can refuse it with a reason


class Party(StrEnum):
    first = "first"
    third = "third"


class RecipientRole(StrEnum):
    internal = "internal"
    group_company = "group_company"
    processor = "processor"
    controller = "controller"
    authority = "authority"
    advertising = "advertising"


class Channel(StrEnum):
    email = "email"
    post = "post"
    portal = "portal"
    cookie_panel = "cookie_panel"
    form = "form"


class Right(StrEnum):
    access = "access"
    rectification = "rectification"
    erasure = "erasure"
    restriction = "restriction"
    portability = "portability"
    objection = "objection"
    withdraw_consent = "withdraw_consent"
    post_mortem = "post_mortem"
    complaint = "complaint"


class Address(Strict):
    street: str
    postcode: str
    city: str
    region: str | None = None
    country: CountryCode


class Person(Strict):
    name: str | None = None
    email: str
    address: Address | None = None
    phone: str | None = None


class Operator(Strict):
    legal_name: str
    brand: str
    group: str | None = None
    registration_number: str
    addresses: list[Address] = Field(min_length=1)
    contact_email: str
    dpo: Person
    website: str
    no_advertising: StrictBool = False
    commitment: Text
    terms_url: str | None = None


class Hosting(Strict):
    name: str
    registration_number: str | None = None
    address: Address
    location: CountryCode
    region: Text
    certifications: list[str] = Field(min_length=1)
    laws: list[Text] = Field(default_factory=list)


class SupervisoryAuthority(Strict):
    name: Text
    short_name: str
    address: Address
    phone: str
    fax: str | None = None
    email: str
    website: str
    complaint_url: str
    note: Text | None = None


class Languages(Strict):
    default: Identifier
    available: list[Identifier] = Field(min_length=1)


class LegalBasisSpec(Strict):
    basis: LegalBasis
    interest: Text | None = None
    """Required for legitimate interests: the interest pursued (Art. 13(1)(d))."""
    special_category_condition: str | None = None


class DataCategory(Strict):
    id: Identifier
    name: Text
    fields: list[Identifier] = Field(min_length=1)
    special_category: StrictBool = False


class Recipient(Strict):
    id: Identifier
    name: Text
    role: RecipientRole
    location: CountryCode | None = None
    """Where the recipient processes the data; required (validation reports its absence)."""
    contact: str | None = Field(default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    """The e-mail address a rectification, erasure or restriction is notified to (Art. 19);
    without it the notification is closed by an agent with a reason."""


class Transfer(Strict):
    recipient: Identifier
    country: CountryCode
    safeguard: Text


class LegalHold(Strict):
    """Suspends the purge of an activity until ``expires`` (legal-requirements §8.5)."""

    reason: str
    owner: str
    expires: dt.date


class Retention(Strict):
    period: Duration
    trigger: RetentionTrigger
    action: RetentionAction
    description: Text


class Requirement(Strict):
    """Art. 13(2)(e): whether providing the data is required, and what happens if not."""

    mandatory: StrictBool
    consequence: Text


class Activity(Strict):
    id: Identifier
    name: Text
    purposes: list[Text] = Field(min_length=1)
    legal_basis: LegalBasisSpec
    data_subjects: list[Text] = Field(min_length=1)
    data_categories: list[DataCategory] = Field(min_length=1)
    source: Text
    recipients: list[Recipient] = Field(default_factory=list)
    transfers: list[Transfer] = Field(default_factory=list)
    retention: Retention
    security_measures: list[Text] = Field(min_length=1)
    storage: Identifier
    """The Gardien store that holds this activity's data (``retention status`` reports it)."""
    requirement: Requirement
    automated_decisions: StrictBool = False
    withdrawal: list[Channel] = Field(default_factory=list)
    """How consent is withdrawn; required when the legal basis is consent."""
    added: StrictBool = False
    """Declared by Gardien itself where the seed policy was silent; shown as such."""
    legal_holds: list[LegalHold] = Field(default_factory=list)


class Cookie(Strict):
    name: str
    pattern: StrictBool = False
    provider: str
    party: Party
    category: Identifier
    purpose: Text
    duration: Duration
    """ISO 8601 duration, or ``session``."""
    consent_required: StrictBool
    activity: Identifier | None = None


class ConsentCategory(Strict):
    id: Identifier
    title: Text
    description: Text
    strictly_necessary: StrictBool = False
    advertising: StrictBool = False
    signals: list[str] = Field(default_factory=list)


class ConsentSettings(Strict):
    lifetime: Duration
    """How long a decision is kept before the banner asks again (seed: six months)."""


class FieldType(StrEnum):
    """What a form field holds, and so how it is validated and stored."""

    text = "text"
    """One line: a name, a company."""
    textarea = "textarea"
    """Free text (the message)."""
    email = "email"
    """An e-mail address: syntax only (no network), stored normalised."""
    phone = "phone"
    """A phone number, read with the country field's country, stored in E.164."""
    country = "country"
    """An ISO 3166-1 alpha-2 code."""
    choice = "choice"
    """One of ``options``."""


class FormChoice(Strict):
    value: Identifier
    label: Text


class FormField(Strict):
    name: Identifier
    type: FieldType
    label: Text
    required: StrictBool = False
    max_length: int = Field(default=200, ge=1, le=20_000)
    help: Text | None = None
    """Shown under the field (e.g. "do not send health information")."""
    options: list[FormChoice] = Field(default_factory=list)
    """The choices of a ``choice`` field, in the order shown."""


class EmailContent(StrEnum):
    notice = "notice"
    """The e-mail says a submission arrived, with a link into the admin; no personal data."""
    full = "full"
    """The e-mail carries the submission: the mailbox then keeps personal data, so the
    register must state the mailbox's own retention (``mailbox_retention``)."""


class FormSpec(Strict):
    id: Identifier
    activity: Identifier
    """The processing activity the submissions belong to (purpose, basis, retention)."""
    title: Text
    fields: list[FormField] = Field(min_length=1)
    consent_text: Text | None = None
    """The consent checkbox's label, naming the purpose; required when the activity's basis
    is consent, refused otherwise."""
    notify: list[str] = Field(min_length=1)
    """Mailboxes of the operator's staff told about each submission."""
    email_content: EmailContent = EmailContent.notice
    mailbox_retention: Duration | None = None
    acknowledgement: StrictBool = False
    """Send the visitor an acknowledgement, in their language."""
    min_fill_seconds: int = Field(default=3, ge=0, le=600)
    """A form sent faster than this after it was shown is taken for a robot's."""


class Site(Strict):
    """A website whose audience Gardien measures (``idsite`` in Matomo's tracking API)."""

    id: int = Field(ge=1, le=2_147_483_647)
    name: str = Field(min_length=1, max_length=200)
    hostnames: list[str] = Field(min_length=1)
    """Hosts whose pages may send hits; a hit whose ``url`` names another host is refused."""
    activity: Identifier
    """The processing activity the hits belong to (its retention purges them)."""
    ip_masked_bytes: int = Field(default=2, ge=1, le=4)
    """Bytes of an IPv4 address masked before anything is stored, Matomo's levels: 1
    (``192.168.100.0``, IPv6 keeps /64), 2 (``192.168.0.0``, IPv6 /48, the default), 3
    (``192.0.0.0``, IPv6 /24), 4 (nothing kept)."""
    honour_do_not_track: StrictBool = False
    """Treat a browser's ``DNT: 1`` like an opt-out (Global Privacy Control always is)."""


def _time_zone(name: str) -> str:
    """An IANA time zone name the system knows (``Europe/Bucharest``, ``Europe/Paris``)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name[:60]!r}: give an IANA name such as Europe/Bucharest"
        ) from None
    return name


class RightsSection(Strict):
    channels: list[Channel] = Field(min_length=1)
    email: str
    postal_address: Address
    postal_recipient: str
    portal_path: Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9/_-]*$")] = "/rights"
    offered: list[Right] = Field(min_length=1)
    identity_check: Text
    response_time: Text
    holidays_country: CountryCode = "RO"
    """ISO 3166-1 alpha-2 code of the country whose public holidays move a request's deadline
    to the next working day (Reg. 1182/71 Art. 3(4)); must have a calendar in the holidays
    library."""
    pause_while_verifying: StrictBool = False
    """Stop a request's deadline clock while awaiting the identity information asked for
    (Art. 12(6)); off by default, as the GDPR and Romanian law provide no suspension."""
    download_link_days: int = Field(default=7, ge=1, le=30, strict=True)
    """How long the one-time link to an access package stays valid (the encrypted package is
    deleted at its download or at the link's expiry)."""
    identity_document_max_days: int = Field(default=7, ge=1, le=30, strict=True)
    """The longest an identity document (asked on a recorded doubt) is kept: it is deleted as
    soon as the verification decision is taken, and at the latest after this many days."""
    time_zone: Annotated[str, AfterValidator(_time_zone)] = "Europe/Bucharest"
    """The IANA time zone where the controller receives requests: a request's day of receipt,
    from which its deadline runs (Reg. 1182/71 Art. 3(1)), is the date on this zone's clock
    (a request made at 23:30 in Bucharest is received that day, not the next UTC day)."""
    verification_window_days: int = Field(default=30, ge=1, le=90, strict=True)
    """A portal request never confirmed with its one-time code is closed, and its identifiers
    erased, this many days after it was received."""
    reminder_days: int = Field(default=7, ge=1, le=30, strict=True)
    """Staff are e-mailed once when an open case's due date is this many days away or less,
    and once more if it passes with the case still open (rights/reminders.py)."""


class PolicySection(Strict):
    title: Text
    introduction: Text
    laws: list[Text] = Field(default_factory=list)
    updates: Text


class Register(Strict):
    operator: Operator
    hosting: Hosting
    supervisory_authority: SupervisoryAuthority
    languages: Languages
    policy: PolicySection
    activities: list[Activity] = Field(min_length=1)
    cookies: list[Cookie] = Field(default_factory=list)
    consent_categories: list[ConsentCategory] = Field(default_factory=list)
    consent: ConsentSettings | None = None
    forms: list[FormSpec] = Field(default_factory=list)
    sites: list[Site] = Field(default_factory=list)
    rights: RightsSection

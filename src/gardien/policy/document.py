"""Build the privacy policy as a structured document from the register, in one language.

The document is the single source for every output: the HTML pages, Markdown, JSON and the
content hash that decides when a new policy version is published. Gardien's own sentences are
translated through the Babel catalogs; the operator's words come from the register's
translatable texts. Every GDPR Art. 13 item has a section, named in ``ART13_SECTIONS``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from gardien.i18n import Translator, translator
from gardien.register.durations import parse_period
from gardien.register.schema import (
    ARTICLE_6,
    Activity,
    Address,
    Channel,
    EmailContent,
    LegalBasis,
    Recipient,
    RecipientRole,
    Register,
    Right,
    Text,
)

Part = Literal["privacy", "cookies"]


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]
    caption: str


@dataclass(frozen=True)
class Section:
    id: str
    heading: str
    part: Part = "privacy"
    paragraphs: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    table: Table | None = None
    after: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PolicyDocument:
    language: str
    title: str
    sections: list[Section]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def part(self, part: Part) -> list[Section]:
        return [s for s in self.sections if s.part == part]


ART13_SECTIONS = {
    "13(1)(a) controller and contact": "controller",
    "13(1)(b) data protection officer": "dpo",
    "13(1)(c) purposes and legal bases": "data-collected",
    "13(1)(d) legitimate interests": "legitimate-interests",
    "13(1)(e) recipients": "recipients",
    "13(1)(f) transfers": "transfers",
    "13(2)(a) retention": "retention",
    "13(2)(b) rights": "rights",
    "13(2)(c) withdrawal of consent": "withdrawal",
    "13(2)(d) complaint": "complaint",
    "13(2)(e) whether data is required": "required",
    "13(2)(f) automated decisions": "automated-decisions",
}


def _address(address: Address) -> str:
    parts = [address.street, f"{address.postcode} {address.city}"]
    if address.region:
        parts.append(address.region)
    parts.append(address.country)
    return ", ".join(parts)


def _join(words: list[str], t: Translator, *, alternatives: bool = False) -> str:
    """``a, b and c`` (or ``a, b or c`` for alternatives) in the document's language."""
    if len(words) <= 1:
        return "".join(words)
    conjunction = t.gettext("or") if alternatives else t.gettext("and")
    return f"{', '.join(words[:-1])} {conjunction} {words[-1]}"


def duration_words(text: str, t: Translator) -> str:
    """``P90D`` → "90 days", ``P6M`` → "6 months"; falls back to the ISO text."""
    if text == "session":
        return t.gettext("end of the browsing session")
    delta = parse_period(text).delta
    units = [
        (delta.years, t.ngettext("%(n)d year", "%(n)d years", delta.years)),
        (delta.months, t.ngettext("%(n)d month", "%(n)d months", delta.months)),
        (delta.days, t.ngettext("%(n)d day", "%(n)d days", delta.days)),
        (delta.hours, t.ngettext("%(n)d hour", "%(n)d hours", delta.hours)),
        (delta.minutes, t.ngettext("%(n)d minute", "%(n)d minutes", delta.minutes)),
    ]
    words = [template % {"n": n} for n, template in units if n]
    return _join(words, t) or text


class _Builder:
    def __init__(self, register: Register, language: str) -> None:
        self.register = register
        self.language = language
        self.t = translator(language)

    def tr(self, text: Text) -> str:
        return text.get(self.language) or text[self.register.languages.default]

    def _(self, message: str, **values: str) -> str:
        translated = self.t.gettext(message)
        return translated % values if values else translated

    def labelled(self, label: str, text: str) -> str:
        """``label: text`` with the language's punctuation (French puts a space before ':')."""
        return self._("%(label)s: %(text)s", label=label, text=text)

    def basis_name(self, basis: LegalBasis) -> str:
        names = {
            LegalBasis.consent: self._("Consent"),
            LegalBasis.contract: self._("Performance of a contract"),
            LegalBasis.legal_obligation: self._("Legal obligation"),
            LegalBasis.vital_interests: self._("Vital interests"),
            LegalBasis.public_task: self._("Public interest task"),
            LegalBasis.legitimate_interests: self._("Legitimate interests"),
        }
        article = self._("GDPR Art. %(article)s", article=ARTICLE_6[basis])
        return f"{names[basis]} ({article})"

    def role_name(self, role: RecipientRole) -> str:
        return {
            RecipientRole.internal: self._("internal staff"),
            RecipientRole.group_company: self._("group company"),
            RecipientRole.processor: self._("processor"),
            RecipientRole.controller: self._("independent controller"),
            RecipientRole.authority: self._("public authority"),
            RecipientRole.advertising: self._("advertising"),
        }[role]

    def channel_name(self, channel: Channel) -> str:
        rights = self.register.rights
        return {
            Channel.email: self._("by e-mail at %(email)s", email=rights.email),
            Channel.post: self._(
                "by post to %(recipient)s, %(address)s",
                recipient=rights.postal_recipient,
                address=_address(rights.postal_address),
            ),
            Channel.portal: self._("online at %(url)s", url=self._url(rights.portal_path)),
            Channel.cookie_panel: self._("through the cookie management panel"),
            Channel.form: self._("through the form where you gave it"),
        }[channel]

    def right_text(self, right: Right) -> str:
        return {
            Right.access: self._(
                "Access (Art. 15): to know whether we process your data and to receive a copy."
            ),
            Right.rectification: self._(
                "Rectification (Art. 16): to have inaccurate data corrected and incomplete "
                "data completed."
            ),
            Right.erasure: self._(
                "Erasure (Art. 17): to have your data deleted, unless we must keep it."
            ),
            Right.restriction: self._(
                "Restriction of processing (Art. 18): to have your data kept but no longer used "
                "while a question is settled."
            ),
            Right.portability: self._(
                "Portability (Art. 20): to receive the data you gave us, on the basis of your "
                "consent or a contract, in a structured, machine-readable format."
            ),
            Right.objection: self._(
                "Objection (Art. 21): to object, on grounds relating to your situation, to "
                "processing based on our legitimate interests."
            ),
            Right.withdraw_consent: self._(
                "Withdrawal of consent (Art. 7(3)): at any time, as easily as you gave it, "
                "without affecting the lawfulness of processing before the withdrawal."
            ),
            Right.post_mortem: self._(
                "Post-mortem directives (French Data Protection Act, Art. 85): to define "
                "directives on the retention, deletion and communication of your personal "
                "data after your death."
            ),
            Right.complaint: self._(
                "Complaint: to lodge a complaint with a supervisory authority (Art. 77)."
            ),
        }[right]

    # -- sections -------------------------------------------------------------------------

    def introduction(self) -> Section:
        op, host = self.register.operator, self.register.hosting
        paragraphs = [self.tr(op.commitment)]
        paragraphs.append(
            self._(
                "Your data are hosted in %(region)s by %(host)s, which is certified %(certs)s "
                "and is therefore subject to regular security audits by approved organisations.",
                region=self.tr(host.region),
                host=host.name,
                certs=_join(host.certifications, self.t),
            )
        )
        if op.no_advertising:
            paragraphs.append(
                self._(
                    "%(brand)s does not transfer any of your data to the commercial or "
                    "advertising industry.",
                    brand=op.brand,
                )
            )
        return Section("introduction", self._("Our commitment to privacy"), paragraphs=paragraphs)

    def compliance(self) -> Section:
        laws = [self.tr(law) for law in self.register.hosting.laws + self.register.policy.laws]
        return Section(
            "compliance",
            self._("Compliance with the GDPR"),
            paragraphs=[self._("The Site is administered in compliance with:")],
            items=laws,
        )

    def hosting(self) -> Section:
        host = self.register.hosting
        registration = f", {host.registration_number}" if host.registration_number else ""
        return Section(
            "hosting",
            self._("Secure hosting"),
            paragraphs=[
                self._(
                    "Data hosting is provided by %(host)s%(registration)s, %(address)s, a "
                    "certified host in compliance with applicable regulations.",
                    host=host.name,
                    registration=registration,
                    address=_address(host.address),
                ),
                self._(
                    "Hosting is provided exclusively in %(region)s.", region=self.tr(host.region)
                ),
                self._(
                    "Its hosting activities are certified %(certs)s and are therefore subject to "
                    "regular security audits.",
                    certs=_join(host.certifications, self.t),
                ),
            ],
        )

    def about(self) -> Section:
        policy = self.register.policy
        return Section(
            "about",
            self._("About this policy"),
            paragraphs=[
                self.tr(policy.introduction),
                self._(
                    "This Policy informs you about how your data are processed. It is not a "
                    "contract: you do not need to accept it, and using the Site does not mean "
                    "that you consent to anything."
                ),
                self.tr(policy.updates),
            ],
        )

    def controller(self) -> Section:
        op = self.register.operator
        address = _address(op.addresses[0])
        return Section(
            "controller",
            self._("Who is the data controller?"),
            paragraphs=[
                self._(
                    "The controller of a processing of personal data, within the meaning of the "
                    "GDPR, is the person, public authority, company or body that determines the "
                    "purposes and means of the processing."
                ),
                self._(
                    "%(name)s is the data controller in the context of the navigation of this "
                    "website.",
                    name=op.legal_name,
                ),
                self._(
                    "%(name)s, registration number %(number)s, %(address)s. Contact: %(email)s.",
                    name=op.legal_name,
                    number=op.registration_number,
                    address=address,
                    email=op.contact_email,
                ),
            ],
        )

    def dpo(self) -> Section:
        dpo = self.register.operator.dpo
        who = f"{dpo.name}, " if dpo.name else ""
        paragraphs = [
            self._(
                "You can contact our data protection officer (DPO): %(who)s%(email)s.",
                who=who,
                email=dpo.email,
            )
        ]
        if dpo.address:
            paragraphs.append(self._("By post: %(address)s.", address=_address(dpo.address)))
        return Section("dpo", self._("Data protection officer"), paragraphs=paragraphs)

    def data_collected(self) -> Section:
        rows = []
        for activity in self.register.activities:
            data = "; ".join(self.tr(c.name) for c in activity.data_categories)
            purposes = " ".join(self.tr(p) for p in activity.purposes)
            name = self.tr(activity.name)
            if activity.added:
                added = self._("added by Gardien")
                name = f"{name} ({added})"
            rows.append(
                [
                    self.labelled(name, data),
                    self.basis_name(activity.legal_basis.basis)
                    + (
                        f"; {activity.legal_basis.special_category_condition}"
                        if activity.legal_basis.special_category_condition
                        else ""
                    ),
                    purposes,
                    self.tr(activity.retention.description),
                ]
            )
        op = self.register.operator
        return Section(
            "data-collected",
            self._("Which personal data are collected?"),
            paragraphs=[
                self._(
                    "Your data may be collected and processed by %(name)s as data controller, "
                    "on the following legal bases and for the following purposes:",
                    name=op.legal_name,
                )
            ],
            table=Table(
                headers=[
                    self._("Data collected"),
                    self._("Legal basis"),
                    self._("Purposes of the processing"),
                    self._("Retention period"),
                ],
                rows=rows,
                caption=self._("Processing activities"),
            ),
            after=[
                self._(
                    "Activities marked “added by Gardien” are performed by the software that "
                    "runs this policy (audience measurement, proof of consent, handling of your "
                    "requests, security records, backups); they are listed so that nothing is "
                    "processed without being declared here."
                )
            ]
            if any(a.added for a in self.register.activities)
            else [],
        )

    def legitimate_interests(self) -> Section:
        items = [
            self.labelled(self.tr(a.name), self.tr(a.legal_basis.interest))
            for a in self.register.activities
            if a.legal_basis.basis is LegalBasis.legitimate_interests and a.legal_basis.interest
        ]
        paragraphs = (
            [self._("Where we rely on our legitimate interests, these interests are:")]
            if items
            else [self._("We do not rely on legitimate interests.")]
        )
        return Section(
            "legitimate-interests",
            self._("Our legitimate interests"),
            paragraphs=paragraphs,
            items=items,
        )

    def required(self) -> Section:
        items = []
        for activity in self.register.activities:
            status = (
                self._("required") if activity.requirement.mandatory else self._("not required")
            )
            items.append(
                self.labelled(
                    f"{self.tr(activity.name)} ({status})",
                    self.tr(activity.requirement.consequence),
                )
            )
        return Section(
            "required",
            self._("Do you have to provide your data?"),
            paragraphs=[
                self._(
                    "Whether providing your data is a statutory or contractual requirement, and "
                    "what happens if you do not provide it:"
                )
            ],
            items=items,
        )

    def _recipients(self) -> dict[str, tuple[Recipient, list[Activity]]]:
        seen: dict[str, tuple[Recipient, list[Activity]]] = {}
        for activity in self.register.activities:
            for recipient in activity.recipients:
                seen.setdefault(recipient.id, (recipient, []))[1].append(activity)
        return seen

    def recipients(self) -> Section:
        rows = [
            [
                self.tr(recipient.name),
                self.role_name(recipient.role),
                recipient.location or "",
                ", ".join(self.tr(a.name) for a in activities),
            ]
            for recipient, activities in self._recipients().values()
        ]
        return Section(
            "recipients",
            self._("Who are the recipients of the personal data collected?"),
            paragraphs=[
                self._("The recipients of some of your personal data are:"),
            ],
            table=Table(
                headers=[
                    self._("Recipient"),
                    self._("Role"),
                    self._("Location"),
                    self._("Activities"),
                ],
                rows=rows,
                caption=self._("Recipients"),
            ),
            after=[
                self._(
                    "Processors act only on our documented instructions, under strict "
                    "confidentiality and exclusively to achieve the purposes set out in this "
                    "Policy."
                )
            ],
        )

    def transfers(self) -> Section:
        items = []
        names = {r.id: r for r, _ in self._recipients().values()}
        for activity in self.register.activities:
            for transfer in activity.transfers:
                recipient = names.get(transfer.recipient)
                who = self.tr(recipient.name) if recipient else transfer.recipient
                items.append(
                    self.labelled(f"{who} ({transfer.country})", self.tr(transfer.safeguard))
                )
        paragraphs = (
            [self._("Some data are transferred outside the European Economic Area:")]
            if items
            else [self._("Your data are not transferred outside the European Economic Area.")]
        )
        return Section(
            "transfers", self._("Transfers outside the EEA"), paragraphs=paragraphs, items=items
        )

    def retention(self) -> Section:
        items = [
            self.labelled(
                self.tr(a.name),
                f"{self.tr(a.retention.description)} "
                f"({duration_words(a.retention.period, self.t)})" + self._mailbox_copies(a.id),
            )
            for a in self.register.activities
        ]
        return Section(
            "retention",
            self._("How long is your personal data kept?"),
            paragraphs=[
                self._(
                    "Personal data are kept only as long as the purpose requires. At the end of "
                    "each period below, they are deleted or irreversibly anonymised "
                    "automatically, and each deletion leaves a receipt that records counts, "
                    "never the data itself."
                )
            ],
            items=items,
        )

    def _mailbox_copies(self, activity_id: str) -> str:
        """A form that e-mails the whole submission leaves copies in a mailbox: say how long
        they are kept there (the register must state it for such a form)."""
        periods = [
            form.mailbox_retention
            for form in self.register.forms
            if form.activity == activity_id
            and form.email_content is EmailContent.full
            and form.mailbox_retention
        ]
        if not periods:
            return ""
        return " " + self._(
            "The e-mails the form sends us, which contain your request, are kept in our "
            "mailbox for %(period)s.",
            period=duration_words(periods[0], self.t),
        )

    def rights(self) -> Section:
        rights = self.register.rights
        offered = [r for r in rights.offered if r is not Right.complaint]
        channels = [self.channel_name(c) for c in rights.channels]
        return Section(
            "rights",
            self._("What are your rights and remedies?"),
            paragraphs=[
                self._(
                    "In accordance with the regulations in force, you have the following rights:"
                )
            ],
            items=[self.right_text(r) for r in offered],
            after=[
                self._(
                    "To exercise these rights, contact us %(channels)s.",
                    channels=_join(channels, self.t, alternatives=True),
                ),
                self._(
                    "Please tell us which right you wish to exercise and, for a correction, "
                    "which data are concerned."
                ),
                self.tr(rights.identity_check),
                self.tr(rights.response_time),
                self._("Exercising your rights is free of charge."),
            ],
        )

    def _url(self, path: str) -> str:
        return self.register.operator.website.rstrip("/") + path

    def post_mortem(self) -> Section:
        return Section(
            "post-mortem",
            self._("Directives after your death"),
            paragraphs=[
                self._(
                    "You have the right to define directives concerning the retention, deletion "
                    "and communication of your personal data in the event of your death. You "
                    "can register, change or revoke them through the channels above; in the "
                    "absence of directives, your heirs may exercise certain rights."
                )
            ],
        )

    def withdrawal(self) -> Section:
        consent_activities = [
            a for a in self.register.activities if a.legal_basis.basis is LegalBasis.consent
        ]
        paragraphs = [
            self._(
                "Where processing is based on your consent, you can withdraw it at any time, "
                "as easily as you gave it. Withdrawal does not affect the lawfulness of the "
                "processing carried out before it."
            )
        ]
        items = [
            self.labelled(
                self.tr(a.name),
                _join([self.channel_name(c) for c in a.withdrawal], self.t, alternatives=True),
            )
            for a in consent_activities
        ]
        if items:
            paragraphs.append(self._("Processing based on your consent, and how to withdraw it:"))
        after = []
        if self.register.consent_categories:
            after.append(
                self._("For cookies, use the cookie management panel, available on every page.")
            )
        return Section(
            "withdrawal",
            self._("Withdrawing your consent"),
            paragraphs=paragraphs,
            items=items,
            after=after,
        )

    def complaint(self) -> Section:
        authority = self.register.supervisory_authority
        contact = [
            f"{self.tr(authority.name)} ({authority.short_name})",
            _address(authority.address),
            self._("Phone: %(phone)s", phone=authority.phone)
            + (" · " + self._("Fax: %(fax)s", fax=authority.fax) if authority.fax else ""),
            self._("E-mail: %(email)s", email=authority.email) + f" · {authority.website}",
            self._("How to complain: %(url)s", url=authority.complaint_url),
        ]
        paragraphs = [
            self._("In addition, you may lodge a complaint with the supervisory authority:")
        ]
        after = [self.tr(authority.note)] if authority.note else []
        return Section(
            "complaint",
            self._("Complaint to the supervisory authority"),
            paragraphs=paragraphs,
            items=contact,
            after=after,
        )

    def automated_decisions(self) -> Section:
        automated = [self.tr(a.name) for a in self.register.activities if a.automated_decisions]
        paragraphs = (
            [self._("The following activities involve automated decision-making:")]
            if automated
            else [
                self._(
                    "We do not take decisions based solely on automated processing, including "
                    "profiling, that produce legal effects concerning you."
                )
            ]
        )
        return Section(
            "automated-decisions",
            self._("Automated decisions"),
            paragraphs=paragraphs,
            items=automated,
        )

    def security(self) -> Section:
        measures: dict[str, None] = {}
        for activity in self.register.activities:
            for measure in activity.security_measures:
                measures.setdefault(self.tr(measure), None)
        return Section(
            "security",
            self._("How your data are protected"),
            paragraphs=[
                self._(
                    "We take appropriate technical and organisational measures to protect the "
                    "personal data we process, including:"
                )
            ],
            items=list(measures),
        )

    def audience_measurement(self) -> Section | None:
        cookies = [c for c in self.register.cookies if c.category == "audience_measurement"]
        if not cookies:
            return None
        return Section(
            "audience-measurement",
            self._("Audience measurement and opt-out"),
            paragraphs=[
                self._(
                    "We measure the audience of the Site with a Matomo-compatible tool that we "
                    "host ourselves: no data is sent to a third party. By default it uses no "
                    "cookie, and IP addresses are anonymised before they are stored."
                ),
                self._(
                    "You can opt out of audience measurement at any time: %(url)s. Your browser's "
                    "Global Privacy Control or Do Not Track signal is honoured as an opt-out.",
                    url=self._url("/analytics/opt-out"),
                )
                if any(site.honour_do_not_track for site in self.register.sites)
                else self._(
                    "You can opt out of audience measurement at any time: %(url)s. Your browser's "
                    "Global Privacy Control signal is honoured as an opt-out.",
                    url=self._url("/analytics/opt-out"),
                ),
            ],
        )

    # -- cookie policy ----------------------------------------------------------------------

    def cookie_sections(self) -> list[Section]:
        brand = self.register.operator.brand
        lifetime = (
            duration_words(self.register.consent.lifetime, self.t) if self.register.consent else ""
        )
        sections = [
            Section(
                "cookie-policy",
                self._("What is %(brand)s's policy on cookies?", brand=brand),
                "cookies",
                paragraphs=[
                    self._(
                        "When you visit our Website, cookies may be placed and stored on your "
                        "terminal (computer, tablet, smartphone, etc.). This Cookie Policy "
                        "specifies the types of cookies and similar technologies used on our Site."
                    )
                ],
            ),
            Section(
                "what-is-a-cookie",
                self._("What is a cookie?"),
                "cookies",
                paragraphs=[
                    self._(
                        "A cookie is a small text file that a website may place on your "
                        "terminal. It records information relating to your terminal's browsing "
                        "on the Site (such as the pages visited, the date and time of "
                        "consultation) and is installed in the browser."
                    )
                ],
            ),
            Section(
                "why-cookies",
                self._("Why do we use cookies?"),
                "cookies",
                paragraphs=[
                    self._(
                        "Cookies that are strictly necessary to provide the service you ask for "
                        "(remembering your cookie choices, securing your session) do not "
                        "require your prior consent."
                    ),
                    self._(
                        "Other cookies are placed only if you accept them. Refusing them does "
                        "not prevent normal use of the Site."
                    ),
                    *self._measurement_cookie_sentence(),
                ],
            ),
            Section(
                "cookie-list",
                self._("Cookies used on this Site"),
                "cookies",
                paragraphs=[],
                table=Table(
                    headers=[
                        self._("Name"),
                        self._("Provider"),
                        self._("Category"),
                        self._("Purpose"),
                        self._("Duration"),
                        self._("Consent required"),
                    ],
                    rows=[
                        [
                            cookie.name,
                            f"{cookie.provider} ("
                            + (
                                self._("first party")
                                if cookie.party.value == "first"
                                else self._("third party")
                            )
                            + ")",
                            self._category_title(cookie.category),
                            self.tr(cookie.purpose),
                            duration_words(cookie.duration, self.t),
                            self._("yes") if cookie.consent_required else self._("no"),
                        ]
                        for cookie in self.register.cookies
                    ],
                    caption=self._("Cookies and trackers"),
                ),
            ),
            Section(
                "cookie-categories",
                self._("Cookie categories"),
                "cookies",
                items=[
                    self.labelled(self.tr(c.title), self.tr(c.description))
                    for c in self.register.consent_categories
                ],
            ),
        ]
        if lifetime:
            sections.append(
                Section(
                    "cookie-lifetime",
                    self._("How long are these cookies kept?"),
                    "cookies",
                    paragraphs=[
                        self._(
                            "Your choice is kept for %(lifetime)s after you express it; we then "
                            "ask you again. Cookies placed with your consent do not outlive it.",
                            lifetime=lifetime,
                        )
                    ],
                )
            )
        sections.append(
            Section(
                "manage-cookies",
                self._("How to manage cookies"),
                "cookies",
                paragraphs=[
                    self._(
                        "You can change your choices at any time through the cookie management "
                        "panel, available on every page, or set your browser to refuse or "
                        "delete cookies. Blocking strictly necessary cookies may disrupt the "
                        "use of the Site."
                    )
                ],
            )
        )
        return sections

    def _measurement_cookie_sentence(self) -> list[str]:
        cookies = [c for c in self.register.cookies if c.category == "audience_measurement"]
        if not cookies:
            return []
        if all(c.consent_required for c in cookies):
            return [
                self._(
                    "Audience measurement cookies are only placed with your consent; "
                    "without it, audience is measured without any cookie."
                )
            ]
        return [
            self._(
                "Audience measurement cookies that stay within the conditions of the CNIL "
                "exemption (first-party, anonymous statistics for us alone, at most 13 months) "
                "are placed without consent; you can object to them at any time."
            )
        ]

    def _category_title(self, category_id: str) -> str:
        for category in self.register.consent_categories:
            if category.id == category_id:
                return self.tr(category.title)
        return category_id

    def build(self) -> PolicyDocument:
        sections = [
            self.introduction(),
            self.compliance(),
            self.hosting(),
            self.about(),
            self.controller(),
            self.dpo(),
            self.data_collected(),
            self.legitimate_interests(),
            self.required(),
            self.recipients(),
            self.transfers(),
            self.retention(),
            self.security(),
            self.rights(),
            self.withdrawal(),
            *([self.post_mortem()] if Right.post_mortem in self.register.rights.offered else []),
            self.complaint(),
            self.automated_decisions(),
        ]
        measurement = self.audience_measurement()
        if measurement:
            sections.append(measurement)
        sections.extend(self.cookie_sections())
        return PolicyDocument(self.language, self.tr(self.register.policy.title), sections)


def build_document(register: Register, language: str) -> PolicyDocument:
    return _Builder(register, language).build()


def build_documents(register: Register) -> dict[str, PolicyDocument]:
    return {code: build_document(register, code) for code in register.languages.available}


def content_hash(documents: dict[str, PolicyDocument]) -> str:
    """SHA-256 over the canonical JSON of every language: a change anywhere is a new version."""
    canonical = json.dumps(
        {code: doc.to_json() for code, doc in sorted(documents.items())},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def document_from_json(data: dict[str, Any]) -> PolicyDocument:
    sections = []
    for raw in data["sections"]:
        table = raw.get("table")
        sections.append(
            Section(
                id=raw["id"],
                heading=raw["heading"],
                part=raw["part"],
                paragraphs=list(raw["paragraphs"]),
                items=list(raw["items"]),
                table=Table(**table) if table else None,
                after=list(raw["after"]),
            )
        )
    return PolicyDocument(data["language"], data["title"], sections)

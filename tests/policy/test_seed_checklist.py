"""Every sentence of the seed privacy policy is accounted for in the policy Gardien renders.

``examples/seed-site/checklist.yaml`` holds one entry per seed sentence: the sentence, the
register field or Gardien section that produces it, and a phrase that the policy rendered from
``examples/seed-site/register.yaml`` must contain in en, fr and ro. A sentence that would be false
for Gardien or unlawful is marked ``corrected:`` with the reason; its phrases then hold the
corrected text, and its ``absent:`` phrases (the false claim) must not appear.

Sentence splitting, as documented at the top of the checklist: each non-empty line of the seed,
stripped, is split with ``SENTENCE_BREAK``; each piece is stripped of whitespace and of a leading
bullet "•", and empty pieces are dropped. Sentences are compared whitespace-normalised; phrases
are looked for in the whitespace-normalised Markdown with ’ and ' treated alike.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
import yaml

from gardien.policy.document import build_document
from gardien.policy.render import to_markdown
from gardien.register.loader import load_register

ROOT = Path(__file__).resolve().parents[2]
SEED_SITE = ROOT / "examples" / "seed-site"
REGISTER = SEED_SITE / "register.yaml"
CHECKLIST = SEED_SITE / "checklist.yaml"
# A verbatim copy of ../shared/seed/privacy-policy.txt, so the check runs in any checkout.
SEED_POLICY = SEED_SITE / "seed-policy.txt"

LANGUAGES = ("en", "fr", "ro")
SENTENCE_BREAK = re.compile(r"(?<=[.?!;:])\s+(?=[A-Z“\"(])")
BULLET = "•"
ENTRY_KEYS = {"sentence", "field", "phrases", "corrected", "absent"}


@dataclass(frozen=True)
class Entry:
    """One checklist entry; `source` is its `field:` (register path or Gardien section)."""

    sentence: str
    source: str
    phrases: dict[str, str]
    corrected: str | None = None
    absent: dict[str, str] = field(default_factory=dict)


def normalise(text: str) -> str:
    """Collapse every run of whitespace to one space."""
    return " ".join(text.split())


def comparable(text: str) -> str:
    """Whitespace-normalised, with the typographic apostrophe folded to the ASCII one."""
    return normalise(text).replace("’", "'")


def split_sentences(text: str) -> list[str]:
    sentences: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        for piece in SENTENCE_BREAK.split(line):
            piece = piece.strip().removeprefix(BULLET).strip()
            if piece:
                sentences.append(normalise(piece))
    return sentences


def _language_map(value: object, key: str, where: str, problems: list[str]) -> dict[str, str]:
    if not isinstance(value, dict):
        problems.append(f"{where}: `{key}` must map en, fr and ro to a phrase")
        return {}
    result: dict[str, str] = {}
    for language, phrase in value.items():
        if language not in LANGUAGES:
            problems.append(f"{where}: `{key}` has an unknown language {language!r}")
        elif not isinstance(phrase, str) or not phrase.strip():
            problems.append(f"{where}: `{key}` has no {language} phrase")
        else:
            result[language] = phrase
    return result


def parse_checklist(raw: object) -> tuple[list[Entry], list[str]]:
    """The checklist's entries, and every problem of shape (rules (b) and (d))."""
    if not isinstance(raw, list):
        return [], ["the checklist must be a list of entries"]
    entries: list[Entry] = []
    problems: list[str] = []
    for number, item in enumerate(raw, 1):
        if not isinstance(item, dict):
            problems.append(f"entry {number}: not a mapping")
            continue
        sentence = item.get("sentence")
        if not isinstance(sentence, str) or not sentence.strip():
            problems.append(f"entry {number}: no sentence")
            continue
        where = f"entry {number} {normalise(sentence)!r}"
        unknown = sorted(set(map(str, item)) - ENTRY_KEYS)
        if unknown:
            problems.append(f"{where}: unknown keys {unknown}")
        source = item.get("field")
        if not isinstance(source, str) or not source.strip():
            problems.append(f"{where}: no field naming the register path or Gardien section")
            source = ""
        phrases = _language_map(item.get("phrases"), "phrases", where, problems)
        problems += [
            f"{where}: no {language} phrase" for language in LANGUAGES if language not in phrases
        ]
        corrected = item.get("corrected")
        if "corrected" in item and (not isinstance(corrected, str) or not corrected.strip()):
            problems.append(f"{where}: `corrected` must give the reason for the correction")
            corrected = None
        absent = _language_map(item.get("absent", {}), "absent", where, problems)
        entries.append(
            Entry(
                sentence=normalise(sentence),
                source=source,
                phrases=phrases,
                corrected=corrected if isinstance(corrected, str) else None,
                absent=absent,
            )
        )
    return entries, problems


def coverage_problems(sentences: list[str], entries: list[Entry]) -> list[str]:
    """Rule (a): every seed sentence has exactly one entry, and every entry a seed sentence."""
    counts = Counter(entry.sentence for entry in entries)
    seed = set(sentences)
    problems = [f"seed sentence has no checklist entry: {s!r}" for s in sentences if not counts[s]]
    problems += [
        f"seed sentence has {n} checklist entries: {s!r}" for s, n in counts.items() if n > 1
    ]
    problems += [f"checklist entry is not a seed sentence: {s!r}" for s in counts if s not in seed]
    return problems


def phrase_problems(entries: list[Entry], language: str, rendered: str) -> list[str]:
    """Rule (c): the rendered policy contains every phrase and none of the `absent` phrases."""
    text = comparable(rendered)
    problems: list[str] = []
    for entry in entries:
        phrase = entry.phrases.get(language)
        if phrase is not None and comparable(phrase) not in text:
            problems.append(
                f"[{language}] seed sentence {entry.sentence!r} ({entry.source}): "
                f"phrase {phrase!r} is not in the rendered policy"
            )
        false_claim = entry.absent.get(language)
        if false_claim is not None and comparable(false_claim) in text:
            problems.append(
                f"[{language}] seed sentence {entry.sentence!r} ({entry.source}): "
                f"the rendered policy still contains the false claim {false_claim!r}"
            )
    return problems


@cache
def seed_sentences() -> list[str]:
    assert SEED_POLICY.is_file(), f"seed policy not found at {SEED_POLICY}"
    return split_sentences(SEED_POLICY.read_text(encoding="utf-8"))


@cache
def checklist() -> tuple[list[Entry], list[str]]:
    return parse_checklist(yaml.safe_load(CHECKLIST.read_text(encoding="utf-8")))


@cache
def rendered_policy(language: str) -> str:
    return to_markdown(build_document(load_register(REGISTER), language))


def _report(problems: list[str]) -> str:
    return "\n".join(["", *problems])


def test_every_seed_sentence_has_exactly_one_entry() -> None:
    entries, _ = checklist()
    problems = coverage_problems(seed_sentences(), entries)
    assert not problems, _report(problems)


def test_every_entry_names_its_field_and_a_phrase_per_language() -> None:
    _, problems = checklist()
    assert not problems, _report(problems)


@pytest.mark.parametrize("language", LANGUAGES)
def test_rendered_policy_contains_every_phrase(language: str) -> None:
    entries, _ = checklist()
    problems = phrase_problems(entries, language, rendered_policy(language))
    assert not problems, _report(problems)


def test_corrected_entries_give_a_reason() -> None:
    entries, problems = checklist()
    blank = [problem for problem in problems if "`corrected`" in problem]
    assert not blank, _report(blank)
    corrected = [entry for entry in entries if entry.corrected is not None]
    assert corrected, "the checklist corrects no seed sentence"
    blank = [entry.sentence for entry in corrected if not (entry.corrected or "").strip()]
    assert not blank, _report(blank)
    sentences = {entry.sentence for entry in corrected}
    for required in ("Your use of the Site implies", "with a copy of your identity card"):
        assert any(required in sentence for sentence in sentences), (
            f"the seed sentence containing {required!r} must be marked corrected"
        )


def test_a_seed_sentence_missing_from_the_checklist_is_reported() -> None:
    entries, _ = checklist()
    dropped = next(entry for entry in entries if entry.corrected is None)
    problems = coverage_problems(seed_sentences(), [e for e in entries if e is not dropped])
    assert f"seed sentence has no checklist entry: {dropped.sentence!r}" in problems


def test_an_entry_for_a_sentence_not_in_the_seed_is_reported() -> None:
    entries, _ = checklist()
    stray = Entry("This sentence is not in the seed.", "operator.brand", {"en": "x"})
    problems = coverage_problems(seed_sentences(), [*entries, stray])
    assert f"checklist entry is not a seed sentence: {stray.sentence!r}" in problems


def test_a_missing_phrase_names_the_sentence_and_the_language() -> None:
    entry = Entry(
        "Privacy policy",
        "policy.title",
        {"en": "Privacy policy", "fr": "Politique de cookies", "ro": "Politica"},
        corrected="reason",
        absent={"ro": "Politica de confidențialitate"},
    )
    assert phrase_problems([entry], "fr", rendered_policy("fr")) == [
        "[fr] seed sentence 'Privacy policy' (policy.title): "
        "phrase 'Politique de cookies' is not in the rendered policy"
    ]
    assert phrase_problems([entry], "ro", rendered_policy("ro")) == [
        "[ro] seed sentence 'Privacy policy' (policy.title): "
        "the rendered policy still contains the false claim 'Politica de confidențialitate'"
    ]


def test_an_entry_without_phrases_or_reason_is_reported() -> None:
    raw = [{"sentence": "6 months", "phrases": {"en": "six months"}, "corrected": " "}]
    _, problems = parse_checklist(raw)
    where = "entry 1 '6 months'"
    assert problems == [
        f"{where}: no field naming the register path or Gardien section",
        f"{where}: no fr phrase",
        f"{where}: no ro phrase",
        f"{where}: `corrected` must give the reason for the correction",
    ]


def test_splitting_follows_the_documented_rule() -> None:
    text = "Heading\n\n  • First part;   Second: part.\nAs such :\nA. “Quoted” b. c\n"
    assert split_sentences(text) == [
        "Heading",
        "First part;",
        "Second: part.",
        "As such :",
        "A.",
        "“Quoted” b. c",
    ]

"""Render a policy document as Markdown, or diff two versions line by line and word by word."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

from gardien.policy.document import PolicyDocument, Section


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def section_markdown(section: Section) -> list[str]:
    lines = [f"## {section.heading}", ""]
    for paragraph in section.paragraphs:
        lines += [paragraph, ""]
    if section.items:
        lines += [f"- {item}" for item in section.items] + [""]
    if section.table:
        table = section.table
        lines.append("| " + " | ".join(_md_cell(h) for h in table.headers) + " |")
        lines.append("|" + "---|" * len(table.headers))
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
        lines.append("")
    for paragraph in section.after:
        lines += [paragraph, ""]
    return lines


def to_markdown(document: PolicyDocument, sections: list[Section] | None = None) -> str:
    lines = [f"# {document.title}", ""]
    for section in document.sections if sections is None else sections:
        lines += section_markdown(section)
    return "\n".join(lines).rstrip() + "\n"


Kind = Literal["same", "added", "removed"]


@dataclass(frozen=True)
class Fragment:
    kind: Kind
    text: str


@dataclass(frozen=True)
class DiffLine:
    kind: Literal["same", "added", "removed", "changed"]
    fragments: list[Fragment]


def _word_diff(old: str, new: str) -> list[Fragment]:
    old_words, new_words = old.split(" "), new.split(" ")
    fragments: list[Fragment] = []
    matcher = difflib.SequenceMatcher(a=old_words, b=new_words, autojunk=False)
    for op, a1, a2, b1, b2 in matcher.get_opcodes():
        if op == "equal":
            fragments.append(Fragment("same", " ".join(old_words[a1:a2])))
            continue
        if a2 > a1:
            fragments.append(Fragment("removed", " ".join(old_words[a1:a2])))
        if b2 > b1:
            fragments.append(Fragment("added", " ".join(new_words[b1:b2])))
    return fragments


def diff(old: str, new: str, context: int = 1) -> list[DiffLine | None]:
    """Changed lines with ``context`` lines around them; ``None`` marks skipped unchanged text."""
    old_lines = [line for line in old.splitlines() if line.strip()]
    new_lines = [line for line in new.splitlines() if line.strip()]
    matcher = difflib.SequenceMatcher(a=old_lines, b=new_lines, autojunk=False)
    result: list[DiffLine | None] = []
    for group in matcher.get_grouped_opcodes(context):
        if result:
            result.append(None)
        for op, a1, a2, b1, b2 in group:
            if op == "equal":
                result += [DiffLine("same", [Fragment("same", t)]) for t in old_lines[a1:a2]]
            elif op == "replace" and a2 - a1 == b2 - b1:
                for o, n in zip(old_lines[a1:a2], new_lines[b1:b2], strict=True):
                    result.append(DiffLine("changed", _word_diff(o, n)))
            else:
                result += [DiffLine("removed", [Fragment("removed", t)]) for t in old_lines[a1:a2]]
                result += [DiffLine("added", [Fragment("added", t)]) for t in new_lines[b1:b2]]
    return result

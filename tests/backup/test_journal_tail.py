"""The erasure journal numbers its entries from the lines written since it last looked: two
writers (two processes) interleave without a gap or a repeat, and a journal replaced by a
restore is read again from its start."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from gardien.backup.journal import DONE, ERASURE, ErasureJournal
from gardien.deps import State
from gardien.storage.subjects import SubjectIdentity

AT = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def _erase(journal: ErasureJournal, number: int) -> int:
    subject = SubjectIdentity(email=f"person{number}@example.org")
    return journal.append(ERASURE, subject, AT).seq


def test_two_writers_number_entries_one_after_the_other(state: State, tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    first, second = ErasureJournal(path), ErasureJournal(path)
    seqs = [_erase(first, 0), _erase(first, 1)]
    first.mark(seqs[-1], DONE)  # marks are lines too, never numbered
    seqs += [_erase(second, 2), _erase(first, 3), _erase(second, 4)]
    assert seqs == [1, 2, 3, 4, 5]
    assert [e.seq for e in ErasureJournal(path).entries()] == [1, 2, 3, 4, 5]


def test_a_journal_replaced_by_a_restore_is_read_again(state: State, tmp_path: Path) -> None:
    path, kept = tmp_path / "journal.jsonl", tmp_path / "kept.jsonl"
    journal = ErasureJournal(path)
    _erase(journal, 0)
    shutil.copy(path, kept)  # the journal as an older copy had it: one entry
    _erase(journal, 1), _erase(journal, 2)
    shutil.copy(kept, tmp_path / "restored.jsonl")
    (tmp_path / "restored.jsonl").replace(path)  # a new file in its place, shorter
    assert _erase(journal, 3) == 2

"""Read a register file into a validated ``Register``, or every problem with its line number.

YAML is composed into nodes first so each value keeps the line it came from; schema errors
(pydantic) and rule errors (``validation``) are both reported as ``file:line: path: reason``.
Sections are validated one by one (list sections item by item) so a broken activity does not
hide the problems of the others.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, cast

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from gardien.register.schema import Register

PathKey = tuple[str | int, ...]

MAX_REGISTER_BYTES = 2_000_000


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int
    path: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}: {where}{self.reason}"


class RegisterError(Exception):
    """The register is invalid; ``problems`` lists every reason, in file order."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.line, p.path))
        super().__init__("\n".join(str(p) for p in self.problems))


def format_path(path: PathKey) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


@dataclass
class Located:
    """Plain data from the YAML file plus the line of every path in it."""

    file: str
    data: Any
    lines: dict[PathKey, int] = field(default_factory=dict)

    def line_of(self, path: PathKey) -> int:
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return 1

    def problem(self, path: PathKey, reason: str) -> Problem:
        return Problem(self.file, self.line_of(path), format_path(path), reason)


class _Constructor(yaml.SafeLoader):
    pass


_FastLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SCALARS = _Constructor("")


def _plain(node: yaml.Node, path: PathKey, located: Located, problems: list[Problem]) -> Any:
    located.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                problems.append(
                    Problem(
                        located.file,
                        key_node.start_mark.line + 1,
                        format_path(path),
                        "keys must be plain strings",
                    )
                )
                continue
            if key in result:
                problems.append(
                    Problem(
                        located.file,
                        key_node.start_mark.line + 1,
                        format_path((*path, key)),
                        "duplicate key",
                    )
                )
                continue
            result[key] = _plain(value_node, (*path, key), located, problems)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _plain(item, (*path, index), located, problems) for index, item in enumerate(node.value)
        ]
    try:
        return _SCALARS.construct_object(node, deep=True)
    except yaml.constructor.ConstructorError as exc:
        problems.append(
            Problem(
                located.file,
                node.start_mark.line + 1,
                format_path(path),
                f"unreadable value: {exc.problem}",
            )
        )
        return None


def read_located(path: Path | str) -> tuple[Located, list[Problem]]:
    """Parse YAML keeping line numbers; syntax errors come back as problems, not exceptions."""
    file = str(path)
    located = Located(file=file, data=None)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        return located, [Problem(file, 1, "", f"cannot read the register: {exc.strerror}")]
    if len(raw) > MAX_REGISTER_BYTES:
        return located, [Problem(file, 1, "", "the register is larger than 2 MB")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return located, [Problem(file, 1, "", "the register is not UTF-8 text")]
    try:
        documents = list(yaml.compose_all(text, Loader=_FastLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        return located, [Problem(file, line, "", f"malformed YAML: {exc.problem or exc}")]
    except yaml.YAMLError as exc:
        return located, [Problem(file, 1, "", f"malformed YAML: {exc}")]
    if len(documents) != 1 or documents[0] is None:
        return located, [Problem(file, 1, "", "the register must be exactly one YAML document")]
    problems: list[Problem] = []
    located.data = _plain(documents[0], (), located, problems)
    if not isinstance(located.data, dict):
        problems.append(Problem(file, 1, "", "the register must be a mapping of sections"))
    return located, problems


def _schema_reason(error: Any) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown key (not part of the register format; see docs/register.md)"
    message = str(error["msg"])
    return message[0].lower() + message[1:] if message else kind


@cache
def _adapter(item_type: Any) -> TypeAdapter[Any]:
    return TypeAdapter(item_type)


def _schema_problems(located: Located) -> Iterator[Problem]:
    data = cast(dict[str, Any], located.data)
    known = Register.model_fields
    for key in data:
        if key not in known:
            yield located.problem((key,), "unknown section (not part of the register format)")
    for name, info in known.items():
        if name not in data:
            if info.is_required():
                yield located.problem((), f"required section {name!r} is missing")
            continue
        value = data[name]
        items: list[tuple[PathKey, Any, Any]]
        annotation = info.annotation
        origin = getattr(annotation, "__origin__", None)
        if origin is list and isinstance(value, list):
            item_type = annotation.__args__[0]  # type: ignore[union-attr]
            items = [((name, i), item, item_type) for i, item in enumerate(value)]
            if not value and info.metadata:
                yield located.problem((name,), "must not be empty")
        else:
            items = [((name,), value, annotation)]
        for path, item, item_type in items:
            try:
                _adapter(item_type).validate_python(item)
            except ValidationError as exc:
                for error in exc.errors():
                    yield located.problem((*path, *error["loc"]), _schema_reason(error))


def load_register(path: Path | str) -> Register:
    """Load and validate a register; raise ``RegisterError`` listing every problem."""
    from gardien.register.validation import rule_problems

    located, problems = read_located(path)
    if problems:
        raise RegisterError(problems)
    problems = list(_schema_problems(located))
    if problems:
        raise RegisterError(problems)
    register = Register.model_validate(located.data)
    problems = list(rule_problems(register, located))
    if problems:
        raise RegisterError(problems)
    return register


def snapshot(register: BaseModel) -> dict[str, Any]:
    """The register as plain JSON-able data, for policy versions and exports."""
    return register.model_dump(mode="json")

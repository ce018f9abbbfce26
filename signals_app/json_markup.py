"""A signal's JSON, pretty-printed as HTML with the failing fields marked and explained.

Paths follow the validator's (SPEC §5): keys joined by `.`, array positions as `[i]`, a
missing field at the path where it belongs. A finding whose field is absent from the record
is shown as a ghost line inside its parent object, so "missing currency" is visible where
the currency should have been.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

INDENT = "  "


@dataclass(frozen=True)
class Marked:
    path: str
    severity: str
    code: str
    message: str


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _parent_and_key(path: str) -> tuple[str, str] | None:
    """'signalContent.currency' -> ('signalContent', 'currency'); array items have no key."""
    if path.endswith("]"):
        return None
    parent, _, key = path.rpartition(".")
    return parent, key


class _Renderer:
    def __init__(self, findings: Iterable[Marked]) -> None:
        self.by_path: dict[str, list[Marked]] = defaultdict(list)
        for finding in findings:
            self.by_path[finding.path].append(finding)
        self.shown: set[str] = set()
        self.lines: list[str] = []

    def line(self, depth: int, text: str, path: str | None) -> None:
        marks = self.by_path.get(path, []) if path is not None else []
        body = INDENT * depth + text
        if not marks:
            self.lines.append(f'<span class="jl">{body}</span>')
            return
        assert path is not None
        self.shown.add(path)
        severity = "error" if any(m.severity == "error" for m in marks) else "warning"
        notes = "".join(
            f'<span class="jnote">{escape(m.code)}: {escape(m.message)}</span>' for m in marks
        )
        self.lines.append(
            f'<span class="jl jl-{severity}" data-path="{escape(path)}">{body}{notes}</span>'
        )

    def value(self, value: Any, path: str, depth: int, prefix: str, comma: str) -> None:
        if isinstance(value, dict):
            self.line(depth, f"{prefix}{{", path)
            items = list(value.items())
            missing = self._missing_children(path, value)
            for index, (key, item) in enumerate(items):
                last = index == len(items) - 1 and not missing
                key_text = f'<span class="jk">{escape(json.dumps(str(key)))}</span>: '
                self.value(item, _child(path, str(key)), depth + 1, key_text, "" if last else ",")
            for key in missing:
                child = _child(path, key)
                self.line(
                    depth + 1,
                    f'<span class="jk">{escape(json.dumps(key))}</span>: '
                    '<span class="jmissing">missing</span>',
                    child,
                )
            self.line(depth, "}" + comma, None)
        elif isinstance(value, list):
            self.line(depth, f"{prefix}[", path)
            for index, item in enumerate(value):
                last = index == len(value) - 1
                self.value(item, f"{path}[{index}]", depth + 1, "", "" if last else ",")
            self.line(depth, "]" + comma, None)
        else:
            text = escape(json.dumps(value, ensure_ascii=False))
            self.line(depth, f'{prefix}<span class="jv">{text}</span>{comma}', path)

    def _missing_children(self, path: str, value: dict[str, Any]) -> list[str]:
        missing = []
        for finding_path in self.by_path:
            split = _parent_and_key(finding_path)
            if split and split[0] == path and split[1] not in value and split[1]:
                missing.append(split[1])
        return sorted(missing)


def json_with_marks(record: Any, findings: Iterable[Marked]) -> tuple[SafeString, list[Marked]]:
    """The record as marked-up HTML lines, and the findings that could not be placed on a
    line (shown beside it by the template)."""
    findings = list(findings)
    renderer = _Renderer(findings)
    renderer.value(record, "", 0, "", "")
    unplaced = [f for f in findings if f.path not in renderer.shown]
    # Each line is a block of its own (so a marked line is highlighted across the width).
    return mark_safe("".join(renderer.lines)), unplaced  # every part is escaped

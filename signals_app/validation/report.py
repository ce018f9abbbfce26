"""Reports of a validation run: the NDJSON contract of SPEC §5 and a text report for people.

Findings are buffered (in a spooled temporary file, so memory stays bounded) and written
only once the whole file has been read: a file that turns out unreadable halfway prints
its one error message and nothing else.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

import orjson

from signals_app.validation.findings import Finding, Summary, path_pattern

EXAMPLES_PER_GROUP = 3
_SPOOL_IN_MEMORY = 8 * 1024**2


@dataclass
class FindingBuffer:
    """Collects findings as NDJSON lines, plus the first examples of each field and code."""

    spool: IO[str] = field(
        # Closed by close(); it outlives any one with-block.
        default_factory=lambda: tempfile.SpooledTemporaryFile(  # noqa: SIM115
            max_size=_SPOOL_IN_MEMORY, mode="w+", encoding="utf-8"
        )
    )

    def add(self, finding: Finding) -> None:
        self.spool.write(orjson.dumps(finding.as_dict(), option=orjson.OPT_APPEND_NEWLINE).decode())

    __call__ = add  # a finding sink itself (validate.LineSink)

    def add_json_lines(self, text: str) -> None:
        """Findings already written as NDJSON lines, each ending in a newline."""
        self.spool.write(text)

    def examples(self) -> dict[tuple[str, str, str], list[Finding]]:
        """The first findings of each field, code and severity (for the text report)."""
        groups: dict[tuple[str, str, str], list[Finding]] = {}
        for finding in self.findings():
            group = groups.setdefault(
                (path_pattern(finding.path), finding.code, finding.severity), []
            )
            if len(group) < EXAMPLES_PER_GROUP:
                group.append(finding)
        return groups

    def lines(self) -> Iterator[str]:
        self.spool.seek(0)
        yield from self.spool

    def findings(self) -> Iterator[Finding]:
        for line in self.lines():
            data = orjson.loads(line)
            yield Finding(
                data["signal"],
                data.get("line"),
                data["path"],
                data["severity"],
                data["code"],
                data["message"],
            )

    def close(self) -> None:
        self.spool.close()


def write_ndjson(out: IO[str], buffer: FindingBuffer, summary: Summary) -> None:
    # The lines as they are, a block of whole lines at a time (Django's OutputWrapper ends
    # every write with a newline of its own unless it ends with one).
    buffer.spool.seek(0)
    carry = ""
    while chunk := buffer.spool.read(1024**2):
        cut = chunk.rfind("\n") + 1
        if cut:
            out.write(carry + chunk[:cut])
            carry = chunk[cut:]
        else:
            carry += chunk
    if carry:
        out.write(carry)
    out.write(json.dumps({"summary": summary.as_dict()}) + "\n")


def _where(finding: Finding, noun: str = "signal") -> str:
    if finding.line is None:
        return f"{noun} {finding.signal}"
    return f"{noun} {finding.signal} (line {finding.line})"


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" + ("" if count == 1 else "s")


def write_text(
    out: IO[str],
    buffer: FindingBuffer,
    summary: Summary,
    *,
    file_name: str,
    tier: str,
    destination: str = "connect",
) -> None:
    """A report that reads like a person wrote it: the verdict, the problems grouped by
    field and code with counts and first examples, then each finding. `destination`
    "attentive": the records are Attentive custom events (the tier means nothing there)."""
    w = out.write
    events = destination == "attentive"
    noun, verdict = (
        ("event", "Attentive would refuse") if events else ("signal", "Connect would discard")
    )
    if events:
        w(f"{file_name}: {_plural(summary.signals, noun)} checked as Attentive custom events.\n")
    else:
        w(f"{file_name}: {_plural(summary.signals, noun)} checked for a {tier} app key.\n")
    if summary.signals == 0:
        w(f"The file holds no {noun}s.\n")
    elif summary.rejected == 0 and summary.warnings == 0:
        w(f"Every {noun} is valid; nothing to fix.\n")
    else:
        w(
            f"{summary.valid:,} valid, {summary.rejected:,} rejected "
            f"({verdict} them), with {_plural(summary.errors, 'error')} and "
            f"{_plural(summary.warnings, 'warning')}.\n"
        )
    if summary.contact_key_only:
        w(
            f"Note: {_plural(summary.contact_key_only, 'signal')} identify the contact by "
            "contactKey only; Connect discards such a signal when no contact has that key.\n"
        )
    if not summary.by_field:
        return

    w("\nProblems by field, most frequent first:\n")
    examples = buffer.examples()
    groups = sorted(
        summary.by_field.items(), key=lambda item: (item[0][2] != "error", -item[1], item[0])
    )
    for (path, code, severity), count in groups:
        w(f"\n  {path or f'(the whole {noun})'}: {code} {severity}, {_plural(count, 'time')}\n")
        for example in examples.get((path, code, severity), []):
            w(f"    e.g. {_where(example, noun)}: {example.message}\n")

    w("\nAll findings:\n")
    for finding in buffer.findings():
        w(
            f"  {_where(finding, noun)} {finding.severity} {finding.code} at "
            f"{finding.path or f'(the whole {noun})'}: {finding.message}\n"
        )

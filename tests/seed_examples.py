"""The vendor's own examples from the seed documents (SPEC "Sources"), as Python records.

Every JSON example and every `createSignals` mutation of `000_…` (current edition, file and
API forms), `001_…` (the older edition: bare signalContent JSON, wrapped here in an
envelope) and `002_…` (the API page, 11 types) is extracted, with the placeholders the
documents ask the reader to fill (`{YOUR_APP_KEY}`, the obfuscated `[email protected]`)
filled with real-looking values (SPEC §4, §9).

`signals_from_mutation` turns the `signals:` argument of a GraphQL `createSignals`
mutation into plain Python dicts; it does not depend on the seeds and can be reused.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from graphql import parse
from graphql.language import (
    BooleanValueNode,
    EnumValueNode,
    FieldNode,
    FloatValueNode,
    IntValueNode,
    ListValueNode,
    NullValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    StringValueNode,
    TokenKind,
    ValueNode,
)
from graphql.language.lexer import Lexer
from graphql.language.source import Source

APP_KEY = "a3f1c9e07b2d4e6f8a1b3c5d7e9f0a2b"  # stands for {YOUR_APP_KEY}
EMAIL = "jane.doe@example.com"  # stands for the obfuscated "[email protected]"
CONTACT_KEY = "AAUN-132417508"  # the documents' own contact key
SESSION_ID = "OOII97671461464332a1111"

# The documents obfuscate e-mail addresses; 000 writes a NO-BREAK SPACE inside.
_OBFUSCATED_EMAIL = re.compile(r"\[email[ \u00a0]protected\]")

PRO_TYPES = frozenset({"addToCart", "identification", "order"})
ALL_TYPES = frozenset(
    {
        "addToCart",
        "browseAbandonment",
        "cartAbandonment",
        "error",
        "identification",
        "onSiteSearch",
        "order",
        "pageView",
        "productConfiguration",
        "productView",
        "richMediaInteraction",
    }
)

# Phone numbers, e-mail addresses and contact keys the seeds use (002 and Attentive's 004).
SEED_CONTACT_KEYS = ("AAUN-132417508",)
SEED_EMAILS = (EMAIL, "test@gmail.com")
SEED_SMS = ("+37455190000", "+13115552368")
SEED_WHATSAPP = ("+14035549090",)

Form = Literal["json", "graphql"]


@dataclass(frozen=True, slots=True)
class SeedExample:
    """One example signal of a seed document."""

    document: str  # "000", "001" or "002"
    form: Form
    number: int  # 0-based position among the document's examples of this form
    record: Any  # as written (000's JSON examples are {"signal": envelope} wrappers)

    @property
    def envelope(self) -> dict[str, Any]:
        record = self.record
        if "signal" in record and "signalContent" not in record:
            record = record["signal"]
        assert isinstance(record, dict)
        return record

    @property
    def signal_type(self) -> str:
        return str(self.envelope["signalContent"]["signalType"])

    @property
    def id(self) -> str:
        return f"{self.document}-{self.form}-{self.signal_type}"


# --- GraphQL ------------------------------------------------------------------------


def graphql_value(node: ValueNode) -> Any:
    """A GraphQL literal as a plain Python value (variables are not allowed here)."""
    if isinstance(node, ObjectValueNode):
        return {f.name.value: graphql_value(f.value) for f in node.fields}
    if isinstance(node, ListValueNode):
        return [graphql_value(v) for v in node.values]
    if isinstance(node, StringValueNode | EnumValueNode):
        return node.value
    if isinstance(node, IntValueNode):
        return int(node.value)
    if isinstance(node, FloatValueNode):
        return float(node.value)
    if isinstance(node, BooleanValueNode):
        return node.value
    if isinstance(node, NullValueNode):
        return None
    raise ValueError(f"not a GraphQL literal: {node.kind}")


def signals_from_mutation(text: str) -> list[dict[str, Any]]:
    """The signals of a `createSignals(signals: [...])` mutation, as dicts.

    A single object instead of a list is one signal (GraphQL's list input coercion).
    Raises ValueError when the document holds no createSignals call with a literal
    `signals` argument.
    """
    document = parse(text)
    for definition in document.definitions:
        if not isinstance(definition, OperationDefinitionNode):
            continue
        for selection in definition.selection_set.selections:
            if not isinstance(selection, FieldNode) or selection.name.value != "createSignals":
                continue
            for argument in selection.arguments or ():
                if argument.name.value != "signals":
                    continue
                value = graphql_value(argument.value)
                signals = value if isinstance(value, list) else [value]
                if not all(isinstance(signal, dict) for signal in signals):
                    raise ValueError("createSignals(signals:) must hold objects")
                return signals
    raise ValueError("no createSignals(signals: ...) in this GraphQL document")


def _graphql_end(text: str, start: int) -> int:
    """Where the GraphQL document starting at `start` ends: its first brace is closed.
    The lexer knows strings, so a brace inside one does not count."""
    lexer = Lexer(Source(text[start:]))
    depth = 0
    while True:
        token = lexer.advance()
        if token.kind is TokenKind.EOF:
            raise ValueError(f"unterminated GraphQL document at offset {start}")
        if token.kind is TokenKind.BRACE_L:
            depth += 1
        elif token.kind is TokenKind.BRACE_R:
            depth -= 1
            if depth == 0:
                return start + token.end


# --- Seed documents -----------------------------------------------------------------


# A copy of the vendor documents lives in the repository, so a clone anywhere has them.
SEEDS_DIR = Path(__file__).resolve().parent.parent / "docs" / "seeds"


def seeds_dir() -> Path | None:
    """The folder of the vendor documents: $CONNECTADMIN_SEEDS_DIR, else docs/seeds/."""
    candidates = [SEEDS_DIR]
    if os.environ.get("CONNECTADMIN_SEEDS_DIR"):
        candidates.insert(0, Path(os.environ["CONNECTADMIN_SEEDS_DIR"]))
    for candidate in candidates:
        if (candidate / DOCUMENTS["000"]).is_file():
            return candidate
    return None


DOCUMENTS = {
    "000": "000_52941cb8d94cdec2.txt",
    "001": "001_ea80a35cef2d89cb.txt",
    "002": "002_398dcf7cac8cd0dd.txt",
}


def fill_placeholders(text: str) -> str:
    return _OBFUSCATED_EMAIL.sub(EMAIL, text).replace("{YOUR_APP_KEY}", APP_KEY)


def _examples_of(document: str, text: str) -> list[SeedExample]:
    examples: list[SeedExample] = []
    counts = {"json": 0, "graphql": 0}
    for form, value in blocks(text):
        if document == "001" and form == "json":
            # The older edition shows bare signalContent: wrap it as 000's file form does.
            value = {
                "signal": {
                    "sessionId": SESSION_ID,
                    "appKey": APP_KEY,
                    "identifiableAttributes": {"contactKey": CONTACT_KEY},
                    "signalContent": value,
                }
            }
        examples.append(SeedExample(document, form, counts[form], value))
        counts[form] += 1
    return examples


def blocks(text: str) -> Iterator[tuple[Form, Any]]:
    """The examples of one document in order: ("json", value) for each JSON block that
    starts a line with `{`, ("graphql", signal) for each signal of a mutation."""
    decoder = json.JSONDecoder()
    position = 0
    while position < len(text):
        newline = text.find("\n", position)
        line_end = len(text) if newline < 0 else newline + 1
        stripped = text[position:line_end].strip()
        end = line_end
        if stripped.startswith("mutation"):
            end = _graphql_end(text, position)
            for signal in signals_from_mutation(text[position:end]):
                yield "graphql", signal
        elif stripped == "{":
            value, end = decoder.raw_decode(text, position)
            yield "json", value
        position = max(end, line_end)


@cache
def seed_examples() -> tuple[SeedExample, ...]:
    """Every example of 000, 001 and 002, placeholders filled; empty without the seeds."""
    folder = seeds_dir()
    if folder is None:
        return ()
    examples: list[SeedExample] = []
    for document, name in DOCUMENTS.items():
        text = fill_placeholders((folder / name).read_text(encoding="utf-8"))
        examples.extend(_examples_of(document, text))
    return tuple(examples)


# --- Minimal clean records ----------------------------------------------------------

# Each type with its required fields only (SPEC §3), values in the documents' style.
MINIMAL_CONTENT: dict[str, dict[str, Any]] = {
    "addToCart": {
        "currency": "USD",
        "itemQuantity": 2,
        "productId": "AC-PNT-WHT-SM",
        "productName": "AWESOME COLORS Interior Paint Satin Finish 32 Fl Oz",
        "unitPrice": 39.99,
    },
    "browseAbandonment": {"currency": "USD"},
    "cartAbandonment": {"abandonedCartValue": 159.97, "currency": "USD"},
    "error": {"errorText": "This promo code is invalid.", "errorType": "user"},
    "identification": {"identifierName": "email", "identifierValue": EMAIL},
    "onSiteSearch": {"numberOfResults": 9, "searchTerm": "paint with satin finish"},
    "order": {"currency": "USD", "orderId": "02937-2025-XIA"},
    "pageView": {"url": "https://www.example.com/painting-and-decorating/tools/"},
    "productConfiguration": {
        "currency": "USD",
        "productId": "AC-DBL-BRSH-6",
        "productName": "AWESOME COLORS Double Thick Chip Paint Brush",
    },
    "productView": {
        "productId": "AC-DBL-BRSH-6",
        "productName": "AWESOME COLORS Double Thick Chip Paint Brush",
    },
    "richMediaInteraction": {"mediaId": "jhaf6r76a"},
}

# One item of orderedItems / abandonedItems with its required fields only.
MINIMAL_ITEM: dict[str, Any] = {
    "productId": "AC-DBL-BRSH-6",
    "productName": "AWESOME COLORS Double Thick Chip Paint Brush",
    "unitPrice": 9.49,
}


def minimal_record(signal_type: str, **content: Any) -> dict[str, Any]:
    """A clean envelope of `signal_type` with only its required fields (a fresh copy),
    content fields overridden or added by keyword."""
    return {
        "appKey": APP_KEY,
        "identifiableAttributes": {"contactKey": CONTACT_KEY},
        "signalContent": {
            "signalType": signal_type,
            **json.loads(json.dumps(MINIMAL_CONTENT[signal_type])),
            **content,
        },
    }

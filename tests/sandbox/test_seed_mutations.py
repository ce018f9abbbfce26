"""Every example mutation in the vendor documents is accepted verbatim, once the
placeholders the documents ask the reader to fill are filled."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.conftest import require
from tests.sandbox.support import ATTENTIVE_KEY, ULTIMATE_KEY, Sandbox, make_key
from tests.seed_examples import SEEDS_DIR

SEEDS = SEEDS_DIR
FILLED_EMAIL = "jane.doe@example.com"


def _balanced_block(text: str, start: int) -> str:
    """From `start` (the word `mutation`) to the brace closing the operation, skipping
    braces inside strings (the documents write "{YOUR_APP_KEY}")."""
    depth = 0
    in_string = False
    i = start
    while i < len(text):
        char = text[i]
        if in_string:
            if char == "\\":
                i += 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
        i += 1
    raise AssertionError(f"unbalanced mutation at offset {start}")


def seed_mutations() -> list[tuple[str, str, dict[str, Any] | None]]:
    """(seed file, mutation text, variables) for every example mutation."""
    found: list[tuple[str, str, dict[str, Any] | None]] = []
    for path in sorted(SEEDS.glob("*.txt")):
        text = path.read_text()
        # `mutation {`, `mutation Name {` or `mutation Name(...)`, not prose ("Use the
        # createCustomEvent mutation for ...").
        for match in re.finditer(r"(?m)^[ \t]*(mutation)\s*(\w+\s*)?[({]", text):
            start = match.start(1)
            block = _balanced_block(text, start)
            variables = None
            if "$" in block.split("{", 1)[0]:
                # The Attentive example gives its variables as JSON after the mutation.
                after = text[start + len(block) :]
                json_start = after.index("{", after.index("Example Input Variable"))
                variables = json.loads(_balanced_block(after, json_start))
            found.append((path.name, block, variables))
    return found


def fill(text: str, public_key: str) -> str:
    return (
        text.replace("{YOUR_APP_KEY}", "seed-app-key")
        .replace("YOUR_PUBLIC_KEY", public_key)
        .replace("[email\xa0protected]", FILLED_EMAIL)
        .replace("[email protected]", FILLED_EMAIL)
    )


def test_the_seed_files_hold_the_expected_examples() -> None:
    require(SEEDS.is_dir(), f"the vendor seed documents at {SEEDS}")
    mutations = seed_mutations()
    by_kind = {
        kind: sum(kind in block for _, block, _ in mutations)
        for kind in ("createSignals", "exportSignals", "updatePublicKeyForConnectUser",
                     "createCustomEvent")
    }  # fmt: skip
    # 000: 9 types, 001: 9, 002: 11; 003: 4 exports + the key; 004: one custom event.
    assert by_kind == {
        "createSignals": 29,
        "exportSignals": 4,
        "updatePublicKeyForConnectUser": 1,
        "createCustomEvent": 1,
    }


def test_every_seed_mutation_is_accepted_verbatim(sandbox: Sandbox, tmp_path: Path) -> None:
    require(SEEDS.is_dir(), f"the vendor seed documents at {SEEDS}")
    public_key = make_key(tmp_path).public_line
    accepted = 0
    for name, block, variables in seed_mutations():
        query = fill(block, public_key)
        assert "[email" not in query and "YOUR_" not in query
        attentive = "createCustomEvent" in query
        body: dict[str, Any] = {"query": query}
        if variables is not None:
            body["variables"] = json.loads(fill(json.dumps(variables), public_key))
        headers = (
            {"Authorization": f"Bearer {ATTENTIVE_KEY}"}
            if attentive
            else {"x-api-key": ULTIMATE_KEY}
        )
        response = sandbox.http.post(
            "/v1/graphql" if attentive else "/graphql", json=body, headers=headers
        )
        assert response.status_code == 200, (name, query[:200], response.text)
        result = response.json()
        assert "errors" not in result, (name, query[:300], result)
        data = result["data"]
        if "createSignals" in data:
            sent = query.count("signalContent")
            assert len(data["createSignals"]["signalIds"]) == sent
        if "exportSignals" in data:
            assert data["exportSignals"]["fileFormat"] == "CSV"
        if "createCustomEvent" in data:
            event = data["createCustomEvent"]
            # The document's own example response.
            assert event["occurredAt"] == "2021-03-30T14:38:29Z"
            assert event["properties"] == '{ "customKey":"customValue" }'
            assert event["user"]["externalIdentifiers"]["customIdentifiers"][0]["name"] == (
                "customIdentifierName"
            )
        accepted += 1
    assert accepted == 35
    counts = sandbox.inspect()["counts"]
    assert counts["signals"] == 29
    assert counts["attentive_events"] == 1
    assert len(counts["by_type"]) == 11

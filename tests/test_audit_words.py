"""The audit trail reads as sentences, without the codes the app stores."""

from __future__ import annotations

import pytest

from signals_app.audit_words import SENTENCES, describe


@pytest.mark.parametrize(
    ("action", "detail", "sentence"),
    [
        ("import.uploaded",
         {"original_name": "a.ndjson", "size_bytes": 2048, "app_key": "k1", "mode": "test"},
         "Uploaded a.ndjson (2 KiB) for app key k1, to send as a test."),
        ("import.validated", {"signals": 1000, "valid": 950, "rejected": 50,
                              "findings_not_stored": 0},
         "Checked 1,000 signals: 950 valid, 50 rejected."),
        ("import.send", {"mode": "live", "signals": 950, "batches": 2, "skipped": 50},
         "Started sending 950 signals live in 2 batches, skipping 50 rejected signals."),
        ("import.send", {"mode": "test", "signals": 1, "batches": 1, "skipped": 0},
         "Started sending 1 signal as a test in 1 batch."),
        ("import.fixes_applied",
         {"source_name": "a.ndjson", "fixes": ["currency_case|signalContent.currency"]},
         "Applied 1 fix to a.ndjson: currency case on signalContent.currency."),
        ("batch.resend", {"batch": 3, "previous_state": "unknown", "previous_http_status": None,
                          "reason": "not in Connect"},
         "Resent batch 3: its outcome was unknown. Reason given: “not in Connect”."),
    ],
)  # fmt: skip
def test_each_action_reads_as_a_sentence(action: str, detail: dict, sentence: str) -> None:
    assert describe(action, detail) == sentence


def test_no_sentence_shows_the_stored_codes() -> None:
    detail = {"fixes": ["a_b|x.y"], "skipped": 0, "reason": "", "starts": 3, "batches": [4, 5],
              "previous_state": "failed", "mode": "test"}  # fmt: skip
    for action in SENTENCES:
        text = describe(action, detail)
        assert "|" not in text and "import." not in text and "_" not in text, (action, text)
        assert "skipped:" not in text and text.endswith((".", "”.")), (action, text)


def test_an_action_without_words_still_reads() -> None:
    assert describe("export.fetched", {"rows": 5, "error": ""}) == "Export fetched (rows: 5)"

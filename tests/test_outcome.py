"""The status rules: every combination of an import's state and its ledger's counters
reads as exactly one status, and each status word has one colour."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from signals_app.outcome import import_outcome


@dataclass
class Figures:
    status: str
    mode: str = "test"
    valid: int = 1000
    rejected: int = 0
    sent: int = 0
    accepted: int = 0
    failed: int = 0
    unknown: int = 0
    cancel_requested: bool = False


def completed(sent: int, failed: int, unknown: int, mode: str = "test") -> Figures:
    return Figures("completed", mode, sent=sent, accepted=sent, failed=failed, unknown=unknown)


@pytest.mark.parametrize(
    ("figures", "key", "label", "tone"),
    [
        (completed(1000, 0, 0), "completed", "Completed", "good"),
        (completed(0, 1000, 0), "refused", "Refused", "bad"),
        (completed(500, 500, 0), "partial", "Completed with failures", "bad"),
        # The case: 0 of 1,000 accepted, 500 failed, 500 unknown.
        (completed(0, 500, 500), "attention", "Needs attention", "warn"),
        (completed(500, 0, 500), "attention", "Needs attention", "warn"),
        (completed(0, 0, 1000), "attention", "Needs attention", "warn"),
        (Figures("validated"), "validated", "Ready to send", "ready"),
        (Figures("validated", valid=0, rejected=7), "nothing", "Nothing to send", "bad"),
        (Figures("sending"), "sending", "Sending", "busy"),
        (Figures("sending", cancel_requested=True), "sending", "Cancelling", "busy"),
        (Figures("uploaded"), "uploaded", "Checking the file", "busy"),
        (Figures("validating"), "validating", "Checking the file", "busy"),
        (Figures("unreadable"), "unreadable", "Unreadable", "bad"),
        (Figures("failed"), "failed", "Failed", "bad"),
        (Figures("cancelled", sent=500, accepted=500), "cancelled", "Cancelled", "muted"),
    ],
)
def test_each_state_reads_as_one_status(figures: Figures, key: str, label: str, tone: str) -> None:
    outcome = import_outcome(figures)
    assert (outcome.key, outcome.label, outcome.tone) == (key, label, tone)
    assert outcome.headline.endswith(".")


def test_every_ledger_combination_has_one_status_and_green_only_when_all_went() -> None:
    tones: dict[str, set[str]] = {}
    statuses = ("uploaded", "validating", "validated", "unreadable", "sending", "completed",
                "cancelled", "failed")  # fmt: skip
    for status, mode, sent, failed, unknown, cancel in itertools.product(
        statuses, ("test", "live"), (0, 500), (0, 500), (0, 500), (False, True)
    ):
        figures = Figures(status, mode, sent=sent, accepted=sent, failed=failed,
                          unknown=unknown, cancel_requested=cancel)  # fmt: skip
        outcome = import_outcome(figures)
        tones.setdefault(outcome.label, set()).add(outcome.tone)
        if outcome.tone == "good":  # green says every signal meant to go was accepted
            assert status == "completed" and failed == unknown == 0 and sent
        if status == "completed" and (failed or unknown):
            assert outcome.tone in ("bad", "warn") and outcome.next_step
            assert not outcome.fully_accepted
    assert all(len(t) == 1 for t in tones.values()), tones  # one colour per word
    assert tones["Completed"] == {"good"} and tones["Ready to send"] == {"ready"}


def test_the_next_step_is_worded_for_who_can_take_it() -> None:
    unknown = completed(500, 0, 500)
    assert "ask ops to resend" in import_outcome(unknown).next_step
    assert "resend them below" in import_outcome(unknown, can_resend=True).next_step
    assert "Check in Connect" in import_outcome(unknown).next_step


@dataclass
class BothFigures(Figures):
    """An import sent to Connect and to an Attentive account (or Attentive alone)."""

    send_to_connect: bool = True
    attentive_account_id: int | None = 1
    attentive_sent: int = 0
    attentive_failed: int = 0
    attentive_unknown: int = 0


def both(connect: tuple[int, int, int], attentive: tuple[int, int, int], **kw: object) -> Figures:
    (sent, failed, unknown), (a_sent, a_failed, a_unknown) = connect, attentive
    return BothFigures(
        "completed", "live", sent=sent, accepted=sent, failed=failed, unknown=unknown,
        attentive_sent=a_sent, attentive_failed=a_failed, attentive_unknown=a_unknown,
        **kw,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.mark.parametrize(
    ("figures", "key", "label", "tone", "headline"),
    [
        (both((11, 0, 0), (11, 0, 0)), "completed", "Completed", "good",
         "Connect accepted 11 signals; Attentive accepted 11 events."),
        # A vendor that refused everything is said first, in red, whatever the other took.
        (both((11, 0, 0), (0, 11, 0)), "refused", "Refused by Attentive", "bad",
         "Attentive refused all 11 events; Connect accepted 11 signals."),
        (both((11, 0, 0), (9, 0, 2)), "attention", "Needs attention", "warn",
         "Connect accepted 11 signals; Attentive accepted 9 events, the outcome of 2 is "
         "unknown."),
        (both((11, 0, 0), (10, 1, 0)), "partial", "Completed with failures", "bad",
         "Connect accepted 11 signals; Attentive accepted 10 events, refused 1."),
        (both((0, 0, 0), (11, 0, 0), send_to_connect=False), "completed", "Completed", "good",
         "Attentive accepted 11 events."),
    ],
)  # fmt: skip
def test_an_import_sent_to_attentive_reads_each_destination(
    figures: Figures, key: str, label: str, tone: str, headline: str
) -> None:
    outcome = import_outcome(figures)
    assert (outcome.key, outcome.label, outcome.tone, outcome.headline) == (
        key, label, tone, headline
    )  # fmt: skip
    assert "Attentive" in import_outcome(BothFigures("sending", "live")).headline

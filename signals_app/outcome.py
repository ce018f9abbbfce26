"""What an import's state means to the person looking at it: one status word, one colour,
a sentence saying what happened and one saying what to do next.

The stored status says where the work is (validated, sending, completed, ...); "completed"
only means every batch has a final state. Whether Connect took the signals is in the
ledger's counters: a completed test with nothing accepted is not a success, and a batch of
unknown outcome needs a person. Every page shows an import through `import_outcome`, so a
status word and its colour mean one thing everywhere:

    good   (green)  every signal meant to go was accepted
    bad    (red)    signals failed, were refused, or the import could not go on
    warn   (amber)  the outcome of some signals is unknown: a person must look
    ready  (blue, outlined)  waiting for a person's choice (send, fix)
    busy   (blue)   the app is working on it
    muted  (grey)   stopped by a person
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class ImportFigures(Protocol):
    """The fields of SignalImport the outcome reads (a model instance, or a stand-in)."""

    status: str
    mode: str
    valid: int
    rejected: int
    sent: int
    accepted: int
    failed: int
    unknown: int
    cancel_requested: bool


@dataclass(frozen=True, slots=True)
class Outcome:
    key: str  # CSS class suffix (status-<key>) and a stable name for tests
    label: str
    tone: str  # good / bad / warn / ready / busy / muted
    headline: str  # what happened, in a sentence
    next_step: str  # what to do next ("" when nothing is left to do)

    @property
    def fully_accepted(self) -> bool:
        return self.key == "completed"


def _n(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


@dataclass(frozen=True, slots=True)
class _Delivery:
    """What one destination took: Connect's signals or Attentive's events."""

    vendor: str
    unit: str
    sent: int
    failed: int
    unknown: int

    def says(self) -> str:
        said = f"{self.vendor} accepted {_n(self.sent, self.unit)}"
        if self.failed:
            said += f", refused {self.failed:,}"
        if self.unknown:
            said += f", the outcome of {self.unknown:,} is unknown"
        return said


def _deliveries(imp: ImportFigures) -> list[_Delivery]:
    """The destinations of an import sent to Attentive too (or instead); [] for Connect
    alone (whose wording is import_outcome's own)."""
    if getattr(imp, "attentive_account_id", None) is None:
        return []
    found = []
    if getattr(imp, "send_to_connect", True):
        found.append(_Delivery("Connect", "signal", imp.accepted, imp.failed, imp.unknown))
    found.append(
        _Delivery(
            "Attentive",
            "event",
            getattr(imp, "attentive_sent", 0),
            getattr(imp, "attentive_failed", 0),
            getattr(imp, "attentive_unknown", 0),
        )
    )
    return found


def _both_completed(
    deliveries: list[_Delivery], resend: str, rejected: int, unit: str = "signal"
) -> Outcome:
    """A completed import sent to Attentive (and maybe Connect): a destination that
    refused everything is said first, in red, whatever the other took."""
    refused = [d for d in deliveries if d.failed and not d.sent and not d.unknown]
    headline = "; ".join(d.says() for d in deliveries) + "."
    if refused:
        names = " and ".join(d.vendor for d in refused)
        said = [f"{d.vendor} refused all {_n(d.failed, d.unit)}" for d in refused]
        said += [d.says() for d in deliveries if d not in refused]
        return Outcome(
            "refused",
            f"Refused by {names}",
            "bad",
            "; ".join(said) + ".",
            f"Read the batches' errors below; fix the cause, then {resend}.",
        )
    if any(d.unknown for d in deliveries):
        return Outcome(
            "attention",
            "Needs attention",
            "warn",
            headline,
            "Check at the vendor whether the batches of unknown outcome arrived; only then "
            f"{resend}: a resend of what did arrive doubles it.",
        )
    if any(d.failed for d in deliveries):
        return Outcome(
            "partial",
            "Completed with failures",
            "bad",
            headline,
            f"Read the failed batches' errors below, then {resend}.",
        )
    if not any(d.sent for d in deliveries):
        return Outcome(
            "nothing",
            "Nothing sent",
            "bad",
            "Nothing was sent: the import had none left to send.",
            f"Upload the file again if {unit}s are missing.",
        )
    skipped = f" ({_n(rejected, 'rejected ' + unit)} skipped)" if rejected else ""
    return Outcome("completed", "Completed", "good", headline[:-1] + skipped + ".", "")


def import_outcome(imp: ImportFigures, *, can_resend: bool = False) -> Outcome:
    """The outcome of `imp`; `can_resend` (ops and admins) words the next step as theirs."""
    status = imp.status
    resend = "resend them below" if can_resend else "ask ops to resend them"
    target = "Connect (test)" if imp.mode == "test" else "Connect, live"
    deliveries = _deliveries(imp)
    # A file of Attentive custom events (SignalImport.kind) holds events, not signals.
    unit = "event" if getattr(imp, "kind", "signals") == "events" else "signal"
    if deliveries:
        target = " and ".join(
            "Connect, live" if d.vendor == "Connect" else "Attentive" for d in deliveries
        )
    if status in ("uploaded", "validating"):
        return Outcome(
            "validating" if status == "validating" else "uploaded",
            "Checking the file",
            "busy",
            f"The file is being checked, {unit} by {unit}.",
            "Wait for the check to finish; nothing has been sent.",
        )
    if status == "unreadable":
        return Outcome(
            "unreadable",
            "Unreadable",
            "bad",
            "The file could not be read, so nothing in it was checked or sent.",
            "Read the reason below, correct the file and upload it again.",
        )
    if status == "validated":
        if imp.valid == 0:
            return Outcome(
                "nothing",
                "Nothing to send",
                "bad",
                f"Every {unit} of the file was rejected ({_n(imp.rejected, unit)}).",
                "See the problems by field below, correct the file and upload it again.",
            )
        return Outcome(
            "validated",
            "Ready to send",
            "ready",
            f"{_n(imp.valid, 'valid ' + unit)} ready"
            + (f"; {_n(imp.rejected, unit)} rejected." if imp.rejected else "."),
            "Check the problems below, then send them to Attentive."
            if unit == "event"
            else "Check the problems below, then send as a test or live.",
        )
    if status == "sending":
        if imp.cancel_requested:
            return Outcome(
                "sending",
                "Cancelling",
                "busy",
                "Stopping after the batches on their way.",
                "Wait: the result of each batch is recorded.",
            )
        return Outcome(
            "sending",
            "Sending",
            "busy",
            f"Sending {_n(imp.valid, unit)} to {target} in batches.",
            "You can leave this page: sending goes on.",
        )
    if status == "failed":
        return Outcome(
            "failed",
            "Failed",
            "bad",
            "The import stopped before its work was done"
            + (
                f"; Connect accepted {_n(imp.accepted, 'signal')} before that." if imp.sent else "."
            ),
            "Read the reason below; ask an administrator if it names the worker.",
        )
    if status == "cancelled" and deliveries:
        return Outcome(
            "cancelled",
            "Cancelled",
            "muted",
            "Cancelled: " + "; ".join(d.says() for d in deliveries) + " before that.",
            "Upload the file again to send the rest.",
        )
    if status == "cancelled":
        return Outcome(
            "cancelled",
            "Cancelled",
            "muted",
            f"Cancelled after Connect accepted {_n(imp.accepted, 'signal')}"
            + (f"; the outcome of {_n(imp.unknown, 'signal')} is unknown." if imp.unknown else "."),
            "Upload the file again to send the rest." if imp.valid > imp.sent else "",
        )
    # completed: every batch has a final state; what did Connect (and Attentive) take?
    if deliveries:
        return _both_completed(deliveries, resend, imp.rejected, unit)
    if imp.unknown:
        return Outcome(
            "attention",
            "Needs attention",
            "warn",
            f"Connect accepted {_n(imp.accepted, 'signal')}; the outcome of "
            f"{_n(imp.unknown, 'signal')} is unknown"
            + (f" and {_n(imp.failed, 'signal')} failed." if imp.failed else "."),
            "Check in Connect whether the batches of unknown outcome arrived; only then "
            f"{resend}: a resend of a batch that did arrive doubles it.",
        )
    if imp.failed and not imp.sent:
        return Outcome(
            "refused",
            "Refused",
            "bad",
            f"Connect accepted none of the {_n(imp.failed, 'signal')}: every batch failed.",
            f"Read the batches' errors below; fix the cause, then {resend}.",
        )
    if imp.failed:
        return Outcome(
            "partial",
            "Completed with failures",
            "bad",
            f"Connect accepted {_n(imp.accepted, 'signal')}; {_n(imp.failed, 'signal')} failed.",
            f"Read the failed batches' errors below, then {resend}.",
        )
    if not imp.sent:
        return Outcome(
            "nothing",
            "Nothing sent",
            "bad",
            "No signal was sent: the import had none left to send.",
            "Upload the file again if signals are missing in Connect.",
        )
    skipped = f" ({_n(imp.rejected, 'rejected signal')} skipped)" if imp.rejected else ""
    return Outcome(
        "completed",
        "Completed",
        "good",
        f"Connect accepted all {_n(imp.accepted, 'signal')}{skipped}.",
        "",
    )

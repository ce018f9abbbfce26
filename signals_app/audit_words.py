"""The audit trail in people's words: one sentence per recorded action, from the detail the
action stored (signals_app.models.audit). An action not described here still reads, as its
name and details, never as nothing."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from signals_app.validation.sizes import human_size


def _n(count: Any, word: str, plural: str = "") -> str:
    number = len(count) if isinstance(count, list | tuple) else int(count or 0)
    return f"{number:,} {word if number == 1 else plural or word + 's'}"


def _mode(detail: Mapping[str, Any]) -> str:
    return "live" if detail.get("mode") == "live" else "as a test"


def _fix(key: str) -> str:
    """ "currency_case|signalContent.currency" -> "currency_case on signalContent.currency"."""
    code, _, path = str(key).partition("|")
    return f"{code.replace('_', ' ')} on {path}" if path else code.replace("_", " ")


def _uploaded(d: Mapping[str, Any]) -> str:
    size = f" ({human_size(int(d['size_bytes']))})" if d.get("size_bytes") else ""
    key = f" for app key {d['app_key']}" if d.get("app_key") else ""
    return f"Uploaded {d.get('original_name', 'the file')}{size}{key}, to send {_mode(d)}."


def _validated(d: Mapping[str, Any]) -> str:
    sentence = (
        f"Checked {_n(d.get('signals'), 'signal')}: {int(d.get('valid') or 0):,} valid, "
        f"{int(d.get('rejected') or 0):,} rejected."
    )
    if d.get("findings_not_stored"):
        sentence += f" {_n(d['findings_not_stored'], 'finding')} not kept (too many)."
    return sentence


def _send(d: Mapping[str, Any]) -> str:
    sentence = f"Started sending {_n(d.get('signals'), 'signal')} {_mode(d)}"
    sentence += f" in {_n(d.get('batches'), 'batch', 'batches')}"
    if d.get("skipped"):
        sentence += f", skipping {_n(d['skipped'], 'rejected signal')}"
    return sentence + "."


def _resend(d: Mapping[str, Any]) -> str:
    was = {"unknown": "its outcome was unknown", "failed": "it had failed"}.get(
        str(d.get("previous_state")), f"it was {d.get('previous_state')}"
    )
    sentence = f"Resent batch {d.get('batch')}: {was}"
    if d.get("previous_http_status"):
        sentence += f" (HTTP {d['previous_http_status']})"
    sentence += "."
    if d.get("reason"):
        sentence += f" Reason given: “{d['reason']}”."
    return sentence


def _fixes_applied(d: Mapping[str, Any]) -> str:
    fixes = [_fix(key) for key in d.get("fixes") or []]
    listed = f": {'; '.join(fixes)}." if fixes else "."
    return f"Applied {_n(len(fixes), 'fix', 'fixes')} to {d.get('source_name', 'the file')}{listed}"


def _unknown_after_restart(d: Mapping[str, Any]) -> str:
    batches = d.get("batches") or []
    listed = ", ".join(str(b) for b in batches) if isinstance(batches, list) else str(batches)
    return (
        f"Batch {listed} marked outcome unknown: the worker sending it stopped while it was "
        "on its way, so Connect may have it."
    )


def _gave_up(what: str) -> Callable[[Mapping[str, Any]], str]:
    return lambda d: (
        f"Gave up {what} after {_n(d.get('starts'), 'start')} in a row that ended with the "
        "worker stopping."
    )


SENTENCES: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "import.uploaded": _uploaded,
    "import.validated": _validated,
    "import.send": _send,
    "import.cancel": lambda d: "Asked to cancel the send.",
    "import.promote": lambda d: "Promoted the test import to live: the same validated signals.",
    "import.send_resumed": lambda d: "Sending resumed after its worker stopped.",
    "import.send_refused": lambda d: (
        "A live send was refused"
        + (f": {str(d['reason']).rstrip('.')}." if d.get("reason") else ".")
    ),
    "import.fixes_applied": _fixes_applied,
    "import.fixes_abandoned": _gave_up("writing the corrected file"),
    "import.validation_abandoned": _gave_up("checking the file"),
    "batch.resend": _resend,
    "auth.login": lambda d: "Signed in.",
    "auth.logout": lambda d: "Signed out.",
    "auth.login_failed": lambda d: (
        f"A sign-in as “{d.get('username', '')}” failed: wrong user name or password."
    ),
    "export.submitted": lambda d: f"Asked Connect for the export “{d.get('job_name', '')}”.",
    "export.fetched": lambda d: (
        f"Fetched {d.get('path', 'the file')} into the archive: "
        f"{_n(d.get('rows'), 'row')}, {human_size(int(d.get('bytes') or 0))}."
    ),
    "export.fetch_failed": lambda d: (
        f"Fetching {d.get('path', 'the file')} failed: "
        f"{str(d.get('error') or d.get('reason') or 'see the job').rstrip('.')}."
    ),
    "export.archive_removed": lambda d: (
        f"Removed {d.get('path', 'the file')} from the archive when its retention ended."
    ),
    "batch.unknown_after_restart": _unknown_after_restart,
}


def describe(action: str, detail: Mapping[str, Any] | None) -> str:
    detail = detail or {}
    sentence = SENTENCES.get(action)
    if sentence is not None:
        return sentence(detail)
    shown = ", ".join(f"{key}: {value}" for key, value in detail.items() if value not in ("", None))
    return f"{action.replace('.', ' ').replace('_', ' ').capitalize()}" + (
        f" ({shown})" if shown else ""
    )

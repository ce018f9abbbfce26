"""The audit trail in people's words: one sentence per recorded action, from the detail the
action stored (signals_app.models.audit). An action not described here still reads, as its
name and details, never as nothing; tests/test_audit_words.py fails when an action recorded
in the code has no sentence here. No sentence shows a secret (an API key, a webhook's
address): only what the detail holds for people, and never a field named as a secret."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from signals_app.validation.sizes import human_size


def _n(count: Any, word: str, plural: str = "") -> str:
    number = len(count) if isinstance(count, list | tuple) else int(count or 0)
    return f"{number:,} {word if number == 1 else plural or word + 's'}"


def _and(items: list[str]) -> str:
    """ "a", "a and b", "a, b and c"."""
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


def _mode(detail: Mapping[str, Any]) -> str:
    return "live" if detail.get("mode") == "live" else "as a test"


def _fix(key: str) -> str:
    """ "currency_case|signalContent.currency" -> "currency_case on signalContent.currency"."""
    code, _, path = str(key).partition("|")
    return f"{code.replace('_', ' ')} on {path}" if path else code.replace("_", " ")


def _uploaded(d: Mapping[str, Any]) -> str:
    size = f" ({human_size(int(d['size_bytes']))})" if d.get("size_bytes") else ""
    key = f" for app key {d['app_key']}" if d.get("app_key") else ""
    if d.get("attentive_account"):
        key = f" of custom events for the Attentive account “{d['attentive_account']}”"
    return f"Uploaded {d.get('original_name', 'the file')}{size}{key}, to send {_mode(d)}."


def _unit(d: Mapping[str, Any]) -> str:
    """What the import's records are: Attentive custom events, or (before the kind was
    recorded, and by default) signals."""
    return "event" if d.get("kind") == "events" else "signal"


def _validated(d: Mapping[str, Any]) -> str:
    sentence = (
        f"Checked {_n(d.get('signals'), _unit(d))}: {int(d.get('valid') or 0):,} valid, "
        f"{int(d.get('rejected') or 0):,} rejected."
    )
    if d.get("findings_not_stored"):
        sentence += f" {_n(d['findings_not_stored'], 'finding')} not kept (too many)."
    return sentence


def _send(d: Mapping[str, Any]) -> str:
    sentence = f"Started sending {_n(d.get('signals'), _unit(d))} {_mode(d)}"
    if d.get("attentive"):
        to = "Connect and " if d.get("connect", True) else ""
        sentence += f" to {to}the Attentive account “{d['attentive']}”"
    sentence += f" in {_n(d.get('batches'), 'batch', 'batches')}"
    if d.get("skipped"):
        sentence += f", skipping {_n(d['skipped'], 'rejected ' + _unit(d))}"
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


def _send_ended(how: str) -> Callable[[Mapping[str, Any]], str]:
    def sentence(d: Mapping[str, Any]) -> str:
        said = f"{how}: "
        if d.get("connect", True):
            said += f"Connect accepted {int(d.get('accepted') or 0):,} of the "
            said += f"{_n(d.get('sent'), 'signal')} sent"
            if d.get("failed"):
                said += f", {int(d['failed']):,} failed"
            if d.get("unknown"):
                said += f", the outcome of {int(d['unknown']):,} is unknown"
        if "attentive_sent" in d:
            said += "; " if d.get("connect", True) else ""
            said += f"Attentive took {_n(d.get('attentive_sent'), 'event')}"
            if d.get("attentive_failed"):
                said += f", refused {int(d['attentive_failed']):,}"
            if d.get("attentive_unknown"):
                said += f", the outcome of {int(d['attentive_unknown']):,} is unknown"
        return said + "."

    return sentence


def _reason(d: Mapping[str, Any], *keys: str) -> str:
    """ ": the reason." from the first of `keys` the detail holds, else "."."""
    for key in keys:
        if d.get(key):
            return f": {str(d[key]).rstrip('.')}."
    return "."


def _named(thing: str, name: Any) -> str:
    """ "the export “daily-orders”", or "the export" when it has no name."""
    return f"{thing} “{name}”" if name else thing


# --- settings: accounts, app keys, users ---------------------------------------------------

# What a field of a settings form is called; a secret is named, never shown.
_FIELD_WORDS = {
    "api_key": "API key",
    "graphql_endpoint": "GraphQL endpoint",
    "connect_user_email": "Connect user",
    "rate_limit": "rate limit",
    "active": "state",
}
_SECRET_FIELDS = frozenset({"api_key", "password", "private_key", "secret", "token", "url"})
_FLAG_WORDS = {"True": "active", "False": "deactivated"}


def _changes(d: Mapping[str, Any]) -> str:
    """ "the region from eu to us and the state from active to deactivated"."""
    changes = d.get("changes")
    if not isinstance(changes, Mapping) or not changes:
        return ""
    said = []
    for field, change in changes.items():
        name = _FIELD_WORDS.get(field, str(field).replace("_", " "))
        if field in _SECRET_FIELDS or not isinstance(change, Mapping):
            said.append(f"the {name}")
            continue
        before, after = (
            _FLAG_WORDS.get(str(change.get(edge)), str(change.get(edge) or "")) or "(none)"
            for edge in ("before", "after")
        )
        said.append(f"the {name} from {before} to {after}")
    return _and(said)


def _changed(what: Callable[[Mapping[str, Any]], str]) -> Callable[[Mapping[str, Any]], str]:
    def sentence(d: Mapping[str, Any]) -> str:
        changes = _changes(d)
        return f"Changed {what(d)}" + (f": {changes}." if changes else ".")

    return sentence


def _account_created(d: Mapping[str, Any]) -> str:
    facts = [
        f"region {d['region']}" if d.get("region") else "",
        f"endpoint {d['endpoint']}" if d.get("endpoint") else "",
        f"Connect user {d['connect_user_email']}" if d.get("connect_user_email") else "",
    ]
    listed = ", ".join(fact for fact in facts if fact)
    return (
        f"Added the Connect account {d.get('name', '')}".rstrip()
        + (f" ({listed})" if listed else "")
        + ", its API key stored encrypted."
    )


_CONNECTION_WORDS = {
    "ok": "it works",
    "wrong_key": "Connect refused the API key",
    "unreachable": "Connect could not be reached",
    "tls": "the secure connection failed",
    "unexpected": "Connect gave an unexpected answer",
}


def _connection_tested(d: Mapping[str, Any]) -> str:
    outcome = _CONNECTION_WORDS.get(str(d.get("outcome")), "no outcome recorded")
    facts = [f"HTTP {d['http_status']}" if d.get("http_status") else ""]
    facts.append(f"{int(d['elapsed_ms']):,} ms" if d.get("elapsed_ms") is not None else "")
    shown = ", ".join(fact for fact in facts if fact)
    return f"Tested the connection to Connect: {outcome}" + (f" ({shown})." if shown else ".")


def _attentive(d: Mapping[str, Any]) -> str:
    return f"the Attentive account {d['name']}" if d.get("name") else "the Attentive account"


def _attentive_created(d: Mapping[str, Any]) -> str:
    facts = [
        f"endpoint {d['endpoint']}" if d.get("endpoint") else "",
        f"at most {int(d['rate_limit']):,} requests/s" if d.get("rate_limit") else "",
    ]
    listed = ", ".join(fact for fact in facts if fact)
    return (
        f"Added {_attentive(d)}"
        + (f" ({listed})" if listed else "")
        + ", its API key stored encrypted."
    )


_ATTENTIVE_TEST_WORDS = {
    "ok": "Attentive accepted the API key",
    "wrong_key": "Attentive refused the API key",
    "unreachable": "the endpoint could not be reached",
    "rate_limited": "the key was at its rate limit",
    "tls": "the secure connection failed",
    "unexpected": "the endpoint gave an unexpected answer",
}


def _attentive_tested(d: Mapping[str, Any]) -> str:
    outcome = _ATTENTIVE_TEST_WORDS.get(str(d.get("outcome")), "no outcome recorded")
    facts = [f"HTTP {d['http_status']}" if d.get("http_status") else ""]
    facts.append(f"{int(d['elapsed_ms']):,} ms" if d.get("elapsed_ms") is not None else "")
    shown = ", ".join(fact for fact in facts if fact)
    return f"Tested the connection of {_attentive(d)}: {outcome}" + (
        f" ({shown})." if shown else "."
    )


def _app_key_created(d: Mapping[str, Any]) -> str:
    sentence = f"Added the app key {d.get('key', '')}".rstrip()
    if d.get("label"):
        sentence += f" “{d['label']}”"
    if d.get("tier"):
        sentence += f" ({str(d['tier']).capitalize()})"
    if d.get("account"):
        sentence += f" to {d['account']}"
    return sentence + (", deactivated." if d.get("active") is False else ".")


def _app_key(d: Mapping[str, Any]) -> str:
    return f"the app key {d['key']}" if d.get("key") else "the app key"


def _invited(d: Mapping[str, Any]) -> str:
    sentence = f"Invited {d.get('username') or 'a user'}"
    if d.get("email"):
        sentence += f" ({d['email']})"
    if d.get("role"):
        sentence += f" as {d['role']}"
    if d.get("send_live") and d.get("role") != "admin":
        sentence += ", allowed to send live imports"
    return sentence + "."


# --- exports, SFTP keys and host keys ------------------------------------------------------


def _of_account(d: Mapping[str, Any]) -> str:
    return f" of {d['account']}" if d.get("account") else ""


def _for_account(d: Mapping[str, Any]) -> str:
    return f" for {d['account']}" if d.get("account") else ""


def _ssh_key(d: Mapping[str, Any]) -> str:
    return f"the SSH key {d['key']}" if d.get("key") else "the SSH key"


def _host(d: Mapping[str, Any]) -> str:
    if not d.get("host"):
        return "SFTP host"
    return f"SFTP host {d['host']}" + (f":{d['port']}" if d.get("port") else "")


def _host_key(d: Mapping[str, Any]) -> str:
    key = f"the key {d['fingerprint']}" if d.get("fingerprint") else "the key"
    return f"{key} of the {_host(d)}"


def _host_key_approved(d: Mapping[str, Any]) -> str:
    sentence = f"Approved {_host_key(d)}"
    replaces = d.get("replaces") or []
    if replaces:
        listed = ", ".join(str(r) for r in replaces) if isinstance(replaces, list) else replaces
        sentence += f", in place of {listed}"
    return sentence + "."


def _schedule(what: str) -> Callable[[Mapping[str, Any]], str]:
    def sentence(d: Mapping[str, Any]) -> str:
        said = f"{what} {_named('the export schedule', d.get('schedule'))}{_of_account(d)}"
        return said + (f": {str(d['runs']).rstrip('.')}." if d.get("runs") else ".")

    return sentence


# --- alerts ------------------------------------------------------------------------------

_TOPIC_WORDS = {
    "import": "failed imports",
    "export": "failed or skipped export runs",
    "host_key": "changed SFTP host keys",
    "worker": "silent workers",
    "scheduler": "a silent scheduler",
}


def _topics(topics: Any) -> str:
    """The topic codes of an alert channel in words; none: every topic."""
    if not topics or not isinstance(topics, list | tuple):
        return "every topic"
    words = [_TOPIC_WORDS.get(str(t), str(t).replace("_", " ")) for t in topics]
    return _and(words)


def _paused(d: Mapping[str, Any]) -> str:
    return " (turned off)" if d.get("active") is False else ""


def _dropped(d: Mapping[str, Any]) -> str:
    n = d.get("unsent_dropped")
    return f"; {_n(n, 'message')} not sent yet dropped." if n else "."


def _person(d: Mapping[str, Any], fallback: str) -> str:
    """ "mia (mia@example.com)", "mia@example.com", or `fallback`."""
    user, email = d.get("user") or d.get("name"), d.get("email")
    if user and email:
        return f"{user} ({email})"
    return str(user or email or fallback)


def _subscribed(d: Mapping[str, Any]) -> str:
    who = _person(d, "the user")
    if "topics_before" in d:
        return (
            f"Changed the alert e-mails to {who} from {_topics(d['topics_before'])} to "
            f"{_topics(d.get('topics'))}."
        )
    return f"Subscribed {who} to alert e-mails for {_topics(d.get('topics'))}."


def _webhook(d: Mapping[str, Any]) -> str:
    # The host only: the whole address of a Slack or Teams webhook is a secret.
    host = f" to {d['url_host']}" if d.get("url_host") else ""
    return _named("the webhook", d.get("name")) + host


def _webhook_changed(d: Mapping[str, Any]) -> str:
    stored = d.get("changes")
    changes: Mapping[str, Any] = stored if isinstance(stored, Mapping) else {}
    said = []
    if isinstance(changes.get("name"), Mapping) and changes["name"].get("before"):
        said.append(f"renamed from “{changes['name']['before']}”")
    if isinstance(changes.get("topics"), Mapping):
        said.append(f"now for {_topics(changes['topics'].get('after'))}")
    if isinstance(changes.get("active"), Mapping):
        said.append("turned on" if changes["active"].get("after") else "turned off")
    if d.get("url_replaced") or "url_host" in changes:
        said.append("its address replaced")
    return f"Changed {_webhook(d)}" + (f": {_and(said)}." if said else ".")


_WEBHOOK_TEST_WORDS = {
    "ok": "it took it",
    "refused": "it refused it",
    "unreachable": "it could not be reached",
    "timeout": "it did not answer in time",
}


def _webhook_tested(d: Mapping[str, Any]) -> str:
    sentence = f"Sent a test alert to {_webhook(d)}"
    outcome = _WEBHOOK_TEST_WORDS.get(str(d.get("outcome")), "")
    facts = [f"HTTP {d['status']}" if d.get("status") else ""]
    facts.append(f"{int(d['elapsed_ms']):,} ms" if d.get("elapsed_ms") is not None else "")
    shown = ", ".join(fact for fact in facts if fact)
    if outcome:
        sentence += f": {outcome}"
    return sentence + (f" ({shown})." if shown else ".")


SENTENCES: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "import.uploaded": _uploaded,
    "import.validated": _validated,
    "import.send": _send,
    "import.cancel": lambda d: "Asked to cancel the send.",
    "import.promote": lambda d: "Promoted the test import to live: the same validated signals.",
    "import.send_resumed": lambda d: "Sending resumed after its worker stopped.",
    "import.send_refused": lambda d: "A send was refused" + _reason(d, "reason"),
    "import.completed": _send_ended("Sending finished"),
    "import.cancelled": _send_ended("Sending stopped as asked"),
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
    "export.ready": lambda d: (
        f"{_named('The export', d.get('job_name'))} is ready on SFTP"
        + (f" as {d['path']}" if d.get("path") else "")
        + ": fetching it into the archive."
    ),
    "export.failed": lambda d: (
        f"{_named('The export', d.get('job_name'))} failed" + _reason(d, "reason")
    ),
    "export.refused": lambda d: (
        f"Connect refused {_named('the export', d.get('job_name'))}{_for_account(d)}"
        + _reason(d, "error")
    ),
    "export.refused_limit": lambda d: (
        f"An export{_for_account(d)} was refused" + _reason(d, "reason")
    ),
    "export.schedule_created": _schedule("Created"),
    "export.schedule_changed": _schedule("Changed"),
    "export.schedule_paused": _schedule("Paused"),
    "export.schedule_resumed": _schedule("Resumed"),
    "export.schedule_deleted": _schedule("Deleted"),
    "batch.unknown_after_restart": _unknown_after_restart,
    # Settings
    "account.created": _account_created,
    "account.updated": _changed(lambda d: "the account"),
    "account.key_replaced": lambda d: (
        "Replaced the account's API key; the new one is stored encrypted."
    ),
    "account.connection_tested": _connection_tested,
    "account.attentive_created": _attentive_created,
    "account.attentive_updated": _changed(_attentive),
    "account.attentive_key_replaced": lambda d: (
        f"Replaced the API key of {_attentive(d)}; the new one is stored encrypted."
    ),
    "account.attentive_tested": _attentive_tested,
    "account.attentive_deleted": lambda d: f"Deleted {_attentive(d)} and its stored API key.",
    "appkey.created": _app_key_created,
    "appkey.updated": _changed(_app_key),
    "appkey.deactivated": lambda d: (
        f"Deactivated {_app_key(d)}: it can no longer be chosen for a new import or send."
    ),
    "appkey.reactivated": lambda d: f"Reactivated {_app_key(d)}.",
    "user.invited": _invited,
    "user.invite_resent": lambda d: (
        "Sent a new invitation link" + (f" to {d['email']}." if d.get("email") else ".")
    ),
    "user.password_set": lambda d: "Set a password from the invitation link and signed in.",
    "user.role_changed": lambda d: (
        f"Changed the role from {d.get('before') or 'none'} to {d.get('after') or 'none'}."
    ),
    "user.email_changed": lambda d: (
        f"Changed the e-mail address from {d.get('before') or 'none'} to "
        f"{d.get('after') or 'none'}."
    ),
    "user.send_live_granted": lambda d: "Allowed the user to send live imports.",
    "user.send_live_revoked": lambda d: "Took away the user's permission to send live imports.",
    "user.deactivated": lambda d: "Deactivated the user: they can no longer sign in.",
    "user.reactivated": lambda d: "Reactivated the user: they may sign in again.",
    # SFTP: the account's SSH keys and the hosts' keys
    "ssh_key.generated": lambda d: f"Generated {_ssh_key(d)}{_for_account(d)}.",
    "ssh_key.imported": lambda d: f"Imported {_ssh_key(d)}{_for_account(d)}.",
    "ssh_key.registered": lambda d: f"Registered {_ssh_key(d)}{_of_account(d)} with Connect.",
    "ssh_key.register_failed": lambda d: (
        f"Registering {_ssh_key(d)} with Connect failed" + _reason(d, "error")
    ),
    "ssh_key.logon_ok": lambda d: (
        f"Logged on to SFTP with {_ssh_key(d)}"
        + (f": {_n(d['files'], 'file')} in the export folder." if "files" in d else ".")
    ),
    "ssh_key.logon_failed": lambda d: (
        f"Logging on to SFTP with {_ssh_key(d)} failed" + _reason(d, "error")
    ),
    "ssh_key.rotated": lambda d: (
        f"Rotated the SSH key{_of_account(d)}"
        + (f": {d['key']} is now in use." if d.get("key") else ".")
    ),
    "sftp.host_key_changed": lambda d: (
        f"The {_host(d)} offered a different key"
        + (f" ({d['offered']})" if d.get("offered") else "")
        + (f" where {d['approved']} is approved" if d.get("approved") else "")
        + ": nothing is downloaded from it until an admin approves the new key."
    ),
    "sftp.host_key_approved": _host_key_approved,
    "sftp.host_key_rejected": lambda d: f"Rejected {_host_key(d)}.",
    # Alerts (the object is the alert channel)
    "alerts.subscribed": _subscribed,
    "alerts.unsubscribed": lambda d: (
        f"Unsubscribed {_person(d, 'the user')} from alert e-mails" + _dropped(d)
    ),
    "alerts.subscriber_removed": lambda d: (
        f"Stopped the alert e-mails to {_person(d, 'a user')}" + _dropped(d)
    ),
    "alerts.webhook_added": lambda d: (
        f"Added {_webhook(d)}, for {_topics(d.get('topics'))}{_paused(d)}."
    ),
    "alerts.webhook_changed": _webhook_changed,
    "alerts.webhook_removed": lambda d: f"Removed {_webhook(d)}" + _dropped(d),
    "alerts.webhook_tested": _webhook_tested,
}


def describe(action: str, detail: Mapping[str, Any] | None) -> str:
    detail = detail or {}
    sentence = SENTENCES.get(action)
    if sentence is not None:
        return sentence(detail)
    shown = ", ".join(
        f"{key}: {value}"
        for key, value in detail.items()
        if value not in ("", None) and key not in _SECRET_FIELDS
    )
    return f"{action.replace('.', ' ').replace('_', ' ').capitalize()}" + (
        f" ({shown})" if shown else ""
    )

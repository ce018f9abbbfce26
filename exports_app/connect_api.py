"""Connect's GraphQL calls for exports (SPEC §7–§8): `exportSignals`,
`updatePublicKeyForConnectUser`, and the job-status queries (`dataJob`, `exportUsage`)
that only the sandbox answers — Connect publishes none, so callers treat "no answer" as
"unknown" and watch the SFTP folder instead.

Every call ends in an `Answer`: data, or a sentence saying what went wrong (never an
exception for what the network or Connect says).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from signals_app.connect_client import Timeouts

EXPORT_SIGNALS: Final = """
mutation ExportSignals($jobName: String!, $export: ExportInput!,
                       $notifications: [NotificationInput!], $to: ExportTargetInput) {
  exportSignals(jobName: $jobName, export: $export, notifications: $notifications, to: $to) {
    dataJobId path fileFormat
  }
}"""
UPDATE_PUBLIC_KEY: Final = """
mutation UpdatePublicKey($publicKey: String!) {
  updatePublicKeyForConnectUser(publicKey: $publicKey) { publicKey }
}"""
DATA_JOB: Final = """
query DataJob($id: String!) {
  dataJob(dataJobId: $id) { status path rows sizeBytes error expiresAt }
}"""
EXPORT_USAGE: Final = "query { exportUsage { day jobs bytes rows jobLimit byteLimit rowLimit } }"


@dataclass(frozen=True, slots=True)
class Answer:
    data: dict[str, Any] = field(default_factory=dict)
    error: str = ""  # for a person: what Connect or the network said
    code: str = ""  # Connect's extensions.code, when it gave one
    field: str = ""  # Connect's extensions.field: the argument it refused
    reached: bool = True  # False: no answer came (the call may not have arrived)

    @property
    def ok(self) -> bool:
        return not self.error


class ConnectExports:
    def __init__(self, *, endpoint: str, api_key: str, timeouts: Timeouts | None = None) -> None:
        self._http = httpx.Client(
            headers={"x-api-key": api_key, "Content-Type": "application/json"},
            timeout=(timeouts or Timeouts(read=30.0)).as_httpx(),
            follow_redirects=False,
        )
        self.endpoint = endpoint

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ConnectExports:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def export_signals(
        self,
        *,
        job_name: str,
        signal_types: list[str],
        start: str,
        end: str,
        notifications: list[str],
        to: dict[str, Any] | None,
    ) -> Answer:
        variables: dict[str, Any] = {
            "jobName": job_name,
            "export": {
                "signals": {
                    "signalTypes": signal_types,
                    "timestampStart": start,
                    "timestampEnd": end,
                }
            },
            "notifications": [{"channel": "EMAIL", "destination": e} for e in notifications]
            or None,
            "to": {"sftp": to} if to else None,
        }
        return self._call(EXPORT_SIGNALS, variables, "exportSignals")

    def update_public_key(self, public_key: str) -> Answer:
        return self._call(
            UPDATE_PUBLIC_KEY, {"publicKey": public_key}, "updatePublicKeyForConnectUser"
        )

    def data_job(self, data_job_id: str) -> Answer:
        """The job's status where the endpoint has the (sandbox's) query; `error` with
        code "NO_STATUS_QUERY" where it has none."""
        return self._call(DATA_JOB, {"id": data_job_id}, "dataJob", optional=True)

    def usage(self) -> Answer:
        return self._call(EXPORT_USAGE, None, "exportUsage", optional=True)

    def _call(
        self, query: str, variables: dict[str, Any] | None, name: str, *, optional: bool = False
    ) -> Answer:
        body: dict[str, Any] = {"query": query}
        if variables is not None:
            body["variables"] = variables
        try:
            response = self._http.post(self.endpoint, json=body)
        except httpx.TimeoutException:
            return Answer(error="Connect did not answer in time", reached=False)
        except httpx.HTTPError as exc:
            return Answer(error=f"Connect could not be reached ({exc})", reached=False)
        try:
            payload = response.json()
        except ValueError:
            payload = None
        errors = payload.get("errors") if isinstance(payload, dict) else None
        if errors and isinstance(errors, list) and isinstance(errors[0], dict):
            first = errors[0]
            extensions = first.get("extensions") or {}
            message = str(first.get("message") or "an error without a message")
            if optional and response.status_code == 400 and "Cannot query field" in message:
                return Answer(error="this endpoint has no status query", code="NO_STATUS_QUERY")
            return Answer(
                error=message,
                code=str(extensions.get("code") or ""),
                field=str(extensions.get("field") or ""),
            )
        if response.status_code != 200 or not isinstance(payload, dict):
            return Answer(error=f"Connect answered HTTP {response.status_code}")
        data = (payload.get("data") or {}).get(name)
        if data is None:
            if optional:
                return Answer(error="no such job at Connect", code="NOT_FOUND")
            return Answer(error=f"Connect's answer holds no {name}")
        return Answer(data=data)

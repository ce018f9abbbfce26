"""The two GraphQL schemas (Connect at /graphql, Attentive at /v1/graphql) and resolvers.

graphql-core does parsing, validation and execution. Two things keep it cheap enough for
100 mutations of 500 signals a second: parsed and validated documents are cached by
their text, and the common `createSignals(signals: $var) { signalIds }` document skips
graphql-core's variable coercion for an equivalent hand-written check (anything that
check does not accept exactly goes the full graphql-core way, so errors stay standard).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLResolveInfo,
    GraphQLScalarType,
    GraphQLSchema,
    ListTypeNode,
    NamedTypeNode,
    NonNullTypeNode,
    OperationDefinitionNode,
    OperationType,
    TypeNode,
    ValueNode,
    VariableNode,
    build_schema,
    execute_sync,
    parse,
    validate,
)
from graphql.utilities import value_from_ast_untyped

from sandbox.accounts import EMAIL_RE, Account
from sandbox.catalog import (
    IDENTIFIABLE_KEYS,
    MAX_SIGNALS_PER_MUTATION,
    REQUIRED_FIELDS,
    TIER_TYPES,
)
from sandbox.clock import Clock, iso, iso_ts, parse_iso
from sandbox.exports import ExportError, ExportService, check_export_args
from sandbox.store import SignalRow, Store

# Any JSON value: written in a document as a GraphQL literal (an object literal for
# signalContent, as the vendor's examples do) or passed as a JSON variable.
JSON_SCALAR_DOC = '"Any JSON value (object literal or JSON variable)."\nscalar JSON\n'

CONNECT_SDL = (
    JSON_SCALAR_DOC
    + """
input IdentifiableAttributesInput {
  contactKey: String
  email: String
  sms: String
  whatsapp: String
}

input SignalInput {
  appKey: String!
  identifiableAttributes: IdentifiableAttributesInput!
  sessionId: String
  signalContent: JSON!
  test: Boolean
}

type CreateSignalsPayload {
  "One UUID per accepted signal, in the order sent."
  signalIds: [String!]!
}

enum NotificationChannel { EMAIL }

input NotificationInput {
  channel: NotificationChannel!
  destination: String!
}

input SignalsExportInput {
  signalTypes: [String!]!
  timestampStart: String!
  timestampEnd: String!
}

input ExportInput { signals: SignalsExportInput! }

input SftpTargetInput {
  parentFolder: String
  namingPrefix: String
  path: String
}

input ExportTargetInput { sftp: SftpTargetInput }

type ExportSignalsPayload {
  dataJobId: String!
  "The exact file the job writes, relative to the SFTP user's root."
  path: String!
  fileFormat: String!
}

type PublicKeyPayload { publicKey: String! }

enum DataJobStatus { QUEUED RUNNING COMPLETED FAILED }

"The sandbox's own addition: Connect publishes no job-status query."
type DataJob {
  dataJobId: String!
  jobName: String!
  status: DataJobStatus!
  path: String!
  fileFormat: String!
  createdAt: String!
  startedAt: String
  completedAt: String
  expiresAt: String
  rows: Int
  sizeBytes: Int
  error: String
}

"The sandbox's own addition: today's (UTC) export use against the daily limits."
type ExportUsage {
  day: String!
  jobs: Int!
  bytes: Float!
  rows: Int!
  jobLimit: Int!
  byteLimit: Float!
  rowLimit: Int!
}

type Query {
  dataJob(dataJobId: String!): DataJob
  dataJobs: [DataJob!]!
  exportUsage: ExportUsage!
}

type Mutation {
  createSignals(signals: [SignalInput!]!): CreateSignalsPayload!
  exportSignals(
    jobName: String!
    export: ExportInput!
    notifications: [NotificationInput!]
    to: ExportTargetInput
  ): ExportSignalsPayload!
  updatePublicKeyForConnectUser(publicKey: String!): PublicKeyPayload!
}
"""
)

ATTENTIVE_SDL = (
    JSON_SCALAR_DOC
    + """
input CustomIdentifierInput { name: String! value: String! }

input ExternalIdentifiersInput {
  clientUserId: String
  customIdentifiers: [CustomIdentifierInput!]
}

input UserInput {
  email: String
  phone: String
  externalIdentifiers: ExternalIdentifiersInput
}

input CreateCustomEventInput {
  type: String!
  user: UserInput!
  properties: JSON
  externalEventId: String
  occurredAt: String
}

type CustomIdentifier { name: String! value: String! }
type ExternalIdentifiers { clientUserId: String customIdentifiers: [CustomIdentifier!] }
type User { email: String phone: String externalIdentifiers: ExternalIdentifiers }

type CustomEvent {
  externalEventId: String
  occurredAt: String
  properties: JSON
  type: String!
  user: User!
}

type Query { ping: String }

type Mutation {
  createCustomEvent(input: CreateCustomEventInput!): CustomEvent
}
"""
)

E164_RE = re.compile(r"^\+[1-9]\d{7,14}$")
EVENT_TYPE_FORBIDDEN = set("\"'(){}[]\\|,")
PROPERTY_KEY_FORBIDDEN = set("'\"{}[]\\|,")


class SandboxError(GraphQLError):
    """A refused call, answered as a GraphQL error naming the field at fault."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "BAD_USER_INPUT",
        field: str | None = None,
        info: GraphQLResolveInfo | None = None,
        signal_index: int | None = None,
    ) -> None:
        extensions: dict[str, Any] = {"code": code}
        if field is not None:
            extensions["field"] = field
        if signal_index is not None:
            extensions["signalIndex"] = signal_index
        super().__init__(
            message,
            nodes=info.field_nodes if info else None,
            path=info.path.as_list() if info else None,
            extensions=extensions,
        )


def _identity(value: Any) -> Any:
    return value


def _json_literal(node: ValueNode, variables: dict[str, Any] | None = None) -> Any:
    return value_from_ast_untyped(node, variables)


def _build(sdl: str) -> GraphQLSchema:
    schema = build_schema(sdl)
    json_type = schema.type_map["JSON"]
    assert isinstance(json_type, GraphQLScalarType)
    json_type.serialize = _identity  # type: ignore[method-assign]
    json_type.parse_value = _identity  # type: ignore[method-assign]
    json_type.parse_literal = _json_literal  # type: ignore[method-assign]
    return schema


# Contexts ----------------------------------------------------------------------------


@dataclass
class ConnectContext:
    account: Account
    request_id: int
    received_ts: float
    store: Store
    clock: Clock
    exports: ExportService
    check_public_key: Callable[[str], str]
    signal_rows: list[SignalRow] = field(default_factory=list)


@dataclass
class AttentiveContext:
    token: str
    request_id: int
    received_at: str
    event_rows: list[tuple[Any, ...]] = field(default_factory=list)


# createSignals -----------------------------------------------------------------------


def _signal_error(
    index: int, path: str, message: str, code: str = "BAD_USER_INPUT"
) -> SandboxError:
    where = f"signals[{index}].{path}"
    return SandboxError(f"{where}: {message}", code=code, field=where, signal_index=index)


def _check_required(index: int, signal_type: str, content: dict[str, Any]) -> None:
    for name, kind in REQUIRED_FIELDS[signal_type].items():
        value: Any = content.get(name)
        kind_of = type(value)
        # Exact type checks: a bool is an int to Python but never a number to the vendor.
        if kind_of is str:
            if kind == "string" and value.strip():
                continue
        elif (
            (kind_of is int or kind_of is float)
            and kind != "string"
            and (kind == "number" or float(value).is_integer())
        ):
            continue
        if value is None:
            raise _signal_error(
                index, f"signalContent.{name}", "required field missing", "REQUIRED"
            )
        raise _signal_error(
            index, f"signalContent.{name}", f"expected a {kind}, got {value!r}", "TYPE"
        )


def _uuid4_strings(count: int) -> list[str]:
    """`count` random UUIDs (version 4) as text; one urandom call, not `count`."""
    hexes = os.urandom(16 * count).hex()
    out = []
    for i in range(0, 32 * count, 32):
        h = hexes[i : i + 32]
        variant = "89ab"[int(h[16], 16) & 3]
        out.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}")
    return out


def create_signals(ctx: ConnectContext, signals: list[dict[str, Any]]) -> list[str]:
    """Accept the whole batch or none of it: the first signal the vendor would refuse
    fails the mutation with an error naming its index (nothing of the batch is stored)."""
    if len(signals) > MAX_SIGNALS_PER_MUTATION:
        raise SandboxError(
            f"createSignals takes at most {MAX_SIGNALS_PER_MUTATION} signals per mutation; "
            f"this one has {len(signals)}",
            code="BATCH_TOO_LARGE",
            field="signals",
        )
    account = ctx.account
    api_key = account.api_key
    allowed = TIER_TYPES[account.tier]
    request_id = ctx.request_id
    received_ts = ctx.received_ts
    received_at = iso_ts(received_ts)
    signal_ids = _uuid4_strings(len(signals))
    rows: list[SignalRow] = []
    append = rows.append
    dumps = orjson.dumps
    for index, signal in enumerate(signals):
        if signal is None:
            raise _signal_error(index, "", "a signal must not be null")
        app_key = signal["appKey"]
        if not app_key.strip():
            raise _signal_error(index, "appKey", "appKey must not be empty", "REQUIRED")
        ids = signal["identifiableAttributes"]
        contact_key = ids.get("contactKey")
        email = ids.get("email")
        sms = ids.get("sms")
        whatsapp = ids.get("whatsapp")
        if not (
            (contact_key and contact_key.strip())
            or (email and email.strip())
            or (sms and sms.strip())
            or (whatsapp and whatsapp.strip())
        ):
            raise _signal_error(
                index,
                "identifiableAttributes",
                "needs one of contactKey, email, sms, whatsapp",
                "REQUIRED",
            )
        content = signal["signalContent"]
        if type(content) is not dict:
            raise _signal_error(index, "signalContent", "must be a JSON object", "TYPE")
        signal_type = content.get("signalType")
        if signal_type not in allowed:
            if signal_type in REQUIRED_FIELDS:
                raise _signal_error(
                    index,
                    "signalContent.signalType",
                    f"{signal_type} is not included in the {account.tier} subscription",
                    "NOT_IN_SUBSCRIPTION",
                )
            raise _signal_error(
                index, "signalContent.signalType", f"unknown signalType {signal_type!r}", "ENUM"
            )
        _check_required(index, signal_type, content)
        append(
            (
                signal_ids[index], request_id, received_at, received_ts, api_key, app_key,
                signal_type, 1 if signal.get("test") else 0, signal.get("sessionId"),
                contact_key, email, sms, whatsapp, dumps(content).decode(),
            )
        )  # fmt: skip
    ctx.signal_rows.extend(rows)
    return signal_ids


_SIGNAL_KEYS = frozenset(("appKey", "identifiableAttributes", "sessionId", "signalContent", "test"))
_ID_KEYS = frozenset(IDENTIFIABLE_KEYS)


def fast_signals_ok(value: Any) -> bool:
    """True when graphql-core's coercion of `[SignalInput!]!` would accept `value` as is.
    False sends the request the full graphql-core way (which then words the error)."""
    if type(value) is not list:
        return False
    for signal in value:
        if type(signal) is not dict or not _SIGNAL_KEYS.issuperset(signal):
            return False
        if type(signal.get("appKey")) is not str or signal.get("signalContent") is None:
            return False
        ids = signal.get("identifiableAttributes")
        if type(ids) is not dict or not _ID_KEYS.issuperset(ids):
            return False
        for v in ids.values():
            if v is not None and type(v) is not str:
                return False
        session_id = signal.get("sessionId")
        if session_id is not None and type(session_id) is not str:
            return False
        test = signal.get("test")
        if test is not None and type(test) is not bool:
            return False
    return True


# Connect resolvers -------------------------------------------------------------------


def _resolve_create_signals(
    _root: None, info: GraphQLResolveInfo, signals: list[dict[str, Any]]
) -> dict[str, Any]:
    try:
        return {"signalIds": create_signals(info.context, signals)}
    except SandboxError as exc:
        raise SandboxError(exc.message, info=info, **_ext(exc)) from None


def _ext(exc: SandboxError) -> dict[str, Any]:
    ext = exc.extensions or {}
    return {"code": ext.get("code", "BAD_USER_INPUT"), "field": ext.get("field"),
            "signal_index": ext.get("signalIndex")}  # fmt: skip


def _resolve_export_signals(
    _root: None,
    info: GraphQLResolveInfo,
    jobName: str,
    export: dict[str, Any],
    notifications: list[dict[str, Any]] | None = None,
    to: dict[str, Any] | None = None,
) -> dict[str, Any]:
    ctx: ConnectContext = info.context
    try:
        request = check_export_args(jobName, export, notifications, to)
        job = ctx.exports.submit(ctx.account, request)
    except ExportError as exc:
        raise SandboxError(
            f"{exc.field}: {exc.message}", code=exc.code, field=exc.field, info=info
        ) from None
    return {"dataJobId": job["data_job_id"], "path": job["path"], "fileFormat": "CSV"}


def _resolve_update_public_key(
    _root: None,
    info: GraphQLResolveInfo,
    publicKey: str,
) -> dict[str, Any]:
    ctx: ConnectContext = info.context
    try:
        key = ctx.check_public_key(publicKey)
    except ValueError as exc:
        raise SandboxError(
            f"publicKey: {exc}", code="BAD_USER_INPUT", field="publicKey", info=info
        ) from None
    ctx.store.set_public_key(ctx.account.email, key, iso(ctx.clock.now()))
    return {"publicKey": key}


def _job_view(job: Any, retention_days: float) -> dict[str, Any]:
    expires = None
    if job["completed_at"] and job["status"] == "COMPLETED":
        expires = iso(parse_iso(job["completed_at"]) + timedelta(days=retention_days))
    return {
        "dataJobId": job["data_job_id"],
        "jobName": job["job_name"],
        "status": job["status"],
        "path": job["path"],
        "fileFormat": job["file_format"],
        "createdAt": job["created_at"],
        "startedAt": job["started_at"],
        "completedAt": job["completed_at"],
        "expiresAt": expires,
        "rows": job["rows"],
        "sizeBytes": job["size_bytes"],
        "error": job["error"],
    }


def _resolve_data_job(
    _root: None,
    info: GraphQLResolveInfo,
    dataJobId: str,
) -> dict[str, Any] | None:
    ctx: ConnectContext = info.context
    job = ctx.store.job(dataJobId)
    if job is None or job["api_key"] != ctx.account.api_key:
        return None
    return _job_view(job, ctx.exports.settings.retention_days)


def _resolve_data_jobs(_root: None, info: GraphQLResolveInfo) -> list[dict[str, Any]]:
    ctx: ConnectContext = info.context
    days = ctx.exports.settings.retention_days
    return [_job_view(job, days) for job in ctx.store.jobs(ctx.account.api_key)]


def _resolve_export_usage(_root: None, info: GraphQLResolveInfo) -> dict[str, Any]:
    ctx: ConnectContext = info.context
    return ctx.exports.usage(ctx.account)


# Attentive ---------------------------------------------------------------------------


def _attentive_error(info: GraphQLResolveInfo, where: str, message: str) -> SandboxError:
    return SandboxError(f"{where}: {message}", field=where, info=info)


def _resolve_create_custom_event(
    _root: None,
    info: GraphQLResolveInfo,
    input: dict[str, Any],
) -> dict[str, Any]:
    ctx: AttentiveContext = info.context
    event_type = input["type"]
    if not event_type.strip():
        raise _attentive_error(info, "input.type", "must not be empty")
    if EVENT_TYPE_FORBIDDEN & set(event_type):
        raise _attentive_error(info, "input.type", "must not contain \" ' ( ) { } [ ] \\ | ,")
    user = input["user"]
    external = user.get("externalIdentifiers") or {}
    if not (
        user.get("email")
        or user.get("phone")
        or external.get("clientUserId")
        or external.get("customIdentifiers")
    ):
        raise _attentive_error(info, "input.user", "needs email, phone or externalIdentifiers")
    if user.get("email") and not EMAIL_RE.match(user["email"]):
        raise _attentive_error(
            info, "input.user.email", f"not an e-mail address: {user['email']!r}"
        )
    if user.get("phone") and not E164_RE.match(user["phone"]):
        raise _attentive_error(info, "input.user.phone", f"not an E.164 number: {user['phone']!r}")
    properties = input.get("properties")
    decoded = properties
    if isinstance(properties, str):
        # The vendor's own example sends properties as a JSON-encoded string.
        try:
            decoded = orjson.loads(properties)
        except orjson.JSONDecodeError:
            raise _attentive_error(info, "input.properties", "not a JSON object") from None
    if decoded is not None:
        if not isinstance(decoded, dict):
            raise _attentive_error(info, "input.properties", "must be an object")
        for key in decoded:
            if PROPERTY_KEY_FORBIDDEN & set(key):
                raise _attentive_error(
                    info, f"input.properties.{key}", "keys must not contain ' \" { } [ ] \\ | ,"
                )
    occurred_at = input.get("occurredAt")
    normalized = None
    if occurred_at is not None:
        try:
            moment = parse_iso(occurred_at)
        except ValueError:
            raise _attentive_error(info, "input.occurredAt", "not an ISO 8601 date-time") from None
        normalized = iso(moment)
        if moment.microsecond == 0:
            normalized = normalized[:-5] + "Z"
    ctx.event_rows.append(
        (
            ctx.request_id,
            ctx.received_at,
            ctx.token,
            event_type,
            input.get("externalEventId"),
            normalized,
            orjson.dumps(user).decode(),
            None if decoded is None else orjson.dumps(decoded).decode(),
        )
    )
    return {
        "externalEventId": input.get("externalEventId"),
        "occurredAt": normalized,
        "properties": properties,
        "type": event_type,
        "user": user,
    }


# Schemas and the document cache ------------------------------------------------------


def connect_schema() -> GraphQLSchema:
    schema = _build(CONNECT_SDL)
    mutation = schema.mutation_type
    query = schema.query_type
    assert mutation is not None and query is not None
    mutation.fields["createSignals"].resolve = _resolve_create_signals
    mutation.fields["exportSignals"].resolve = _resolve_export_signals
    mutation.fields["updatePublicKeyForConnectUser"].resolve = _resolve_update_public_key
    query.fields["dataJob"].resolve = _resolve_data_job
    query.fields["dataJobs"].resolve = _resolve_data_jobs
    query.fields["exportUsage"].resolve = _resolve_export_usage
    return schema


def attentive_schema() -> GraphQLSchema:
    schema = _build(ATTENTIVE_SDL)
    mutation = schema.mutation_type
    assert mutation is not None
    mutation.fields["createCustomEvent"].resolve = _resolve_create_custom_event
    return schema


@dataclass(frozen=True)
class FastCreateSignals:
    """Where a cached `mutation($v: [SignalInput!]!) { createSignals(signals: $v)
    { signalIds } }` document keeps its variable and response key."""

    variable: str
    response_key: str
    line: int
    column: int


@dataclass
class Prepared:
    document: DocumentNode | None
    errors: list[GraphQLError]
    # Fast-path info per operation name (None: the document's only operation).
    fast: dict[str | None, FastCreateSignals]
    # Root field names per operation name, for the request log.
    fields: dict[str | None, str] = field(default_factory=dict)

    def operation(self, name: str | None) -> str | None:
        return self.fields.get(name)


def _type_text(node: TypeNode) -> str:
    if isinstance(node, NonNullTypeNode):
        return _type_text(node.type) + "!"
    if isinstance(node, ListTypeNode):
        return "[" + _type_text(node.type) + "]"
    assert isinstance(node, NamedTypeNode)
    return node.name.value


def _fast_info(op: OperationDefinitionNode) -> FastCreateSignals | None:
    if op.operation != OperationType.MUTATION or op.directives:
        return None
    selections = op.selection_set.selections
    definitions = op.variable_definitions or ()
    if len(selections) != 1 or len(definitions) != 1:
        return None
    top = selections[0]
    definition = definitions[0]
    if (
        not isinstance(top, FieldNode)
        or top.name.value != "createSignals"
        or top.directives
        or len(top.arguments or ()) != 1
        or definition.default_value is not None
        or definition.directives
        or _type_text(definition.type) != "[SignalInput!]!"
    ):
        return None
    assert top.arguments is not None
    argument = top.arguments[0]
    if argument.name.value != "signals" or not isinstance(argument.value, VariableNode):
        return None
    if argument.value.name.value != definition.variable.name.value:
        return None
    inner = top.selection_set.selections if top.selection_set else ()
    if len(inner) != 1:
        return None
    leaf = inner[0]
    if (
        not isinstance(leaf, FieldNode)
        or leaf.name.value != "signalIds"
        or leaf.alias is not None
        or leaf.directives
        or leaf.arguments
    ):
        return None
    loc = top.loc
    line = column = 0
    if loc is not None:
        location = loc.source.get_location(loc.start)
        line, column = location.line, location.column
    key = top.alias.value if top.alias else "createSignals"
    return FastCreateSignals(definition.variable.name.value, key, line, column)


class DocumentCache:
    """Parsed and validated documents by their text; a client sends the same few."""

    def __init__(self, schema: GraphQLSchema, size: int = 256) -> None:
        self.schema = schema
        self.size = size
        self._cache: dict[str, Prepared] = {}

    def get(self, query: str) -> Prepared:
        prepared = self._cache.get(query)
        if prepared is not None:
            return prepared
        try:
            document = parse(query, max_tokens=2_000_000)
        except GraphQLError as exc:
            prepared = Prepared(None, [exc], {})
        except RecursionError:
            prepared = Prepared(None, [GraphQLError("the document is nested too deeply")], {})
        else:
            errors = validate(self.schema, document)
            fast: dict[str | None, FastCreateSignals] = {}
            operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
            if not errors:
                for op in operations:
                    info = _fast_info(op)
                    if info is not None:
                        fast[op.name.value if op.name else None] = info
                        if len(operations) == 1:
                            fast[None] = info
            names: dict[str | None, str] = {}
            for op in operations:
                root = ",".join(
                    s.name.value for s in op.selection_set.selections if isinstance(s, FieldNode)
                )
                names[op.name.value if op.name else None] = root
                if len(operations) == 1:
                    names[None] = root
            prepared = Prepared(document, list(errors), fast, names)
        # Only small documents are worth keeping; a literal batch is seldom sent twice.
        if len(query) <= 65536:
            if len(self._cache) >= self.size:
                self._cache.clear()
            self._cache[query] = prepared
        return prepared


def execute(
    schema: GraphQLSchema,
    prepared: Prepared,
    context: Any,
    variables: dict[str, Any] | None,
    operation_name: str | None,
) -> tuple[dict[str, Any], bool]:
    """Run a prepared document: (response body, is_request_error). A request error
    (variables that do not fit, no such operation) has no `data` and is answered 400."""
    fast = prepared.fast.get(operation_name)
    if fast is not None and isinstance(context, ConnectContext):
        value = (variables or {}).get(fast.variable)
        if isinstance(value, list) and fast_signals_ok(value):
            try:
                ids = create_signals(context, value)
            except SandboxError as exc:
                error = exc.formatted
                error["path"] = [fast.response_key]
                if fast.line:
                    error["locations"] = [{"line": fast.line, "column": fast.column}]
                return {"errors": [error], "data": None}, False
            return {"data": {fast.response_key: {"signalIds": ids}}}, False
    assert prepared.document is not None
    result = execute_sync(
        schema,
        prepared.document,
        context_value=context,
        variable_values=variables,
        operation_name=operation_name,
    )
    body = dict(result.formatted)
    request_error = result.data is None and all(e.path is None for e in result.errors or ())
    return body, request_error

"""Our Brevo requests checked against Brevo's own request models: the official Python SDK
(``brevo-python``, a test-only dependency), not our fake's idea of the API.

For one request (method, path, query, JSON body) as our client puts it on the wire:

1. the SDK operation is found by method and path (``OPERATIONS``); each wire key is mapped to a
   parameter of the SDK method (camelCase to snake_case) — a key the SDK does not know fails;
   a required parameter we leave out fails;
2. each value is validated against the parameter's type annotation with pydantic (strict, from
   JSON, as Brevo receives it; query strings are read as the strings they are), and unknown
   nested fields fail at any depth (the SDK's models accept extras: we do not). Fern's open
   enums (``Literal[...] | Any``) are closed: a value outside the documented ones fails;
3. the SDK method is called for real, over an ``httpx.MockTransport``, with the validated
   values, and the request it would send must equal ours: method, path (percent-decoded: the SDK
   leaves ``@`` as is where we encode it), query and JSON body.

Used by the contract tests of ``winecrm.campaigns.brevo`` and inside the fake Brevo, which
answers 400 with the mismatch to any request that fails here.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
import threading
import typing
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx
import pydantic
import requests

SDK_BASE_URL = "http://brevo-sdk.contract/v3"


class ContractMismatch(AssertionError):
    """The request does not match Brevo's SDK; ``problems`` says where."""

    def __init__(self, method: str, path: str, problems: list[str]):
        super().__init__(f"{method} {path} does not match Brevo's SDK: " + "; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Operation:
    method: str
    path: str        # {name}: a path parameter of the SDK method
    sdk: str         # "<group>.<method>" of brevo.Brevo

    def match(self, method: str, path: str) -> dict | None:
        if method != self.method:
            return None
        pattern = "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.path)) + "$"
        found = re.match(pattern, path)
        return {k: unquote(v) for k, v in found.groupdict().items()} if found else None


# Every operation our client calls (winecrm.campaigns.brevo), and the SDK method that makes it.
OPERATIONS = (
    Operation("POST", "/smtp/email", "transactional_emails.send_transac_email"),
    Operation("GET", "/smtp/emails", "transactional_emails.get_transac_emails_list"),
    Operation("POST", "/contacts/import", "contacts.import_contacts"),
    Operation("GET", "/contacts/attributes", "contacts.get_attributes"),
    Operation("POST", "/contacts/attributes/{attribute_category}/{attribute_name}", "contacts.create_attribute"),
    Operation("GET", "/contacts/lists", "contacts.get_lists"),
    Operation("POST", "/contacts/lists", "contacts.create_list"),
    Operation("GET", "/contacts/folders", "contacts.get_folders"),
    Operation("POST", "/contacts/folders", "contacts.create_folder"),
    Operation("DELETE", "/contacts/{identifier}", "contacts.delete_contact"),
    Operation("GET", "/contacts/{identifier}", "contacts.get_contact_info"),
    Operation("POST", "/transactionalSMS/sms", "transactional_sms.send_transac_sms"),
)


def operation_for(method: str, path: str) -> tuple[Operation, dict] | None:
    for operation in OPERATIONS:
        path_params = operation.match(method, path)
        if path_params is not None:
            return operation, path_params
    return None


def snake(wire_key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", wire_key).lower()


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def relative_path(url_or_path: str) -> str:
    """``/smtp/email`` from ``http://host/v3/smtp/email`` or ``/v3/smtp/email``."""
    path = urlsplit(url_or_path).path
    return path[3:] if path.startswith("/v3/") else path


# -- types -------------------------------------------------------------------------------------


def _closed(annotation):
    """The annotation with Fern's open-enum escape hatch (``Literal[...] | Any``) removed."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union:
        if any(typing.get_origin(a) is typing.Literal for a in args):
            args = tuple(a for a in args if a is not typing.Any)
        return typing.Union[tuple(_closed(a) for a in args)]
    if origin is not None and args and origin not in (typing.Literal, typing.Annotated):
        try:
            return origin[tuple(_closed(a) for a in args)]
        except TypeError:
            return annotation
    return annotation


def _open_enum_values(annotation) -> set | None:
    """The documented values of a Fern open enum (``Literal[...] | Any``, maybe Optional)."""
    if typing.get_origin(annotation) is not typing.Union:
        return None
    args = typing.get_args(annotation)
    literals = [a for a in args if typing.get_origin(a) is typing.Literal]
    if not literals or typing.Any not in args:
        return None
    return {v for lit in literals for v in typing.get_args(lit)}


def _nested_problems(value, where: str) -> list[str]:
    """Unknown fields (the SDK models keep extras) and values outside open enums, at any depth."""
    problems = []
    if isinstance(value, pydantic.BaseModel):
        for key in sorted(value.model_extra or {}):
            problems.append(f"{where}.{key}: unknown field")
        for name, info in type(value).model_fields.items():
            item = getattr(value, name)
            label = f"{where}.{info.alias or name}"
            allowed = _open_enum_values(info.annotation)
            if allowed is not None and item is not None and item not in allowed:
                problems.append(f"{label}: {item!r} is not one of {sorted(map(str, allowed))}")
            problems += _nested_problems(item, label)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            problems += _nested_problems(item, f"{where}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            problems += _nested_problems(item, f"{where}.{key}")
    return problems


@functools.lru_cache(maxsize=None)
def _sdk_signature(dotted: str):
    """The SDK method's keyword parameters and their resolved type annotations."""
    import brevo

    group, name = dotted.split(".")
    function = getattr(type(getattr(brevo.Brevo(api_key="x", base_url=SDK_BASE_URL), group)), name)
    return inspect.signature(function).parameters, typing.get_type_hints(function)


def _sdk_method(client, dotted: str):
    group, name = dotted.split(".")
    return getattr(getattr(client, group), name)


_adapters: dict = {}
_adapters_lock = threading.Lock()


def _adapter(annotation) -> pydantic.TypeAdapter:
    with _adapters_lock:
        if annotation not in _adapters:
            _adapters[annotation] = pydantic.TypeAdapter(_closed(annotation))
        return _adapters[annotation]


# -- the check ---------------------------------------------------------------------------------


def check_request(method: str, path: str, *, query: dict | None = None, body=None) -> dict:
    """Raise ContractMismatch unless the request is one Brevo's SDK would send, the same to the
    byte (JSON-equal). Returns the SDK's request: {method, path, query, body}."""
    import brevo

    method, path = method.upper(), relative_path(path)
    found = operation_for(method, path)
    if found is None:
        raise ContractMismatch(method, path, ["no such operation in the SDK (not one our client may call)"])
    operation, path_params = found
    parameters, hints = _sdk_signature(operation.sdk)
    problems: list[str] = []
    from_query = method in ("GET", "DELETE")
    if from_query and body not in (None, b"", ""):
        problems.append("a body on a request that takes none")
    if not from_query and query:
        problems.append(f"query parameters {sorted(query)} on a request that takes a JSON body")
    sent = dict(query or {}) if from_query else body
    if not from_query and not isinstance(sent, dict):
        problems.append("the body must be a JSON object")
        sent = {}
    kwargs: dict = {}
    for name, value in path_params.items():
        allowed = _open_enum_values(hints[name])
        if allowed is not None and value not in allowed:
            problems.append(f"path {{{name}}}: {value!r} is not one of {sorted(map(str, allowed))}")
        kwargs[name] = value
    for key, value in sent.items():
        name = snake(key)
        if name not in parameters or name in path_params or name in ("self", "request_options"):
            problems.append(f"{key}: unknown field")
            continue
        adapter = _adapter(hints[name])
        try:
            if from_query:
                validated = adapter.validate_python(value)          # a query string is text
            else:
                validated = adapter.validate_json(json.dumps(value), strict=True)
        except pydantic.ValidationError as exc:
            for error in exc.errors():
                where = ".".join(str(p) for p in (key, *error["loc"]))
                problems.append(f"{where}: {error['msg']} (got {error.get('input')!r:.80})")
            continue
        allowed = _open_enum_values(hints[name])
        if allowed is not None and validated is not None and validated not in allowed:
            problems.append(f"{key}: {validated!r} is not one of {sorted(map(str, allowed))}")
        problems += _nested_problems(validated, key)
        kwargs[name] = validated
    for name, parameter in parameters.items():
        if (parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.default is inspect.Parameter.empty
                and name not in kwargs):
            problems.append(f"{camel(name)}: required by the SDK, missing")
    if problems:
        raise ContractMismatch(method, path, problems)

    captured: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        captured.append(request)
        return httpx.Response(200, json={})

    with httpx.Client(transport=httpx.MockTransport(answer)) as transport:
        sdk = brevo.Brevo(api_key="contract-check", base_url=SDK_BASE_URL, httpx_client=transport, max_retries=0)
        _sdk_method(sdk, operation.sdk)(**kwargs)
    request = captured[0]
    sdk_request = {"method": request.method, "path": unquote(relative_path(request.url.raw_path.decode())),
                   "query": dict(parse_qsl(request.url.query.decode(), keep_blank_values=True)),
                   "body": json.loads(request.content) if request.content else None}
    ours = {"method": method, "path": unquote(path),
            "query": {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in (query or {}).items()},
            "body": None if from_query else body}
    differences = [f"{part}: ours {ours[part]!r:.300} vs the SDK's {sdk_request[part]!r:.300}"
                   for part in ("method", "path", "query", "body") if ours[part] != sdk_request[part]]
    if differences:
        raise ContractMismatch(method, path, differences)
    return sdk_request


# -- our client, checked on the wire -------------------------------------------------------------


class ContractSession(requests.Session):
    """A ``requests.Session`` for ``BrevoClient(session=...)``: every request the client prepares
    is checked with ``check_request`` (a mismatch raises) and answered by ``respond(method,
    path, query, body) -> (status, payload)`` without any network."""

    def __init__(self, respond):
        super().__init__()
        self.respond = respond
        self.checked: list[dict] = []

    def send(self, prepared: requests.PreparedRequest, **kwargs) -> requests.Response:
        parts = urlsplit(prepared.url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        body = json.loads(prepared.body) if prepared.body else None
        sdk_request = check_request(prepared.method, parts.path, query=query, body=body)
        self.checked.append(sdk_request)
        status, payload = self.respond(prepared.method, relative_path(parts.path), query, body)
        response = requests.Response()
        response.status_code = status
        response._content = b"" if payload is None else json.dumps(payload).encode()
        response.headers["content-type"] = "application/json"
        response.url, response.request = prepared.url, prepared
        return response

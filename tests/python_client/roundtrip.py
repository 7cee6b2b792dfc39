#!/usr/bin/env python3
"""Drives a live Rhizome node through the generated Python client
(clients/python, package rhizome_client), as a user of the client would:

- POST /v1/proxy with a JSON object and a JSON array body: the upstream's echo
  comes back typed, with the status, headers, path, query and the body sent;
- POST /v1/proxy with a binary body (bytes 0..255, base64): the upstream
  receives exactly those bytes, and a binary answer comes back as base64;
- GET /admin/v1/credentials with the admin token: a typed CredentialList
  naming the expected credentials;
- a wrong client key, a wrong admin token and an unknown route: typed
  ErrorBody answers with the status and the error code.

Run by tests/tests/python_client.rs with clients/python on PYTHONPATH. Exits 0
when every check holds, 1 naming the first that does not, 3 when a module is
missing. Never prints a key or token.
"""

import argparse
import base64
import json
import sys

try:
    import attrs  # noqa: F401  (the generated models are attrs classes)
    import httpx
except ImportError as e:
    print(
        f"roundtrip.py: Python module {e.name!r} is missing: install the client's "
        "dependencies with `python3 -m pip install -r clients/requirements.txt`",
        file=sys.stderr,
    )
    sys.exit(3)
try:
    from rhizome_client import AuthenticatedClient, Client
    from rhizome_client.api.admin import list_credentials
    from rhizome_client.api.health import readyz
    from rhizome_client.api.proxy import send_intent
    from rhizome_client.models import (
        CredentialList,
        ErrorBody,
        IntentRequest,
        IntentRequestHeadersType0,
        IntentRequestParamsType0,
        IntentResponse,
    )
    from rhizome_client.types import UNSET
except ImportError as e:
    print(
        f"roundtrip.py: cannot import the generated client ({e}): put clients/python "
        "on PYTHONPATH (or `python3 -m pip install -e clients/python`)",
        file=sys.stderr,
    )
    sys.exit(3)

TIMEOUT = httpx.Timeout(30.0)


class CheckFailed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise CheckFailed(what)


def intent(client, body):
    """Sends `body` (an IntentRequest); returns the detailed response."""
    return send_intent.sync_detailed(client=client, body=body)


def ok_answer(r, what):
    """The typed IntentResponse of a 200 answer."""
    check(r.status_code == 200, f"{what}: HTTP {r.status_code}, expected 200: {r.content[:300]!r}")
    check(isinstance(r.parsed, IntentResponse), f"{what}: parsed as {type(r.parsed).__name__}, not IntentResponse")
    return r.parsed


def echoed_body(echo):
    """The bytes the upstream received, from the mock's echo document."""
    return base64.b64decode(echo["body_base64"], validate=True)


def error_answer(r, status, code, what):
    check(r.status_code == status, f"{what}: HTTP {r.status_code}, expected {status}: {r.content[:300]!r}")
    check(isinstance(r.parsed, ErrorBody), f"{what}: parsed as {type(r.parsed).__name__}, not ErrorBody")
    check(r.parsed.error.code == code, f"{what}: error code {r.parsed.error.code!r}, expected {code!r}")
    check(bool(r.parsed.error.request_id), f"{what}: the error has no request_id")
    check(bool(r.parsed.error.message), f"{what}: the error has no message")


def json_round_trip(proxy):
    sent = {"name": "widget", "n": 3, "tags": ["a", "é"], "nested": {"ok": True, "none": None}}
    r = intent(
        proxy,
        IntentRequest(
            route="a",
            method="POST",
            path="/v3/items",
            params=IntentRequestParamsType0.from_dict({"q": "x y", "n": [1, 2]}),
            headers=IntentRequestHeadersType0.from_dict({"x-trace": "t1"}),
            json=sent,
            timeout_ms=20000,
        ),
    )
    answer = ok_answer(r, "JSON intent")
    check(answer.status == 200, f"JSON intent: upstream status {answer.status}")
    check(answer.duration_ms >= 0, f"JSON intent: duration_ms {answer.duration_ms}")
    check(
        answer.headers["content-type"] == "application/json",
        f"JSON intent: content-type {answer.headers.additional_properties.get('content-type')!r}",
    )
    check(answer.body_base64 is UNSET, "JSON intent: a JSON answer also came as body_base64")
    echo = answer.json
    check(isinstance(echo, dict), f"JSON intent: json is {type(echo).__name__}, not an object")
    check(echo["method"] == "POST", f"JSON intent: upstream saw method {echo['method']!r}")
    check(echo["path"] == "/v3/items", f"JSON intent: upstream saw path {echo['path']!r}")
    check(echo["query"] == "n=1&n=2&q=x+y", f"JSON intent: upstream saw query {echo['query']!r}")
    check(echo["headers"].get("x-trace") == "t1", "JSON intent: the x-trace header did not reach the upstream")
    check(
        echo["headers"].get("content-type") == "application/json",
        f"JSON intent: upstream saw content-type {echo['headers'].get('content-type')!r}",
    )
    check(
        echo["credential"].get("client_id") == "svc-a",
        f"JSON intent: upstream saw credential {echo['credential']!r}",
    )
    received = json.loads(echoed_body(echo))
    check(received == sent, f"JSON intent: upstream received {received!r}, sent {sent!r}")

    # Any JSON value is a body, an array too.
    sent = [1, "two", {"three": 3.5}, None]
    answer = ok_answer(intent(proxy, IntentRequest(route="a", method="POST", path="/list", json=sent)), "JSON array")
    received = json.loads(echoed_body(answer.json))
    check(received == sent, f"JSON array: upstream received {received!r}, sent {sent!r}")
    print("ok: JSON bodies round-trip through /v1/proxy")


def binary_round_trip(proxy):
    sent = bytes(range(256))
    answer = ok_answer(
        intent(
            proxy,
            IntentRequest(route="a", method="PUT", path="/blob", body_base64=base64.b64encode(sent).decode()),
        ),
        "binary intent",
    )
    check(answer.status == 200, f"binary intent: upstream status {answer.status}")
    echo = answer.json
    check(echo["method"] == "PUT", f"binary intent: upstream saw method {echo['method']!r}")
    check(echo["body_len"] == 256, f"binary intent: upstream received {echo['body_len']} bytes, sent 256")
    check(echoed_body(echo) == sent, "binary intent: the upstream received other bytes than bytes 0..255")

    # A binary answer comes back as base64.
    answer = ok_answer(
        intent(proxy, IntentRequest(route="a", path="/bytes", params=IntentRequestParamsType0.from_dict({"n": 1000}))),
        "binary answer",
    )
    check(answer.json is UNSET, "binary answer: came as json")
    check(isinstance(answer.body_base64, str), f"binary answer: body_base64 is {answer.body_base64!r}")
    body = base64.b64decode(answer.body_base64, validate=True)
    check(body == b"x" * 1000, f"binary answer: {len(body)} bytes, expected 1000 bytes of 'x'")
    print("ok: binary bodies round-trip through /v1/proxy")


def admin_credentials(admin_base, admin_token, expected):
    with AuthenticatedClient(base_url=admin_base, token=admin_token, timeout=TIMEOUT) as admin:
        r = list_credentials.sync_detailed(client=admin)
    check(r.status_code == 200, f"credentials: HTTP {r.status_code}: {r.content[:300]!r}")
    check(isinstance(r.parsed, CredentialList), f"credentials: parsed as {type(r.parsed).__name__}")
    names = sorted(c.name for c in r.parsed.credentials)
    check(names == sorted(expected), f"credentials: {names}, expected {sorted(expected)}")
    by_name = {c.name: c for c in r.parsed.credentials}
    a = by_name.get("oauth-a")
    if a is not None:
        check(a.kind == "oauth2_client_credentials", f"credentials: oauth-a has kind {a.kind!r}")
        check(a.has_token is True, "credentials: oauth-a has no token after serving the intents")
        check(isinstance(a.expires_in, int) and a.expires_in > 0, f"credentials: oauth-a expires_in {a.expires_in!r}")
    check(all(isinstance(c.failures, int) for c in r.parsed.credentials), "credentials: failures not integers")
    check(bool(r.parsed.node), "credentials: no node id")
    print(f"ok: the admin API lists {', '.join(names)}")


def errors(proxy_base, admin_base, proxy):
    with AuthenticatedClient(base_url=proxy_base, token="wrong-client-key", timeout=TIMEOUT) as wrong:
        r = intent(wrong, IntentRequest(route="a", path="/x"))
    error_answer(r, 401, "client_unauthorized", "wrong client key")
    with AuthenticatedClient(base_url=admin_base, token="wrong-admin-token", timeout=TIMEOUT) as wrong:
        r = list_credentials.sync_detailed(client=wrong)
    error_answer(r, 401, "admin_unauthorized", "wrong admin token")
    r = intent(proxy, IntentRequest(route="no-such-route", path="/x"))
    error_answer(r, 404, "no_route", "unknown route")
    print("ok: errors come back as typed ErrorBody with their codes")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--proxy", required=True, help="proxy listener base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--admin", required=True, help="admin listener base URL, e.g. http://127.0.0.1:9090")
    p.add_argument("--client-key", required=True)
    p.add_argument("--admin-token", required=True)
    p.add_argument(
        "--credentials",
        default="oauth-a,oauth-b,static,jwt-hs,jwt-rs,cookie",
        help="comma-separated credential names the admin API must list",
    )
    args = p.parse_args()

    try:
        with Client(base_url=args.admin, timeout=TIMEOUT) as health:
            ready = readyz.sync(client=health)
        check(ready is not None and ready.status == "ready", f"readyz: {ready!r}")
        with AuthenticatedClient(base_url=args.proxy, token=args.client_key, timeout=TIMEOUT) as proxy:
            json_round_trip(proxy)
            binary_round_trip(proxy)
            errors(args.proxy, args.admin, proxy)
        admin_credentials(args.admin, args.admin_token, args.credentials.split(","))
    except CheckFailed as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Checks a running docker/compose.yaml cluster the way a user would, through
the load balancer: a credentialed request, an MCP session, a resumable SSE
stream whose node container is killed mid-stream, and a raft leader killed
under the nodes. Run by docker/test-compose.sh after `up`; standard library
only. Exits non-zero with the failed check's message; prints the measured
times as `measured: NAME SECONDS` lines.

Environment: COMPOSE (the compose command line with -p and -f), RHIZOME_PORT,
MOCK_PORT, COORDINATOR{1,2,3}_PORT, NODE{1,2,3}_ADMIN_PORT, UP_STARTED (epoch
seconds when `up` began)."""

import http.client
import json
import os
import shlex
import subprocess
import sys
import time

COMPOSE = shlex.split(os.environ.get("COMPOSE", "docker-compose -f docker/compose.yaml"))
LB = ("127.0.0.1", int(os.environ.get("RHIZOME_PORT", "8080")))
MOCK = ("127.0.0.1", int(os.environ.get("MOCK_PORT", "9999")))
COORDINATORS = {i: ("127.0.0.1", int(os.environ.get(f"COORDINATOR{i}_PORT", str(7070 + i)))) for i in (1, 2, 3)}
NODE_ADMIN = {f"node{i}": ("127.0.0.1", int(os.environ.get(f"NODE{i}_ADMIN_PORT", str(9090 + i)))) for i in (1, 2, 3)}
CLIENT = {"authorization": "Bearer demo-client-key"}
ADMIN = {"authorization": "Bearer " + os.environ.get("RHIZOME_ADMIN_TOKEN", "demo-admin-token")}
SSE_EVENTS = 300


class CheckFailed(Exception):
    pass


def log(msg):
    print(f"[check] {msg}", flush=True)


def measured(name, seconds):
    print(f"measured: {name} {seconds:.2f}", flush=True)


def request(addr, method, path, headers=None, body=None, timeout=5.0):
    """One request; returns (status, headers, body bytes) or raises OSError."""
    conn = http.client.HTTPConnection(*addr, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def try_json(addr, method, path, headers=None, body=None):
    """(status, parsed JSON or None); (None, None) when the request failed."""
    try:
        status, _, data = request(addr, method, path, headers, body)
    except (OSError, http.client.HTTPException):
        return None, None
    try:
        return status, json.loads(data)
    except ValueError:
        return status, None


def wait_for(what, predicate, deadline_s):
    """Polls predicate() until it returns a truthy value, or fails the check."""
    end = time.monotonic() + deadline_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise CheckFailed(f"timed out after {deadline_s:.0f} s waiting for {what}")
        time.sleep(0.2)


def compose(*args):
    out = subprocess.run(COMPOSE + list(args), check=True, capture_output=True, text=True)
    return out.stdout.strip()


def container(service):
    cid = compose("ps", "-q", service)
    if not cid:
        raise CheckFailed(f"no container for service {service}")
    return cid


def health(service):
    cid = container(service)
    return subprocess.run(
        ["docker", "inspect", "-f", "{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}", cid],
        check=True, capture_output=True, text=True,
    ).stdout.strip()


def kill(service):
    subprocess.run(["docker", "kill", container(service)], check=True, capture_output=True)


def check_healthy():
    services = ["redis", "mock", "coordinator1", "coordinator2", "coordinator3", "node1", "node2", "node3"]
    wait_for("every container healthy", lambda: all(health(s) == "healthy" for s in services), 180)
    # The load balancer counts a node in after two good checks.
    wait_for("the load balancer to pass requests",
             lambda: try_json(LB, "GET", "/api/ready", CLIENT)[0] == 200, 60)
    started = float(os.environ.get("UP_STARTED", "0"))
    if started:
        measured("up_to_healthy_seconds", time.time() - started)
    log("all containers healthy, the load balancer answers")


def check_credentialed_request():
    status, body = try_json(LB, "GET", "/api/hello", CLIENT)
    if status != 200 or not body or body.get("path") != "/hello":
        raise CheckFailed(f"credentialed request: {status} {body}")
    if try_json(LB, "GET", "/api/hello")[0] != 401:
        raise CheckFailed("a request without the client key was not refused with 401")
    log(f"credentialed request 200, upstream saw credential {body.get('credential')}")


def mcp_call(session, method, rpc_id):
    headers = dict(CLIENT, **{"content-type": "application/json",
                              "accept": "application/json, text/event-stream"})
    if session:
        headers["mcp-session-id"] = session
    body = json.dumps({"jsonrpc": "2.0", "id": rpc_id, "method": method})
    try:
        return request(LB, "POST", "/mcp-demo/mcp", headers, body)
    except (OSError, http.client.HTTPException) as e:
        raise CheckFailed(f"MCP {method}: {e}") from e


def check_mcp_open():
    status, headers, body = mcp_call(None, "initialize", 1)
    session = headers.get("mcp-session-id")
    if status != 200 or not session:
        raise CheckFailed(f"MCP initialize: {status} {body[:200]!r}")
    status, _, body = mcp_call(session, "tools/list", 2)
    if status != 200:
        raise CheckFailed(f"MCP tools/list: {status} {body[:200]!r}")
    log("MCP session open")
    return session


class SseStream:
    """A minimal EventSource over one HTTP/1.1 connection to the LB."""

    def __init__(self, path, last_id=None, timeout=10.0):
        headers = dict(CLIENT, accept="text/event-stream")
        if last_id:
            headers["last-event-id"] = last_id
        self.conn = http.client.HTTPConnection(*LB, timeout=timeout)
        self.conn.request("GET", path, headers=headers)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status

    def next_event(self):
        """(id, data) of the next event, or None at the end of the stream."""
        event_id, data = None, []
        while True:
            line = self.resp.readline()
            if not line:
                return None
            line = line.decode().rstrip("\r\n")
            if line == "":
                if data:
                    return event_id, "\n".join(data)
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "id":
                event_id = value
            elif field == "data":
                data.append(value)

    def close(self):
        self.conn.close()


def event_number(data):
    return json.loads(data)["n"]


def stream_producer():
    """The node producing the one live stream, from any node's admin API."""
    for addr in NODE_ADMIN.values():
        status, body = try_json(addr, "GET", "/admin/v1/streams", ADMIN)
        if status == 200 and body and body.get("streams"):
            return body["streams"][0]["producer"]
    return None


def resume(path, last_id, deadline_s):
    """Reconnects like an EventSource until a node accepts the stream."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            stream = SseStream(path, last_id)
            if stream.status == 200:
                return stream
            stream.close()
        except (OSError, http.client.HTTPException):
            pass
        if time.monotonic() > end:
            raise CheckFailed(f"the stream did not resume within {deadline_s} s")
        time.sleep(0.2)


def check_stream_survives_node_kill(session):
    path = f"/events/sse?to={SSE_EVENTS}&interval_ms=50&honour_last_event_id=1"
    stream = SseStream(path)
    if stream.status != 200:
        raise CheckFailed(f"SSE open: {stream.status}")
    numbers, last_id = [], None
    while len(numbers) < 40:
        ev = stream.next_event()
        if ev is None:
            raise CheckFailed("the stream ended before the kill")
        last_id, data = ev
        numbers.append(event_number(data))
    producer = wait_for("the stream in /admin/v1/streams", stream_producer, 10)
    log(f"stream producer is {producer}; killing its container after event {numbers[-1]}")
    killed_at = time.monotonic()
    kill(producer)
    # Drain what the dead node's connection still delivers, then reconnect.
    try:
        while (ev := stream.next_event()) is not None:
            last_id, data = ev
            numbers.append(event_number(data))
    except (OSError, http.client.HTTPException):
        pass
    stream.close()
    measured("stream_cut_after_node_kill_seconds", time.monotonic() - killed_at)
    resumed = resume(path, last_id, 30)
    first = True
    while (ev := resumed.next_event()) is not None:
        if first:
            measured("stream_resume_after_node_kill_seconds", time.monotonic() - killed_at)
            first = False
        numbers.append(event_number(ev[1]))
    resumed.close()
    want = list(range(1, SSE_EVENTS + 1))
    if numbers != want:
        missing = sorted(set(want) - set(numbers))
        dups = sorted({n for n in numbers if numbers.count(n) > 1})
        raise CheckFailed(f"stream after the kill: missing {missing[:20]}, repeated {dups[:20]}")
    log(f"stream resumed on another node: events 1..{SSE_EVENTS} exactly once, in order")
    # The session lives in Redis: it answers through whichever node is left.
    wait_for("the load balancer to drop the dead node",
             lambda: all(try_json(LB, "GET", "/api/x", CLIENT)[0] == 200 for _ in range(4)), 30)
    for i in range(6):
        status, _, body = mcp_call(session, "tools/list", 10 + i)
        if status != 200:
            raise CheckFailed(f"MCP session after the node kill: {status} {body[:200]!r}")
    log("MCP session still answers after the node kill")
    return producer


def cluster_view(exclude=()):
    """/v1/cluster from the first coordinator that answers with a leader."""
    for i, addr in COORDINATORS.items():
        if i in exclude:
            continue
        status, body = try_json(addr, "GET", "/v1/cluster")
        if status == 200 and body and body.get("leader") is not None:
            return body
    return None


def owners(view):
    return {cred: a["node"] for cred, a in view["assignments"].items()}


def owners_seen_by_nodes(live):
    seen = {}
    for node in live:
        status, body = try_json(NODE_ADMIN[node], "GET", "/admin/v1/credentials", ADMIN)
        if status != 200:
            return None
        seen[node] = {c["name"]: c["owner"] for c in body["credentials"]}
    return seen


def check_ownership_survives_leader_kill(dead_node):
    live = sorted(n for n in NODE_ADMIN if n != dead_node)
    view = wait_for("a leader and every credential owned by a live node",
                    lambda: (v := cluster_view()) and v["assignments"]
                    and all(o in live for o in owners(v).values()) and v, 30)
    before = owners(view)
    leader = view["leader"]
    log(f"owners {before}; killing coordinator{leader} (the leader, term {view['term']})")
    killed_at = time.monotonic()
    kill(f"coordinator{leader}")
    after = wait_for("a new leader", lambda: (v := cluster_view(exclude={leader}))
                     and v["leader"] != leader and v, 30)
    measured("new_raft_leader_seconds", time.monotonic() - killed_at)
    if owners(after) != before:
        raise CheckFailed(f"owners moved when only the leader died: {before} -> {owners(after)}")
    wait_for("every live node to see the same owners",
             lambda: (s := owners_seen_by_nodes(live)) and all(v == before for v in s.values()), 30)
    # One fresh token for the whole cluster: drop it, count token calls.
    request(MOCK, "POST", "/_mock/reset")
    status, _, _ = request(NODE_ADMIN[live[0]], "DELETE", "/admin/v1/credentials/demo-oauth/token", ADMIN)
    if status not in (200, 204):
        raise CheckFailed(f"DELETE token: {status}")
    for i in range(8):
        status, _ = try_json(LB, "GET", f"/api/after-{i}", CLIENT)
        if status != 200:
            raise CheckFailed(f"request after the leader kill: {status}")
    calls = try_json(MOCK, "GET", "/_mock/stats")[1]["token_calls_total"]
    if calls != 1:
        raise CheckFailed(f"the dropped token was fetched {calls} times, not once")
    log(f"new leader coordinator{after['leader']}, owners unchanged, one token fetch for the cluster")


def main():
    try:
        check_healthy()
        check_credentialed_request()
        session = check_mcp_open()
        dead = check_stream_survives_node_kill(session)
        check_ownership_survives_leader_kill(dead)
    except CheckFailed as e:
        print(f"FAIL: {e}", file=sys.stderr, flush=True)
        return 1
    log("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())

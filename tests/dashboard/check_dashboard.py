#!/usr/bin/env python3
"""Drives the node's admin dashboard in a real headless Chromium (Debian's
`chromium` + `chromium-driver`, through Selenium 4) the way an operator uses
it, and checks what the operator would see:

1. without the token: only the login form; no data endpoint answers 200; a
   wrong token is refused and nothing else shows; the page's CSP and
   security headers are there and the page breaks none of its CSP;
2. after logging in: node health and readiness, the cluster card, the
   credential put in cooldown with its owner and a cooldown countdown, a live
   SSE stream with its producer, epoch and buffered events, the MCP session,
   and a request rate computed from /metrics while traffic flows;
3. a screenshot of that (--screenshot);
4. the Refresh button reaches the token server (the mock's token_calls grow)
   and the credential shows its new token; Drop token drops it; Log out removes every value;
5. no secret or issued token anywhere: DOM, storage, cookies, console, every
   URL, request and response header and response body in Chrome's network
   log. The admin token itself may only travel as the Authorization header of
   /admin/v1/ requests (and sit in the tab's sessionStorage).

Prints one `ok:` line per check; exits 0 when all pass, 1 on a failed check,
3 when Chromium, chromedriver or Selenium is missing (saying what to install).
"""

import argparse
import base64
import json
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request

INSTALL = (
    "install them with: apt-get install -y chromium chromium-driver && "
    "python3 -m pip install selenium"
)


def missing(what):
    print(f"MISSING: {what}; {INSTALL}", file=sys.stderr)
    sys.exit(3)


try:
    from selenium import webdriver
    from selenium.common.exceptions import (
        NoAlertPresentException,
        NoSuchElementException,
        StaleElementReferenceException,
        WebDriverException,
    )
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
except ImportError:
    missing("the Python package selenium")


class Failed(Exception):
    pass


def ok(msg):
    print(f"ok: {msg}", flush=True)


# Drained on every poll of `wait`, so that response bodies are read while
# Chrome still holds them.
NETWORK = None


def wait(what, timeout, check, drain=True):
    """Polls `check` until it returns a truthy value; fails after `timeout`.
    `drain=False` while a dialog is open (any other command would dismiss it)."""
    end = time.monotonic() + timeout
    last = None
    while True:
        if drain and NETWORK is not None:
            NETWORK.drain()
        try:
            v = check()
            if v:
                return v
        except (StaleElementReferenceException, NoSuchElementException, NoAlertPresentException) as e:
            last = e
        if time.monotonic() > end:
            raise Failed(f"timed out after {timeout}s waiting for {what}" + (f" ({last})" if last else ""))
        time.sleep(0.1)


def http(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Network:
    """Chrome's network log (performance log) with every response body."""

    def __init__(self, driver):
        self.driver = driver
        self.requests = {}  # id -> {url, method, headers, postData}
        self.extra_headers = []  # (id, headers) as actually sent
        self.responses = {}  # id -> {url, status, headers}
        self.bodies = {}  # id -> text
        self.missing = []

    def drain(self):
        for entry in self.driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            method, p = msg.get("method"), msg.get("params", {})
            rid = p.get("requestId")
            if method == "Network.requestWillBeSent":
                self.requests[rid] = p["request"]
            elif method == "Network.requestWillBeSentExtraInfo":
                # May come before requestWillBeSent: the URL is looked up later.
                self.extra_headers.append((rid, p.get("headers", {})))
            elif method == "Network.responseReceived":
                r = p["response"]
                self.responses[rid] = {"url": r["url"], "status": r["status"], "headers": r.get("headers", {})}
            elif method == "Network.responseReceivedExtraInfo":
                self.responses.setdefault(rid, {"url": "?", "status": p.get("statusCode"), "headers": {}})
                self.responses[rid]["headers"] = {**self.responses[rid]["headers"], **p.get("headers", {})}
            elif method == "Network.loadingFinished" and rid not in self.bodies:
                try:
                    b = self.driver.execute_cdp_cmd("Network.getResponseBody", {"requestId": rid})
                    body = b.get("body", "")
                    if b.get("base64Encoded"):
                        body = base64.b64decode(body).decode("utf-8", "replace")
                    self.bodies[rid] = body
                except WebDriverException as e:
                    self.missing.append((rid, str(e).splitlines()[0]))

    def path_of(self, url):
        return re.sub(r"^https?://[^/]+", "", url)

    def answered(self, path_prefix, status=None):
        self.drain()
        return [
            r for r in self.responses.values()
            if self.path_of(r["url"]).startswith(path_prefix) and (status is None or r["status"] == status)
        ]


def header(headers, name):
    for k, v in headers.items():
        if k.lower() == name:
            return v
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--admin", required=True, help="admin listener base URL")
    ap.add_argument("--token", required=True, help="the admin token")
    ap.add_argument("--secrets", required=True, help="comma-separated secrets that must appear nowhere")
    ap.add_argument("--patterns", default="mocktok-,eyJ", help="comma-separated issued-token patterns")
    ap.add_argument("--mock", required=True, help="mock upstream base URL (/_mock/stats, /_mock/config)")
    ap.add_argument("--node-id", required=True)
    ap.add_argument("--mode", default="embedded")
    ap.add_argument("--cooldown-credential", required=True)
    ap.add_argument("--cooldown-client", required=True, help="its OAuth client id at the mock")
    ap.add_argument("--owner", required=True, help="owner the dashboard must show for it")
    ap.add_argument("--stream-route", required=True)
    ap.add_argument("--session-route", required=True)
    ap.add_argument("--traffic", required=True, help="a URL on the proxy answering without a client key")
    ap.add_argument("--screenshot", required=True)
    ap.add_argument("--timeout", type=float, default=20.0)
    a = ap.parse_args()

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_bin = shutil.which("chromedriver")
    if not chromium:
        missing("the chromium browser")
    if not driver_bin:
        missing("chromedriver (Debian package chromium-driver)")

    secrets = [s for s in a.secrets.split(",") if s]
    patterns = [p for p in a.patterns.split(",") if p]
    forbidden = secrets + patterns + [a.token]
    base = a.admin.rstrip("/")
    page = base + "/admin/"
    t = a.timeout

    profile = tempfile.mkdtemp(prefix="rhizome-dashboard-chrome-")
    opts = Options()
    opts.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--window-size=1400,1000",
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_bin), options=opts)
    console = []
    try:
        run(driver, a, page, base, forbidden, secrets, patterns, t, console)
    except Failed as e:
        shot = os.path.splitext(a.screenshot)[0] + "-failure.png"
        try:
            driver.save_screenshot(shot)
            print(f"failure screenshot: {shot}", file=sys.stderr)
        except WebDriverException:
            pass
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return 0


def by_id(driver, i):
    return driver.find_element(By.ID, i)


def cred_cell(driver, name, cls):
    return driver.find_element(By.CSS_SELECTOR, f'#credentials tr[data-credential="{name}"] td.{cls}')


def console_drain(driver, console):
    for e in driver.get_log("browser"):
        console.append(e.get("message", ""))


# A JWT is a word starting eyJ followed by '.'; a random stream id may hold "eyJ".
JWT = re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]*\.")


def leaks(pattern, text):
    if pattern == "eyJ":
        return JWT.search(text) is not None
    return pattern in text


def run(driver, a, page, base, forbidden, secrets, patterns, t, console):
    global NETWORK
    # Room for every body of the run (Chrome's default buffers evict them).
    driver.execute_cdp_cmd("Network.enable", {"maxTotalBufferSize": 200_000_000, "maxResourceBufferSize": 20_000_000})
    net = NETWORK = Network(driver)

    # --- 1. Without the token ------------------------------------------------
    driver.get(page)
    wait("the login form", t, lambda: by_id(driver, "login").is_displayed())
    if by_id(driver, "dashboard").is_displayed():
        raise Failed("the dashboard shows before any login")
    body_text = driver.find_element(By.TAG_NAME, "body").text
    if a.cooldown_credential in body_text or a.node_id in body_text.split():
        raise Failed(f"data visible without the token: {body_text!r}")
    visible = [e.get_attribute("id") for e in driver.find_elements(By.CSS_SELECTOR, "main > *") if e.is_displayed()]
    if visible != ["login"]:
        raise Failed(f"without the token, visible sections are {visible}, not just the login form")
    ok("without a token only the login form shows")

    doc = [r for r in net.answered("/admin/") if net.path_of(r["url"]) == "/admin/"]
    if not doc:
        raise Failed("no response for /admin/ in the network log")
    h = doc[-1]["headers"]
    csp = header(h, "content-security-policy") or ""
    for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
                      "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'"):
        if directive not in csp:
            raise Failed(f"CSP lacks {directive!r}: {csp!r}")
    for name, want in (("x-content-type-options", "nosniff"), ("referrer-policy", "no-referrer"),
                       ("cache-control", "no-store")):
        if header(h, name) != want:
            raise Failed(f"/admin/ answers {name}: {header(h, name)!r}, not {want!r}")
    ok(f"/admin/ carries Content-Security-Policy: {csp}; nosniff, no-referrer, no-store")

    # A wrong token is refused; still nothing but the form.
    by_id(driver, "token").send_keys("not-the-admin-token")
    by_id(driver, "login-submit").click()
    err = wait("the login error", t, lambda: by_id(driver, "login-error").is_displayed() and by_id(driver, "login-error"))
    if by_id(driver, "dashboard").is_displayed():
        raise Failed("the dashboard shows after a wrong token")
    ok(f"a wrong token is refused: {err.text!r}")

    data_ok = [r["url"] for r in net.answered("/admin/v1/", 200)] + [r["url"] for r in net.answered("/metrics", 200)]
    if data_ok:
        raise Failed(f"data endpoints answered 200 without the token: {data_ok}")
    refused = net.answered("/admin/v1/", 401)
    if not refused:
        raise Failed("the wrong token was never checked against the node")
    ok(f"no data endpoint answered without the token ({len(refused)} refused with 401)")
    driver.save_screenshot(os.path.splitext(a.screenshot)[0] + "-login.png")

    # --- 2. Log in -----------------------------------------------------------
    by_id(driver, "token").send_keys(a.token)
    by_id(driver, "login-submit").click()
    wait("the dashboard", t, lambda: by_id(driver, "dashboard").is_displayed())
    if by_id(driver, "login").is_displayed():
        raise Failed("the login form still shows after logging in")
    if by_id(driver, "token").get_attribute("value"):
        raise Failed("the token input still holds the token")
    if a.token in driver.current_url:
        raise Failed("the token is in the page URL")
    stored = driver.execute_script("return window.sessionStorage.getItem('rhizome.admin_token')")
    if stored != a.token:
        raise Failed("the token is not kept in sessionStorage")
    ok("logged in: the token is kept in sessionStorage, not in the URL or the form")

    wait("node health", t, lambda: by_id(driver, "node-health").text == "ok")
    wait("node readiness", t, lambda: by_id(driver, "node-ready").text == "ready")
    wait("the node id", t, lambda: by_id(driver, "node-id").text == a.node_id)
    ok(f"node {a.node_id}: health ok, readiness ready")
    wait("the cluster mode", t, lambda: by_id(driver, "cluster-mode").text == a.mode)
    nodes = by_id(driver, "cluster-nodes").text
    if a.node_id not in nodes:
        raise Failed(f"cluster nodes {nodes!r} lack {a.node_id}")
    ok(f"cluster: mode {a.mode}, degraded {by_id(driver, 'cluster-degraded').text!r}, "
       f"leader {by_id(driver, 'cluster-leader').text!r}, nodes {nodes!r}, redis {by_id(driver, 'redis-state').text!r}")

    name = a.cooldown_credential
    wait(f"{name}'s owner", t, lambda: cred_cell(driver, name, "owner").text == a.owner)
    cool = wait(f"{name}'s cooldown", t, lambda: re.fullmatch(
        r"\d+(\.\d)? s|\d+ min \d+ s", cred_cell(driver, name, "cooldown").text) and cred_cell(driver, name, "cooldown").text)
    failures = int(cred_cell(driver, name, "failures").text)
    if failures < 1:
        raise Failed(f"{name} in cooldown shows {failures} failures")
    first = cool
    wait(f"{name}'s cooldown to count down", t, lambda: cred_cell(driver, name, "cooldown").text not in (first, "—"))
    ok(f"credential {name}: owner {a.owner}, cooldown {cool} counting down "
       f"({cred_cell(driver, name, 'cooldown').text}), {failures} failures")

    claims = driver.find_elements(By.CSS_SELECTOR, "#credentials td.claims li")
    if claims:
        ok(f"non-secret claims shown, e.g. {claims[0].text!r}")

    stream = wait("a live SSE stream", t, lambda: [
        r for r in driver.find_elements(By.CSS_SELECTOR, "#streams tr[data-stream]")
        if r.find_element(By.CSS_SELECTOR, "td.route").text == a.stream_route
        and r.find_element(By.CSS_SELECTOR, "td.producer").text == a.node_id
        and int(r.find_element(By.CSS_SELECTOR, "td.buffered").text) >= 1
    ])[0]
    ok(f"SSE stream {stream.get_attribute('data-stream')}: route {a.stream_route}, producer {a.node_id}, "
       f"epoch {stream.find_element(By.CSS_SELECTOR, 'td.epoch').text}, "
       f"buffered {stream.find_element(By.CSS_SELECTOR, 'td.buffered').text} events")

    sess = wait("the MCP session", t, lambda: [
        r for r in driver.find_elements(By.CSS_SELECTOR, "#sessions tr[data-session]")
        if r.find_element(By.CSS_SELECTOR, "td.route").text == a.session_route
    ])
    headers = [th.text for th in driver.find_elements(By.CSS_SELECTOR, "#sessions thead th")]
    if any("upstream" in h.lower() for h in headers):
        raise Failed(f"the session list shows upstream ids: {headers}")
    ok(f"{len(sess)} MCP session(s) listed on route {a.session_route} ({by_id(driver, 'sessions-count').text}), "
       f"columns {headers}")

    # Live request rate: traffic flows while the page polls /metrics.
    def rate_up():
        http("GET", a.traffic)
        m = re.match(r"([\d.]+) /s", by_id(driver, "rate-requests").text)
        return m and float(m.group(1)) > 0 and by_id(driver, "rate-requests").text

    rate = wait("a request rate above zero", t, rate_up)
    ok(f"request rate from /metrics: {rate}; errors {by_id(driver, 'rate-errors').text}")

    # --- 3. Screenshot -------------------------------------------------------
    # The whole page, not just the window.
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png",
        "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
    })
    os.makedirs(os.path.dirname(os.path.abspath(a.screenshot)), exist_ok=True)
    with open(a.screenshot, "wb") as f:
        f.write(base64.b64decode(shot["data"]))
    ok(f"screenshot of the whole page ({int(size['width'])}x{int(size['height'])}) saved: {a.screenshot}")

    # --- 4. Actions ----------------------------------------------------------
    def token_calls():
        status, raw = http("GET", a.mock + "/_mock/stats")
        if status != 200:
            raise Failed(f"mock stats answered {status}")
        return json.loads(raw)["token_calls"].get(a.cooldown_client, 0)

    if cred_cell(driver, name, "token").text != "none":
        raise Failed(f"{name} shows a token while its token endpoint fails")
    before = token_calls()
    status, raw = http("POST", a.mock + "/_mock/config", {"fail_clients": []})
    if status != 200:
        raise Failed(f"mock config answered {status}: {raw!r}")
    cred_cell(driver, name, "actions").find_element(By.CSS_SELECTOR, 'button[data-action="refresh"]').click()
    wait("the token server to see the refresh", t, lambda: token_calls() > before)
    msg = wait("the refresh result", t, lambda: by_id(driver, "action-status").text.startswith(f"Refreshed {name}")
               and by_id(driver, "action-status").text)
    wait(f"{name}'s new token", t, lambda: cred_cell(driver, name, "token").text == "cached")
    version = cred_cell(driver, name, "version").text
    ok(f"Refresh reached the token server ({before} -> {token_calls()} calls): {msg!r}; "
       f"token cached, version {version}")

    cred_cell(driver, name, "actions").find_element(By.CSS_SELECTOR, 'button[data-action="drop"]').click()
    alert = wait("the confirmation", t, lambda: driver.switch_to.alert, drain=False)
    alert.accept()
    msg = wait("the drop result", t, lambda: by_id(driver, "action-status").text.startswith("Dropped token")
               and by_id(driver, "action-status").text)
    wait(f"{name} without a token", t, lambda: cred_cell(driver, name, "token").text == "none")
    ok(f"Drop token: {msg!r}; the credential shows no token")

    # --- 5. Secrets ----------------------------------------------------------
    net.drain()
    console_drain(driver, console)
    dom = driver.execute_script(
        "return document.documentElement.outerHTML + '\\n' + document.body.innerText + '\\n' +"
        " Array.from(document.querySelectorAll('input')).map(i => i.value).join('\\n')")
    local = driver.execute_script("return JSON.stringify(Object.assign({}, window.localStorage))")
    session = driver.execute_script(
        "const o = Object.assign({}, window.sessionStorage); delete o['rhizome.admin_token']; return JSON.stringify(o)")
    cookies = json.dumps(driver.get_cookies())
    places = {"DOM": dom, "localStorage": local, "sessionStorage (other keys)": session, "cookies": cookies,
              "console": "\n".join(console)}
    for rid, req in net.requests.items():
        places[f"URL {req['url']}"] = req["url"]
        places[f"request body {req['url']}"] = req.get("postData", "")
        places[f"request headers {req['url']}"] = json.dumps(
            {k: v for k, v in req.get("headers", {}).items() if k.lower() != "authorization"})
    for rid, hdrs in net.extra_headers:
        url = net.requests.get(rid, {}).get("url", f"(request {rid})")
        auth = header(hdrs, "authorization")
        if auth is not None and not (net.path_of(url).startswith("/admin/v1/") and auth.startswith("Bearer ")):
            raise Failed(f"an Authorization header went to {url}")
        places[f"sent headers {url}"] = json.dumps({k: v for k, v in hdrs.items() if k.lower() != "authorization"})
    for rid, r in net.responses.items():
        places[f"response headers {r['url']}"] = json.dumps(r["headers"])
    for rid, body in net.bodies.items():
        url = net.responses.get(rid, {}).get("url", rid)
        places[f"response body {url}"] = body
    bodies = [u for u in places if u.startswith("response body") and "/admin/v1/credentials" in u]
    if not bodies:
        raise Failed("no credentials response body was captured to search")
    # Chrome's own pages (chrome://) keep no bodies; every one from the node must be there.
    unread = [net.requests.get(rid, {}).get("url", rid) for rid, _ in net.missing]
    unread = [u for u in unread if u.startswith(base)]
    if unread:
        raise Failed(f"response bodies not captured, so not searched: {unread}")
    found = [f"{p!r} in {where}" for where, text in places.items() for p in forbidden if leaks(p, text)]
    if found:
        raise Failed("secrets or tokens exposed: " + "; ".join(found))
    # (The patterns themselves are not printed: this output is kept with the logs and scanned too.)
    ok(f"no secret ({len(secrets)}), issued-token pattern ({len(patterns)}) or admin token in the DOM, storage, "
       f"cookies, console or {len(net.requests)} requests / {len(net.bodies)} response bodies")

    csp_errors = [m for m in console if "Content Security Policy" in m or "Refused to" in m]
    if csp_errors:
        raise Failed(f"the page breaks its own CSP: {csp_errors}")
    ok("no CSP violation in the console")

    # --- Log out -------------------------------------------------------------
    by_id(driver, "logout").click()
    wait("the login form after logging out", t, lambda: by_id(driver, "login").is_displayed())
    if driver.execute_script("return window.sessionStorage.length") != 0:
        raise Failed("the token outlives the logout")
    rows = driver.find_elements(By.CSS_SELECTOR, "#credentials tbody tr, #sessions tbody tr, #streams tbody tr")
    if rows or name in driver.page_source:
        raise Failed("data outlives the logout")
    ok("Log out forgets the token and every value shown")


if __name__ == "__main__":
    sys.exit(main())

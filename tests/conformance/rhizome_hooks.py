"""schemathesis hooks of run_schemathesis.sh.

An intent's `timeout_ms` bounds the whole exchange; a deadline shorter than
the exchange takes is answered 504 `upstream_timeout`, by design (the proxy
tests check it). A generated deadline of a few milliseconds would make that
504 depend on how busy the machine is, and schemathesis counts any 5xx as a
server error. So a schema-valid deadline below MIN_TIMEOUT_MS is raised to
it; every other value, schema-invalid ones included, is left as generated.
"""

import schemathesis

MIN_TIMEOUT_MS = 5000


def _short_valid_deadline(value):
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return not isinstance(value, bool) and whole and 1 <= value < MIN_TIMEOUT_MS


@schemathesis.hook
def map_body(ctx, body):
    if isinstance(body, dict) and _short_valid_deadline(body.get("timeout_ms")):
        body["timeout_ms"] = MIN_TIMEOUT_MS
    return body

#!/usr/bin/env python3
"""Checks farthing's webhook deliveries with the independent Standard Webhooks library.

Run by crates/farthing-server/tests/webhooks.rs, which captures real deliveries:

    python3 verify_webhooks.py CASES.json

CASES.json is a list of {"secret": "whsec_...", "headers": {name: value}, "body": "<raw body>"}.
Every case must verify with `standardwebhooks.Webhook(secret).verify(body, headers)`, and
tampered copies of it (body, id, timestamp, secret) must be refused, so that this check can
fail at all. Exit status: 0 all good, 1 a check failed, 3 the package is not installed
(./scripts/test installs it), 2 bad usage.
"""

import base64
import json
import sys

try:
    import standardwebhooks
    from standardwebhooks import Webhook, WebhookVerificationError
except ImportError as error:
    print(
        f"MISSING: the Python package standardwebhooks is not importable ({error}); "
        "run ./scripts/test, which installs it",
        file=sys.stderr,
    )
    sys.exit(3)


def tampered_copies(case):
    """Changed copies of a delivery that a correct verifier must refuse."""
    headers = case["headers"]
    body = case["body"]
    yield "body with one byte appended", case["secret"], headers, body + " "
    if body:
        flipped = chr(ord(body[0]) ^ 1) + body[1:]
        yield "body with its first byte changed", case["secret"], headers, flipped
    yield "another webhook-id", case["secret"], {**headers, "webhook-id": headers.get("webhook-id", "") + "x"}, body
    try:
        earlier = str(int(headers.get("webhook-timestamp", "0")) - 1)
    except ValueError:
        earlier = "0"
    yield "another webhook-timestamp", case["secret"], {**headers, "webhook-timestamp": earlier}, body
    other_secret = "whsec_" + base64.b64encode(b"not the endpoint's secret, 32 b!").decode()
    yield "another secret", other_secret, headers, body


def main():
    if len(sys.argv) != 2:
        print("usage: verify_webhooks.py CASES.json", file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as file:
        cases = json.load(file)
    if not cases:
        print("FAIL: no deliveries to verify", file=sys.stderr)
        return 1
    failures = []
    refused = 0
    for index, case in enumerate(cases):
        try:
            Webhook(case["secret"]).verify(case["body"], case["headers"])
        except Exception as error:  # any exception is a failed verification
            failures.append(f"delivery {index} ({case['headers'].get('webhook-id')}) does not verify: {error!r}")
            continue
        for what, secret, headers, body in tampered_copies(case):
            try:
                Webhook(secret).verify(body, headers)
            except WebhookVerificationError:
                refused += 1
            else:
                failures.append(f"delivery {index}: a copy with {what} still verifies")
    if failures:
        for failure in failures:
            print("FAIL:", failure, file=sys.stderr)
        return 1
    print(
        f"standardwebhooks {getattr(standardwebhooks, '__version__', '?')}: verified {len(cases)} deliveries, "
        f"refused {refused} tampered copies"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

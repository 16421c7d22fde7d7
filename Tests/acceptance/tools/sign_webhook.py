"""Signs a webhook body the way each provider's own library does, and prints the headers (one
"Name: value" per line) for curl. Used by Tests/acceptance/webhooks.sh; the signers are the providers'
published packages from PyPI (standardwebhooks, stripe, githubkit, slack_sdk), not the portal's code.

    sign_webhook.py SCHEME SECRET BODY_FILE [EVENT_ID]
"""
import sys
import time
from datetime import datetime, timezone


def main() -> None:
    scheme, secret, body_file = sys.argv[1], sys.argv[2], sys.argv[3]
    event_id = sys.argv[4] if len(sys.argv) > 4 else "evt_acceptance"
    body = open(body_file, "rb").read().decode()
    now = int(time.time())
    if scheme == "standard-webhooks":
        from standardwebhooks.webhooks import Webhook
        signature = Webhook(secret).sign(event_id, datetime.fromtimestamp(now, tz=timezone.utc), body)
        print(f"webhook-id: {event_id}\nwebhook-timestamp: {now}\nwebhook-signature: {signature}")
    elif scheme == "stripe":
        import stripe
        print("Stripe-Signature: " + stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=now))
    elif scheme == "github":
        from githubkit.webhooks import sign
        print(f"X-Hub-Signature-256: {sign(secret, body, method='sha256')}\nX-GitHub-Delivery: {event_id}\nX-GitHub-Event: push")
    elif scheme == "slack":
        from slack_sdk.signature import SignatureVerifier
        signature = SignatureVerifier(secret).generate_signature(timestamp=str(now), body=body)
        print(f"X-Slack-Request-Timestamp: {now}\nX-Slack-Signature: {signature}")
    else:
        raise SystemExit(f"unknown scheme {scheme}")


if __name__ == "__main__":
    main()

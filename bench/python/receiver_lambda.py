"""The Python twin of the `receiver` Lambda, for the cold-start benchmark (bench/src/bin/coldstart.rs).

Run as Lambda's Python runtime does: `python -m awslambdaric receiver_lambda.handler` with
AWS_LAMBDA_RUNTIME_API set (the benchmark points it at the same local Runtime API stand-in as the
Rust binary). Per delivery it does what the Rust receiver does on the accept path: Standard Webhooks
verification (`standardwebhooks`), a conditional PutItem claiming the webhook id in the dedupe
table, SendMessage of an envelope to the queue, and an UpdateItem marking the claim ENQUEUED.
Clients are created at import time, as a tuned Python Lambda would, so their cost is in the cold
start and not in each invocation. Configuration comes from the receiver's environment variables.
"""

import base64
import hashlib
import json
import os
import time
import uuid

import boto3
from botocore.exceptions import ClientError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

_SECRET = os.environ["WEBHOOK_SIGNING_SECRETS"].split(",")[0].strip()
_TABLE = os.environ["DEDUPE_TABLE"]
_QUEUE = os.environ["QUEUE_URL"]
_RETENTION_S = int(os.environ.get("DEDUPE_RETENTION_HOURS", "168")) * 3600
_LEASE_MS = 60_000

_WEBHOOK = Webhook(_SECRET)
_DDB = boto3.client("dynamodb")
_SQS = boto3.client("sqs")


def _reply(status, payload):
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(payload),
    }


def handler(event, context):
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    try:
        _WEBHOOK.verify(raw, headers)
    except WebhookVerificationError:
        return _reply(401, {"status": "rejected"})
    try:
        payload = json.loads(raw)
    except ValueError:
        return _reply(400, {"status": "rejected"})

    webhook_id = headers["webhook-id"]
    now_ms = int(time.time() * 1000)
    owner = str(uuid.uuid4())
    try:
        _DDB.put_item(
            TableName=_TABLE,
            Item={
                "webhook_id": {"S": webhook_id},
                "status": {"S": "PENDING"},
                "owner": {"S": owner},
                "lease_until_ms": {"N": str(now_ms + _LEASE_MS)},
                "expires_at": {"N": str(now_ms // 1000 + _RETENTION_S)},
                "body_sha256": {"S": hashlib.sha256(raw).hexdigest()},
            },
            ConditionExpression="attribute_not_exists(webhook_id)",
        )
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return _reply(200, {"status": "duplicate"})
        raise

    envelope = {
        "kind": "webhook",
        "webhook_id": webhook_id,
        "received_at_ms": now_ms,
        "event": payload,
    }
    sent = _SQS.send_message(QueueUrl=_QUEUE, MessageBody=json.dumps(envelope))
    _DDB.update_item(
        TableName=_TABLE,
        Key={"webhook_id": {"S": webhook_id}},
        UpdateExpression="SET #st = :enqueued, #msg = :msg",
        ConditionExpression="#owner = :me",
        ExpressionAttributeNames={"#st": "status", "#msg": "message_id", "#owner": "owner"},
        ExpressionAttributeValues={
            ":enqueued": {"S": "ENQUEUED"},
            ":msg": {"S": sent["MessageId"]},
            ":me": {"S": owner},
        },
    )
    return _reply(200, {"status": "accepted"})

"""A webhook receiver for the tests, verifying signatures with the `standardwebhooks` package
(not with CarrierHub's code).

Every request is verified with standardwebhooks.Webhook(secret).verify(body, headers); the
secret is read from --secret-file (written once the webhook exists). The first --fail-first
attempts of each message are answered 500; a later one applies the message's effect once,
deduplicating by its webhook-id, and answers 204. While the file --fail-while exists, every
request is answered 500 (and not counted as an attempt). Each request may first wait --delay
seconds. Every request is appended to --log as a JSON line: id, verified, status, applied,
carrier. Prints its port on the first line of standard output.
"""

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

parser = argparse.ArgumentParser()
parser.add_argument("--secret-file", required=True)
parser.add_argument("--log", required=True)
parser.add_argument("--fail-first", type=int, default=0)
parser.add_argument("--delay", type=float, default=0.0)
parser.add_argument("--fail-while")
args = parser.parse_args()

lock = threading.Lock()
attempts = {}
applied = set()


def record(entry):
    with lock, open(args.log, "a") as log:
        log.write(json.dumps(entry) + "\n")


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *_):
        pass

    def answer(self, status):
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        record({"received": self.headers.get("webhook-id")})
        if args.delay:
            time.sleep(args.delay)
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            with open(args.secret_file) as f:
                secret = f.read().strip()
            payload = Webhook(secret).verify(body, headers)
        except Exception as e:  # noqa: BLE001 - any failure is an unverified request
            record({"id": headers.get("webhook-id"), "verified": False, "error": str(e)})
            self.answer(400)
            return
        message = headers["webhook-id"]
        if args.fail_while and os.path.exists(args.fail_while):
            record({"id": message, "verified": True, "status": 500, "applied": False,
                    "carrier": payload.get("carrier"), "type": payload.get("type")})
            self.answer(500)
            return
        with lock:
            attempts[message] = attempts.get(message, 0) + 1
            failing = attempts[message] <= args.fail_first
            first = not failing and message not in applied
            if first:
                applied.add(message)
        status = 500 if failing else 204
        record(
            {
                "id": message,
                "verified": True,
                "status": status,
                "applied": first,
                "carrier": payload.get("carrier"),
                "type": payload.get("type"),
            }
        )
        self.answer(status)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
try:
    server.serve_forever()
except KeyboardInterrupt:
    sys.exit(0)

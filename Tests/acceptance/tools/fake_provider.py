#!/usr/bin/env python3
"""A provider's user list for the sync acceptance test: cursor pagination over N users on 127.0.0.1.

GET /users?limit=&after=  -> {"data": [...], "meta": {"next": cursor|null}}, after a fixed delay per request.
GET /stats                -> {"requests": n, "pages": {"<after>": times served}}.
Prints its port on the first line of stdout.
"""
import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

parser = argparse.ArgumentParser()
parser.add_argument("--users", type=int, default=3000)
parser.add_argument("--delay-ms", type=int, default=40)
args = parser.parse_args()

USERS = [
    {"id": "u-%06d" % n, "email": "user%d@example.test" % n, "name": "User %d" % n, "updated_at": "2026-11-01T00:00:00Z"}
    for n in range(1, args.users + 1)
]
lock = threading.Lock()
stats = {"requests": 0, "pages": {}}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *_):
        pass

    def answer(self, document):
        body = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/stats":
            with lock:
                return self.answer(stats)
        if url.path != "/users":
            self.send_response(404)
            self.end_headers()
            return
        query = parse_qs(url.query)
        limit = int(query.get("limit", ["100"])[0])
        after = query.get("after", [""])[0]
        with lock:
            stats["requests"] += 1
            stats["pages"][after] = stats["pages"].get(after, 0) + 1
        time.sleep(args.delay_ms / 1000)
        rest = [u for u in USERS if u["id"] > after] if after else USERS
        page = rest[:limit]
        nxt = page[-1]["id"] if len(rest) > limit else None
        self.answer({"data": page, "meta": {"next": nxt}})


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()

#!/usr/bin/env python3
"""A stand-in third party for the soak (Tests/soak/soak.py): the gateway's upstream or the sync provider, one
process each, on 127.0.0.1, stopping by itself after --lifetime seconds.

Modes (POST /_soak/mode {"mode": M}), for every path but /_soak/*:
  healthy    answers at once
  fail       500 to everything (a 5xx burst)
  slow       answers after --slow-ms
  ratelimit  429 with Retry-After: 1
  blackhole  accepts the request and never answers (the connection is held, then dropped after 120 s)

Upstream paths: any method, any path: 200 {"ok": true, "path": ...} with X-RateLimit-* headers.
Provider paths: GET /users?limit=&after=&updated_since= pages (by id) the provider's users changed after
updated_since; POST /_soak/mutate {"add": n, "update": n, "delete": n} changes them and answers which.
GET /_soak/stats: requests served, by mode, and provider pages served.
Every answer carries X-Soak-Upstream: 1, so a client can tell an upstream's status from the portal's own.
Prints its port on the first line of stdout.
"""
import argparse
import json
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

parser = argparse.ArgumentParser()
parser.add_argument("--users", type=int, default=250)
parser.add_argument("--slow-ms", type=int, default=1500)
parser.add_argument("--lifetime", type=int, default=3600)
args = parser.parse_args()

lock = threading.Lock()
state = {"mode": "healthy", "requests": 0, "byMode": {}, "pages": 0, "next": args.users + 1}
# The provider's clock: every change is one second after the one before, so high-water marks are exact.
EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)
tick = [0]


def stamp() -> str:
    tick[0] += 1
    return (EPOCH + timedelta(seconds=tick[0])).strftime("%Y-%m-%dT%H:%M:%SZ")


users = {}
for n in range(1, args.users + 1):
    uid = "u-%06d" % n
    users[uid] = {"id": uid, "email": "user%d@example.test" % n, "name": "User %d" % n, "updated_at": stamp()}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_):
        pass

    def answer(self, code, document, headers=()):
        body = json.dumps(document).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Soak-Upstream", "1")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def control(self, url):
        if url.path == "/_soak/stats":
            with lock:
                return self.answer(200, {k: state[k] for k in ("mode", "requests", "byMode", "pages")} | {"users": len(users)})
        document = json.loads(self.body() or b"{}")
        if url.path == "/_soak/mode":
            with lock:
                state["mode"] = document["mode"]
            return self.answer(200, {"mode": document["mode"]})
        if url.path == "/_soak/mutate":
            changed = {"added": [], "updated": [], "deleted": []}
            with lock:
                existing = sorted(users)
                for uid in existing[: document.get("delete", 0)]:
                    del users[uid]
                    changed["deleted"].append(uid)
                for uid in sorted(users)[-document.get("update", 0):] if document.get("update", 0) else []:
                    users[uid] = dict(users[uid], name=users[uid]["name"] + "'", updated_at=stamp())
                    changed["updated"].append(uid)
                for _ in range(document.get("add", 0)):
                    uid = "u-%06d" % state["next"]
                    state["next"] += 1
                    users[uid] = {"id": uid, "email": uid + "@example.test", "name": uid, "updated_at": stamp()}
                    changed["added"].append(uid)
                changed["total"] = len(users)
            return self.answer(200, changed)
        self.answer(404, {"error": "unknown control"})

    def handle_any(self):
        url = urlparse(self.path)
        if url.path.startswith("/_soak/"):
            return self.control(url)
        self.body()
        with lock:
            mode = state["mode"]
            state["requests"] += 1
            state["byMode"][mode] = state["byMode"].get(mode, 0) + 1
        if mode == "blackhole":
            # Accepted and never answered: held until the client gives up (bounded, so the process ends).
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and state["mode"] == "blackhole":
                time.sleep(0.25)
            self.close_connection = True
            return
        if mode == "fail":
            return self.answer(500, {"error": "injected failure"})
        if mode == "ratelimit":
            return self.answer(429, {"error": "slow down"}, [("Retry-After", "1")])
        if mode == "slow":
            time.sleep(args.slow_ms / 1000)
        if url.path == "/users" and self.command == "GET":
            return self.users(parse_qs(url.query))
        self.answer(200, {"ok": True, "path": url.path}, [("X-RateLimit-Limit", "100000"), ("X-RateLimit-Remaining", "99000")])

    def users(self, query):
        limit = int(query.get("limit", ["100"])[0])
        after = query.get("after", [""])[0]
        since = query.get("updated_since", [""])[0]
        with lock:
            state["pages"] += 1
            rows = [users[u] for u in sorted(users) if (not after or u > after) and (not since or users[u]["updated_at"] > since)]
        page = rows[:limit]
        nxt = page[-1]["id"] if len(rows) > limit else None
        self.answer(200, {"data": page, "meta": {"next": nxt}})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
threading.Timer(args.lifetime, server.shutdown).start()
server.serve_forever()

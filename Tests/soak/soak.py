#!/usr/bin/env python3
"""`make soak`: every capability at once against a real deployment, faults injected on a schedule,
invariants checked during and after the run, and a report (stdout and var/soak/latest.md).

    soak.py [--minutes 10] [--backend sqlite|postgres|both] [--portal .build/release/portal] [--rate-scale 1]

Deployment: SQLite, one `portal serve`; PostgreSQL (a cluster of the soak's own, so it can be restarted), two
`portal serve` processes on one database with the load spread over both. The gateway's upstream and the
sync provider are separate processes (Tests/soak/soak_upstream.py) with switchable modes; OAuth
client-credentials tokens (one minute long) come from a local nanoidp. Everything is on 127.0.0.1, bounded
in time and request count, and stops by itself. Exit 1 when an invariant breaks.
"""
import argparse
import base64
import hashlib
import json
import math
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))
VENV_BIN = os.path.dirname(sys.executable)
PY312 = os.path.join(ROOT, ".venv312", "bin", "python")
METRICS_TOKEN = "soak-metrics-token-" + uuid.uuid4().hex
SLUG = "default"
# A client's limit: the longest an answer may take (the gateway's default deadline of 30 s, plus the
# database wait of 10 s the soak sets, plus slack). Longer is a hang.
CLIENT_TIMEOUT = 50
# The rates of the load mix, per second (scaled by --rate-scale), and the period of the slower loops.
RATES = {
    "gateway.requests": 6.0, "gateway.proxy": 2.0, "gateway.oauth": 2.0, "webhooks": 6.0, "tokens": 0.5,
    "metrics": 1.0, "subjects": 0.3, "checkpoints": 0.5,
}
PERIODS = {"reports": 30.0}
SCHEMES = [("standard-webhooks", "std"), ("stripe", "stripe"), ("github", "github")]


def log(message):
    print(time.strftime("%H:%M:%S ") + message, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def utc_date(offset_days=0):
    return (datetime.now(timezone.utc) + timedelta(days=offset_days)).strftime("%Y-%m-%d")


# ---------------------------------------------------------------------------------------------------------
# Processes


class Process:
    """A child process with its output in files; killed at exit whatever happens."""

    everything = []

    def __init__(self, name, argv, work, env=None, cwd=None):
        self.name, self.argv, self.work, self.env, self.cwd = name, argv, work, env, cwd
        self.popen = None
        self.started = 0.0
        Process.everything.append(self)

    def start(self):
        out = open(os.path.join(self.work, self.name + ".out"), "ab")
        err = open(os.path.join(self.work, self.name + ".log"), "ab")
        self.popen = subprocess.Popen(self.argv, stdout=out, stderr=err, env=self.env, cwd=self.cwd or self.work, start_new_session=True)
        self.started = time.monotonic()
        return self

    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def send(self, sig):
        if self.alive():
            self.popen.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, wait=20):
        if not self.alive():
            return self.popen.returncode if self.popen else None
        self.popen.send_signal(sig)
        try:
            return self.popen.wait(wait)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            return "killed"

    def rss_kib(self):
        try:
            for line in open("/proc/%d/status" % self.popen.pid):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except (OSError, AttributeError):
            return None
        return None

    def output(self):
        try:
            return open(os.path.join(self.work, self.name + ".out")).read()
        except OSError:
            return ""

    @classmethod
    def kill_all(cls):
        for p in cls.everything:
            if p.alive():
                try:
                    os.killpg(p.popen.pid, signal.SIGKILL)
                except OSError:
                    pass


def wait_until(seconds, check, every=0.2):
    deadline = time.monotonic() + seconds
    while True:
        try:
            value = check()
        except Exception:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(every)


def as_postgres(command):
    if os.getuid() == 0:
        return subprocess.run(["su", "postgres", "-s", "/bin/sh", "-c", "cd / && " + command], capture_output=True, text=True)
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True)


class Postgres:
    """A cluster of the soak's own on a free loopback port, so restarting it disturbs nothing else."""

    def __init__(self):
        bins = sorted(d for d in os.listdir("/usr/lib/postgresql") if os.path.isdir("/usr/lib/postgresql/%s/bin" % d))
        self.bin = "/usr/lib/postgresql/%s/bin" % bins[-1]
        self.dir = tempfile.mkdtemp(prefix="portal-soak-pg.")
        os.chmod(self.dir, 0o755)
        if os.getuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self.port = free_port()
        r = as_postgres("%s/initdb -D %s/data -U postgres -A trust --no-sync" % (self.bin, self.dir))
        if r.returncode != 0:
            raise SystemExit("initdb failed: " + r.stderr)
        self.ctl("start")
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-qc", "CREATE DATABASE soak"], check=True, capture_output=True)

    def ctl(self, action):
        r = as_postgres("%s/pg_ctl -D %s/data -l %s/log -w %s -o '-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200'"
                        % (self.bin, self.dir, self.dir, action, self.port, self.dir))
        if r.returncode != 0:
            raise RuntimeError("pg_ctl %s: %s" % (action, r.stderr or r.stdout))

    @property
    def url(self):
        return "postgres://postgres@127.0.0.1:%d/soak?sslmode=disable" % self.port

    def query(self, sql):
        r = subprocess.run(["psql", self.url.split("?")[0], "-AtqF", "\t", "-c", sql], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("psql: " + r.stderr)
        return [line.split("\t") for line in r.stdout.splitlines() if line]

    def close(self, keep=False):
        as_postgres("%s/pg_ctl -D %s/data -m fast stop" % (self.bin, self.dir))
        if keep:
            print("PostgreSQL data kept: %s/data (pg_ctl -D %s/data -o '-p %d' start)" % (self.dir, self.dir, self.port), flush=True)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------
# Records


@dataclass
class Record:
    op: str
    phase: str
    started: float
    seconds: float
    status: int  # 0: no answer (connection refused or reset); -1: the client's limit passed (a hang)
    retry_after: bool = False
    upstream: bool = False  # the status is the upstream's own, passed through by the proxy


@dataclass
class Invariant:
    name: str
    checked: int = 0
    violations: int = 0
    examples: list = field(default_factory=list)

    def check(self, ok, example=""):
        self.checked += 1
        if not ok:
            self.violations += 1
            if len(self.examples) < 5:
                self.examples.append(example)


class Phases:
    """The fault schedule, as fractions of the run: (start, end, name)."""

    PLAN = [
        (0.00, 0.12, "steady"), (0.12, 0.22, "upstream 5xx"), (0.22, 0.30, "recovery"), (0.30, 0.36, "upstream slow"),
        (0.36, 0.42, "upstream black hole"), (0.42, 0.47, "upstream 429"), (0.47, 0.52, "recovery"),
        (0.52, 0.60, "instance SIGKILL"), (0.60, 0.66, "postgres restart"), (0.66, 0.80, "oauth down"), (0.80, 1.00, "recovery"),
    ]

    def __init__(self, seconds, postgres):
        self.seconds = seconds
        self.start = None
        self.plan = [(a, b, "steady" if n == "postgres restart" and not postgres else n) for a, b, n in self.PLAN]
        # When a fault was active, in run seconds (with the time its effects may take to clear).
        self.windows = []
        self.lock = threading.Lock()

    def now(self):
        return time.monotonic() - self.start

    def name(self, at=None):
        at = self.now() if at is None else at
        for a, b, n in self.plan:
            if a * self.seconds <= at < b * self.seconds:
                return n
        return "drain"

    def open_window(self, name):
        with self.lock:
            self.windows.append([name, self.now(), None])

    def close_window(self, name, grace):
        with self.lock:
            for w in self.windows:
                if w[0] == name and w[2] is None:
                    w[2] = self.now() + grace

    def in_fault(self, at, kinds=None, until=None):
        """Whether `at` (or any moment up to `until`, for an operation that lasted) falls in a fault's window."""
        end = at if until is None else until
        with self.lock:
            return any(w[1] <= end and at <= (w[2] if w[2] is not None else math.inf) and (kinds is None or w[0] in kinds) for w in self.windows)


# ---------------------------------------------------------------------------------------------------------
# The run


class Soak:
    def __init__(self, backend, minutes, portal_bin, scale, work):
        self.backend, self.minutes, self.portal_bin, self.scale, self.work = backend, minutes, portal_bin, scale, work
        self.seconds = minutes * 60
        self.phases = Phases(self.seconds, backend == "postgres")
        self.records = []
        self.records_lock = threading.Lock()
        self.stop = threading.Event()
        self.invariants = {}
        self.notes = []
        self.instances = []
        self.pg = None
        self.admin = None
        self.rr = 0
        # What clients were told, for the invariants.
        self.gateway_answered = []  # (endpoint path, status)
        self.webhooks_acked = {}  # stored event id -> provider id
        self.sync_results = []
        self.bundles = []
        self.checkpoints = []
        self.alerts_seen = {}  # alertname -> [first firing run-second, last firing run-second]
        self.rss = {}  # instance name -> [(run second, KiB)]
        self.killed = []  # process names SIGKILLed by the fault
        self.lock = threading.Lock()

    # ---- helpers

    def invariant(self, name):
        with self.lock:
            return self.invariants.setdefault(name, Invariant(name))

    def note(self, text):
        with self.lock:
            self.notes.append(text)
        log("  " + text)

    def live(self):
        return [i for i in self.instances if i["up"]]

    def base(self):
        live = self.live() or self.instances
        self.rr += 1
        return live[self.rr % len(live)]["url"]

    def call(self, op, method, path, session, token=None, base=None, record=True, **kw):
        """One request, recorded with its phase and latency; answers the response or None."""
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = "Bearer " + token
        started = self.phases.now()
        t0 = time.monotonic()
        response, status = None, 0
        try:
            response = session.request(method, (base or self.base()) + path, headers=headers, timeout=CLIENT_TIMEOUT, **kw)
            status = response.status_code
        except requests.exceptions.Timeout:
            status = -1
        except requests.exceptions.RequestException:
            status = 0
        if record:
            r = Record(op, self.phases.name(started), started, time.monotonic() - t0, status,
                       retry_after=bool(response is not None and response.headers.get("Retry-After")),
                       upstream=bool(response is not None and response.headers.get("X-Soak-Upstream")))
            with self.records_lock:
                self.records.append(r)
        return response

    def paced(self, op, body):
        """Runs body() at the op's rate until the run ends."""
        rate = RATES[op] * self.scale
        session = requests.Session()
        interval = 1.0 / rate
        next_at = time.monotonic()
        while not self.stop.is_set():
            try:
                body(session)
            except Exception as error:  # a defect of the harness is reported, never silently swallowed
                self.note("%s: harness error %s: %s" % (op, type(error).__name__, error))
            next_at = max(next_at + interval, time.monotonic() - 1)
            self.stop.wait(max(0.0, next_at - time.monotonic()))

    # ---- deployment

    def portal_env(self):
        env = dict(os.environ)
        env.update({
            "PORTAL_DATABASE_URL": self.database_url, "PORTAL_OUTBOUND_ALLOW": "127.0.0.1", "PORTAL_PUBLIC_URL": "https://portal.soak.test",
            "PORTAL_METRICS_TOKEN": METRICS_TOKEN, "PORTAL_ALERT_RULES": self.rules_path, "PORTAL_DATABASE_WAIT": "10s",
            "PORTAL_MAX_INTEGRATIONS": "100", "PORTAL_MAX_TOKENS": "100000", "PORTAL_MAX_OPEN_REPORTS": "4", "PORTAL_LOG_LEVEL": "warning",
            "PORTAL_REPORTS_DIR": os.path.join(ROOT, "reports"),
            # The soak calls out through integrations it makes as it goes; approvals have their own tests.
            "PORTAL_APPROVALS": "off",
        })
        return env

    def start_instance(self, index):
        port = free_port()
        p = Process("portal-%d-%d" % (index, int(time.time() * 1000) % 100000), [self.portal_bin, "serve", "--port", str(port), "--master-key-file", self.key],
                    self.work, env=self.portal_env()).start()
        url = "http://127.0.0.1:%d" % port
        if not wait_until(180, lambda: requests.get(url + "/healthz", timeout=5).status_code == 200 or not p.alive(), every=0.25) or not p.alive():
            raise SystemExit("portal instance %d did not start: %s" % (index, open(os.path.join(self.work, p.name + ".log")).read()[-2000:]))
        instance = {"index": index, "url": url, "process": p, "up": True, "name": "instance %d" % index}
        if index < len(self.instances):
            self.instances[index] = instance
        else:
            self.instances.append(instance)
        return instance

    def deploy(self):
        self.key = os.path.join(self.work, "master.key")
        subprocess.run([self.portal_bin, "keys", "generate-master", "--out", self.key], check=True, capture_output=True)
        if self.backend == "postgres":
            self.pg = Postgres()
            self.database_url = self.pg.url
        else:
            self.database_url = "sqlite://" + os.path.join(self.work, "portal.sqlite")
        # Alert rules that act within the soak's minutes: an error rate over the shortest window (5 minutes) with
        # no pending time, and failures in a row.
        self.rules_path = os.path.join(self.work, "alert-rules.yml")
        open(self.rules_path, "w").write(
            "evaluationInterval: 2s\nrules:\n"
            "  - alert: SoakErrorRate\n    kind: error_rate\n    window: 5m\n    threshold: 0.1\n    minRequests: 5\n    for: 0s\n    repeatInterval: 4h\n"
            "  - alert: SoakIntegrationFailing\n    kind: integration_failure\n    consecutiveFailures: 3\n    for: 0s\n    repeatInterval: 4h\n")
        lifetime = str(int(self.seconds + 900))
        python = sys.executable
        self.upstream = Process("upstream", [python, os.path.join(HERE, "soak_upstream.py"), "--lifetime", lifetime], self.work).start()
        self.provider = Process("provider", [python, os.path.join(HERE, "soak_upstream.py"), "--lifetime", lifetime, "--users", "250"], self.work).start()
        for p in (self.upstream, self.provider):
            if not wait_until(60, lambda: p.output().strip()):
                raise SystemExit(p.name + " did not start")
        self.upstream_url = "http://127.0.0.1:" + self.upstream.output().split()[0]
        self.provider_url = "http://127.0.0.1:" + self.provider.output().split()[0]
        self.start_idp()
        self.start_instance(0)
        self.admin = next(w for w in self.instances[0]["process"].output().split() if w.startswith("ptk_"))
        if self.backend == "postgres":
            self.start_instance(1)
        self.tlog = subprocess.Popen([PY312, os.path.join(HERE, "soak_tlog.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.configure()

    def start_idp(self):
        nanoidp = os.path.join(VENV_BIN, "nanoidp")
        if not hasattr(self, "idp_dir"):
            self.idp_dir = os.path.join(self.work, "nanoidp")
            subprocess.run([nanoidp, "init", self.idp_dir], check=True, capture_output=True)
            self.idp_port = free_port()
            path = os.path.join(self.idp_dir, "settings.yaml")
            settings = open(path).read()
            settings = settings.replace("port: 8000", "port: %d" % self.idp_port)
            settings = settings.replace('issuer: "http://localhost:8000"', 'issuer: "http://127.0.0.1:%d"' % self.idp_port)
            settings = settings.replace('client_id: "demo-client"', 'client_id: "soak-client"').replace('client_secret: "demo-secret"', 'client_secret: "soak-secret-0123456789"')
            # Tokens of one minute: the gateway gets new ones all through the run.
            settings = settings.replace("token_expiry_minutes: 60", "token_expiry_minutes: 1")
            open(path, "w").write(settings)
        self.idp = Process("nanoidp", [nanoidp, "--config", self.idp_dir, "--host", "127.0.0.1", "--port", str(self.idp_port)], self.idp_dir).start()
        url = "http://127.0.0.1:%d/.well-known/openid-configuration" % self.idp_port
        if not wait_until(120, lambda: requests.get(url, timeout=5).status_code == 200, every=0.25):
            raise SystemExit("nanoidp did not start")

    def configure(self):
        s = requests.Session()
        h = {"Authorization": "Bearer " + self.admin}
        portal = self.instances[0]["url"]

        def create(body):
            r = s.post(portal + "/portal/integrations", json=body, headers=h, timeout=30)
            if r.status_code != 201:
                raise SystemExit("creating %s: %s %s" % (body["name"], r.status_code, r.text))
            return r.json()["id"]

        limits = {"requestsPerSecond": 1000, "burst": 1000}
        self.api = create({"name": "Soak CRM", "type": "enterprise", "baseUrl": self.upstream_url, "authMethod": "api_key",
                           "credentials": {"apiKey": "soak-api-key-0123456789"}, "rateLimits": limits,
                           "processing": {"purposes": [{"purpose": "CRM", "lawfulBasis": "contract"}], "recipientRole": "processor", "destinationCountries": ["DE"]}})
        self.oauth = create({"name": "Soak Analytics", "type": "analytics", "baseUrl": self.upstream_url, "authMethod": "oauth2",
                             "credentials": {"clientId": "soak-client", "clientSecret": "soak-secret-0123456789"}, "rateLimits": limits,
                             "config": {"oauth": {"tokenUrl": "http://127.0.0.1:%d/token" % self.idp_port, "scopes": ["openid"]}}})
        self.directory = create({"name": "Soak Directory", "type": "identity_provider", "baseUrl": self.provider_url, "authMethod": "api_key",
                                 "credentials": {"apiKey": "soak-directory-0123456789"}, "rateLimits": limits,
                                 "syncConfig": {"entities": {"users": {"endpoint": "/users", "itemsPath": "/data", "updatedSinceParam": "updated_since",
                                                                       "pagination": {"style": "cursor", "cursorParam": "after", "nextCursorPath": "/meta/next",
                                                                                      "pageSizeParam": "limit", "pageSize": 100}}}}})
        self.webhook_secrets = {}
        for scheme, name in SCHEMES:
            secret = "whsec_" + base64.b64encode(os.urandom(24)).decode() if scheme == "standard-webhooks" else "soak-%s-secret-%s" % (name, uuid.uuid4().hex)
            r = s.post(portal + "/portal/integrations/%s/webhooks" % self.api, json={"endpoint": "/webhooks/soak-" + name, "scheme": scheme, "secret": secret}, headers=h, timeout=30)
            if r.status_code != 201:
                raise SystemExit("registering the %s webhook: %s %s" % (scheme, r.status_code, r.text))
            self.webhook_secrets[name] = (scheme, secret)
        self.vkeys = [line for line in s.get(portal + "/ledger/%s/keys" % SLUG, headers=h, timeout=30).text.split("\n") if line.strip()]

    # ---- the load

    def gateway_requests(self, session):
        path = "/soak/%s" % uuid.uuid4().hex
        subject = "subject-%d@example.test" % random.randrange(40)
        body = {"method": random.choice(["GET", "POST"]), "endpoint": path, "timeout": 4000, "dataSubjects": [subject]}
        if body["method"] == "POST":
            body["body"] = {"email": subject}
        r = self.call("gateway.requests", "POST", "/portal/integrations/%s/requests" % self.api, session, self.admin, json=body)
        self.answered(r, path, "requests")

    def gateway_proxy(self, session):
        path = "/soakp/%s" % uuid.uuid4().hex
        r = self.call("gateway.proxy", "GET", "/portal/integrations/%s/proxy%s" % (self.api, path), session, self.admin)
        self.answered(r, path, "proxy")

    def gateway_oauth(self, session):
        path = "/soako/%s" % uuid.uuid4().hex
        r = self.call("gateway.oauth", "POST", "/portal/integrations/%s/requests" % self.oauth, session, self.admin,
                      json={"method": "GET", "endpoint": path, "timeout": 4000})
        self.answered(r, path, "oauth")

    def answered(self, r, path, kind):
        """Keeps what the client was told: the status and the call's record id (the answer's `callId`, the
        proxy's X-Call-Id header, or a recorded refusal's problem member)."""
        if r is None:
            return
        call_id = r.headers.get("X-Call-Id")
        if not call_id:
            try:
                call_id = r.json().get("callId")
            except ValueError:
                call_id = None
        with self.lock:
            self.gateway_answered.append((path, r.status_code, kind, call_id))

    def webhook(self, session):
        import stripe
        from githubkit.webhooks import sign as github_sign
        from standardwebhooks.webhooks import Webhook

        scheme, secret = None, None
        name = random.choice([n for _, n in SCHEMES])
        scheme, secret = self.webhook_secrets[name]
        event = "evt_%s" % uuid.uuid4().hex
        body = json.dumps({"id": event, "type": "user.created", "data": {"id": event, "email": event + "@example.test"}})
        # A provider retries a delivery that got no answer (with the same id), up to 3 times.
        for attempt in range(3):
            now = int(time.time())
            headers = {"Content-Type": "application/json"}
            if scheme == "standard-webhooks":
                headers.update({"webhook-id": event, "webhook-timestamp": str(now),
                                "webhook-signature": Webhook(secret).sign(event, datetime.fromtimestamp(now, tz=timezone.utc), body)})
            elif scheme == "stripe":
                headers["Stripe-Signature"] = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=now)
            else:
                headers.update({"X-Hub-Signature-256": github_sign(secret, body, method="sha256"), "X-GitHub-Delivery": event, "X-GitHub-Event": "push"})
            r = self.call("webhooks", "POST", "/webhooks/%s/soak-%s" % (SLUG, name), session, data=body.encode(), headers=headers)
            if r is not None and 200 <= r.status_code < 300:
                stored = r.json().get("id")
                with self.lock:
                    self.webhooks_acked[stored] = event
                return
            if r is not None and r.status_code < 500:
                self.invariant("webhooks: every signed delivery is acknowledged").check(False, "%s got %s: %s" % (scheme, r.status_code, r.text[:200]))
                return
            self.stop.wait(1 + attempt)

    def tokens(self, session):
        r = self.call("tokens.create", "POST", "/portal/tokens", session, self.admin, json={"role": "auditor", "owner": "soak", "description": "soak", "expiresIn": "1h"})
        if r is None or r.status_code != 201:
            return
        created = r.json()
        inv = self.invariant("tokens: a revoked token is refused at once")
        r = self.call("tokens.revoke", "DELETE", "/portal/tokens/%s" % created["id"], session, self.admin)
        if r is None or r.status_code not in (200, 204):
            return
        for instance in self.live():
            r = self.call("tokens.use", "GET", "/portal/whoami", session, created["token"], base=instance["url"])
            if r is not None and r.status_code != 503:
                inv.check(r.status_code == 401, "revoked token answered %s on %s" % (r.status_code, instance["name"]))

    def metrics(self, session):
        r = self.call("metrics.scrape", "GET", "/metrics", session, METRICS_TOKEN)
        if r is not None and r.status_code == 200:
            self.invariant("metrics: /metrics parses").check("portal_" in r.text and "# TYPE" in r.text, r.text[:200])
        self.call("metrics.portal", "GET", "/portal/metrics", session, self.admin)

    def subjects(self, session):
        subject = "subject-%d@example.test" % random.randrange(40)
        self.call("subjects.export", "POST", "/portal/subjects/%s/export" % requests.utils.quote(subject, safe=""), session, self.admin)
        # Erasure of subjects the gateway never names again (a pool of their own).
        erased = "erased-%s@example.test" % uuid.uuid4().hex[:12]
        self.call("subjects.erase", "POST", "/portal/subjects/%s/erase" % requests.utils.quote(erased, safe=""), session, self.admin)

    def checkpoint(self, session):
        r = self.call("ledger.checkpoint", "GET", "/ledger/%s/checkpoint" % SLUG, session, self.admin)
        if r is None or r.status_code != 200:
            return
        note = r.text
        size = int(note.split("\n")[1])
        previous = self.checkpoints[-1] if self.checkpoints else None
        request = {"vkey": self.vkeys[0], "note": note, "old": None, "proof": []}
        if previous and previous["size"] > 0 and previous["size"] <= size:
            p = self.call("ledger.consistency", "GET", "/ledger/%s/proofs/consistency?from=%d&to=%d" % (SLUG, previous["size"], size), session, self.admin)
            if p is None or p.status_code != 200:
                return
            request["old"] = previous
            request["proof"] = p.json().get("proof", [])
        inv = self.invariant("checkpoints: each fetched one is signed and consistent with the one before (aics-tlog)")
        if previous and previous["size"] > size:
            inv.check(False, "checkpoint size went back from %d to %d" % (previous["size"], size))
            return
        with self.lock:
            self.tlog.stdin.write(json.dumps(request) + "\n")
            self.tlog.stdin.flush()
            answer = json.loads(self.tlog.stdout.readline())
        inv.check(answer["ok"], answer.get("error", ""))
        if answer["ok"]:
            self.checkpoints.append({"size": answer["size"], "root": answer["root"]})

    def ledger_verify_loop(self):
        inv = self.invariant("ledger: `portal ledger verify` passes during the run")
        env = self.portal_env()
        while not self.stop.is_set():
            started = self.phases.now()
            t0 = time.monotonic()
            r = subprocess.run([self.portal_bin, "ledger", "verify", "--org", SLUG, "--master-key-file", self.key], capture_output=True, text=True, env=env, timeout=600)
            seconds = time.monotonic() - t0
            text = (r.stdout + r.stderr).strip()
            # No verdict (the database was unavailable: "error: ... cannot be reached ...; retry shortly", or
            # "... closed the connection; retry shortly" when a restart cuts a connection in use) is the CLI's
            # 503; a verdict of failure ("FAILED <org> at seq N") is never excused.
            last = text.split("\n")[-1] if text else ""
            no_verdict = r.returncode != 0 and last.startswith("error:") and last.endswith("retry shortly")
            with self.records_lock:
                self.records.append(Record("ledger.verify", self.phases.name(started), started, seconds,
                                           200 if r.returncode == 0 else (503 if no_verdict else 500), retry_after=no_verdict))
            if not (no_verdict and self.phases.in_fault(started, {"postgres restart"}, until=started + seconds)):
                inv.check(r.returncode == 0, text[-400:])
            self.stop.wait(1)

    def sync_loop(self):
        """Changes at the provider, then a sync, alternating full and incremental: each job's counts must be
        exactly the changes (the first job creates everything)."""
        session = requests.Session()
        inv = self.invariant("syncs: each job's counts equal the provider's changes")
        total = 250
        kind = "full"
        first = True
        while not self.stop.is_set():
            change = {"add": 0, "update": 0, "delete": 0} if first else {"add": random.randint(0, 20), "update": random.randint(0, 20), "delete": random.randint(0, 10) if kind == "full" else 0}
            changed = requests.post(self.provider_url + "/_soak/mutate", json=change, timeout=30).json()
            expected = {"created": total if first else len(changed["added"]), "updated": len(changed["updated"]),
                        "deleted": len(changed["deleted"]) if kind == "full" else 0}
            total = changed["total"]
            r = None
            for _ in range(60):
                r = self.call("sync.start", "POST", "/portal/integrations/%s/sync" % self.directory, session, self.admin, json={"syncType": kind})
                if r is not None and r.status_code == 202:
                    break
                if self.stop.wait(1):
                    return
            if r is None or r.status_code != 202:
                self.note("a sync could not be started: %s" % (r.status_code if r is not None else "no answer"))
                continue
            job = r.json()["jobs"][0]["id"]
            t0 = time.monotonic()
            done = wait_until(600, lambda: self.job_done(session, job), every=0.5)
            with self.records_lock:
                self.records.append(Record("sync.job", self.phases.name(), self.phases.now(), time.monotonic() - t0, 200 if done else -1))
            if not done:
                inv.check(False, "job %s did not finish in 600 s" % job)
                return
            counts = done
            # Every item served once: a full sync fetches every user, an incremental one the changed ones, in
            # pages of 100 (a page counted twice or lost shows in pages or fetched).
            expected["fetched"] = total if kind == "full" else expected["created"] + expected["updated"]
            expected["pages"] = max(1, math.ceil(expected["fetched"] / 100))
            got = {k: counts.get(k, 0) for k in ("created", "updated", "deleted", "fetched", "pages")}
            ok = counts.get("status") == "completed" and got == expected
            inv.check(ok, "%s job %s: %s, expected %s" % (kind, job, counts, expected))
            with self.lock:
                self.sync_results.append((kind, job, got, expected, counts.get("pages"), counts.get("fetched")))
            first = False
            kind = "incremental" if kind == "full" else "full"
            self.stop.wait(2)

    def job_done(self, session, job):
        r = session.get(self.base() + "/portal/integrations/%s/sync/jobs/%s" % (self.directory, job), headers={"Authorization": "Bearer " + self.admin}, timeout=CLIENT_TIMEOUT)
        if r.status_code != 200:
            return None
        j = r.json()
        if j.get("status") in ("completed", "failed", "cancelled"):
            counts = dict(j.get("counts") or {})
            counts["status"] = j["status"]
            for k in ("created", "updated", "deleted", "pages", "fetched"):
                if k not in counts and k in j:
                    counts[k] = j[k]
            return counts
        return None

    def reports_loop(self):
        session = requests.Session()
        inv = self.invariant("evidence: every bundle verifies offline (portal report verify, sha256sum -c)")
        n = 0
        while not self.stop.wait(PERIODS["reports"] if n else 5):
            n += 1
            kind = "soc2" if n % 2 else "gdpr"
            r = self.call("reports.request", "POST", "/portal/reports", session, self.admin, json={"kind": kind, "from": utc_date(-1), "to": utc_date(1)})
            if r is None or r.status_code not in (200, 201, 202):
                continue
            rid = r.json()["id"]
            t0 = time.monotonic()
            state = wait_until(300, lambda: self.report_state(session, rid), every=1)
            if state != "completed":
                if state == "failed" or state is None:
                    inv.check(False, "report %s: %s" % (rid, state or "not done in 300 s"))
                continue
            d = self.call("reports.download", "GET", "/portal/reports/%s/download" % rid, session, self.admin)
            with self.records_lock:
                self.records.append(Record("reports.build", self.phases.name(), self.phases.now(), time.monotonic() - t0, 200))
            if d is None or d.status_code != 200:
                continue
            path = os.path.join(self.work, "bundle-%d.tar.zst" % n)
            open(path, "wb").write(d.content)
            inv.check(*self.verify_bundle(path))
            with self.lock:
                self.bundles.append(path)

    def report_state(self, session, rid):
        r = session.get(self.base() + "/portal/reports/" + rid, headers={"Authorization": "Bearer " + self.admin}, timeout=CLIENT_TIMEOUT)
        if r.status_code != 200:
            return None
        status = r.json().get("status")
        return status if status in ("completed", "failed") else None

    def verify_bundle(self, path):
        args = [self.portal_bin, "report", "verify", path]
        for k in self.vkeys:
            args += ["--vkey", k]
        r = subprocess.run(args, capture_output=True, text=True)
        if r.returncode != 0:
            return False, "report verify %s: %s" % (os.path.basename(path), (r.stdout + r.stderr)[-300:])
        folder = path + ".d"
        os.makedirs(folder, exist_ok=True)
        t = subprocess.run(["tar", "--zstd", "-xf", path, "-C", folder], capture_output=True, text=True)
        s = subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=folder, capture_output=True, text=True)
        if t.returncode or s.returncode:
            return False, "sha256sum -c %s: %s" % (os.path.basename(path), (t.stderr + s.stdout + s.stderr)[-300:])
        return True, ""

    def alerts_loop(self):
        session = requests.Session()
        while not self.stop.wait(2):
            self.poll_alerts(session)

    def poll_alerts(self, session):
        try:
            r = session.get(self.base() + "/portal/alerts", headers={"Authorization": "Bearer " + self.admin}, timeout=CLIENT_TIMEOUT)
        except requests.exceptions.RequestException:
            return []
        if r.status_code != 200:
            return None
        firing = [(a.get("labels", {}).get("alertname"), a.get("labels", {}).get("integration"))
                  for a in r.json().get("active", []) if a.get("state") == "firing"]
        now = self.phases.now()
        with self.lock:
            for key in firing:
                seen = self.alerts_seen.setdefault(key, [now, now])
                seen[1] = now
        return firing

    def rss_loop(self):
        while not self.stop.wait(5):
            self.sample_rss()
            self.check_alive()

    def check_alive(self):
        """An instance that exits by itself (a crash, a trap) is a violation at once, with the end of its log."""
        inv = self.invariant("processes: no instance exits by itself")
        for i in self.instances:
            p = i["process"]
            if i.get("up") is False or getattr(p, "reported", False):
                continue
            if p.alive():
                inv.check(True, "")
                continue
            p.reported = True
            log = p.output() + open(os.path.join(self.work, p.name + ".log"), errors="replace").read()
            crash = next((line for line in log.splitlines() if "crashed" in line or "Fatal error" in line), "no crash report")
            inv.check(False, "%s exited %s at %.0f s: %s" % (p.name, p.popen.returncode, self.phases.now(), crash[:300]))
            self.note("%s exited by itself at %.0f s (status %s): %s" % (p.name, self.phases.now(), p.popen.returncode, crash[:300]))

    def sample_rss(self):
        for i in self.instances:
            p = i["process"]
            kib = p.rss_kib()
            if kib:
                with self.lock:
                    self.rss.setdefault(p.name, []).append((time.monotonic() - p.started, kib))

    # ---- faults

    def set_mode(self, mode):
        requests.post(self.upstream_url + "/_soak/mode", json={"mode": mode}, timeout=10)

    def faults(self):
        """Runs the schedule: each phase's fault starts at the phase's start and ends at its end."""
        upstream = {"upstream 5xx": "fail", "upstream slow": "slow", "upstream black hole": "blackhole", "upstream 429": "ratelimit"}
        for a, b, name in self.phases.plan:
            if self.stop.wait(max(0, a * self.seconds - self.phases.now())):
                return
            length = (b - a) * self.seconds
            log("phase: %s (%.0f s)" % (name, length))
            if name in upstream:
                self.phases.open_window(name)
                self.set_mode(upstream[name])
                self.stop.wait(max(0, b * self.seconds - self.phases.now()))
                self.set_mode("healthy")
                # Answers to calls made during the fault may come up to a deadline later.
                self.phases.close_window(name, grace=35)
            elif name == "instance SIGKILL":
                victim = self.instances[-1]
                self.phases.open_window(name)
                victim["up"] = False
                self.killed.append(victim["process"].name)
                victim["process"].send(signal.SIGKILL)
                victim["process"].popen.wait()
                self.note("SIGKILL of %s at %.0f s" % (victim["name"], self.phases.now()))
                self.start_instance(victim["index"])
                self.phases.close_window(name, grace=10)
                self.note("%s restarted and healthy at %.0f s" % (victim["name"], self.phases.now()))
            elif name == "postgres restart":
                self.phases.open_window(name)
                t0 = time.monotonic()
                self.pg.ctl("-m immediate restart")
                self.note("pg_ctl restart -m immediate took %.1f s" % (time.monotonic() - t0))
                self.phases.close_window(name, grace=15)
            elif name == "oauth down":
                self.phases.open_window(name)
                self.idp.stop(signal.SIGKILL)
                self.stop.wait(min(60, length))
                self.start_idp()
                self.note("nanoidp down for %.0f s" % min(60, length))
                # A token request in flight when it came back, and the integration's backoff after failures.
                self.phases.close_window(name, grace=35)

    # ---- the run

    def run(self):
        log("soak on %s: %d instance(s), %.1f minutes" % (self.backend, 2 if self.backend == "postgres" else 1, self.minutes))
        self.deploy()
        self.phases.start = time.monotonic()
        loops = [
            lambda: self.paced("gateway.requests", self.gateway_requests), lambda: self.paced("gateway.proxy", self.gateway_proxy),
            lambda: self.paced("gateway.oauth", self.gateway_oauth), lambda: self.paced("webhooks", self.webhook),
            lambda: self.paced("tokens", self.tokens), lambda: self.paced("metrics", self.metrics), lambda: self.paced("subjects", self.subjects),
            lambda: self.paced("checkpoints", self.checkpoint),
            self.ledger_verify_loop, self.sync_loop, self.reports_loop, self.alerts_loop, self.rss_loop,
        ]
        # Two webhook senders and two gateway clients: a provider and an application do not wait for each other.
        loops += [lambda: self.paced("webhooks", self.webhook), lambda: self.paced("gateway.requests", self.gateway_requests)]
        threads = [threading.Thread(target=f, daemon=True) for f in loops]
        for t in threads:
            t.start()
        fault_thread = threading.Thread(target=self.faults, daemon=True)
        fault_thread.start()
        self.stop.wait(self.seconds)
        self.stop.set()
        for t in threads + [fault_thread]:
            t.join(timeout=CLIENT_TIMEOUT + 700)
        self.sample_rss()
        log("load stopped; draining and checking")
        self.drain_and_check()

    def drain_and_check(self):
        session = requests.Session()
        h = {"Authorization": "Bearer " + self.admin}
        # The webhook queue drains (an event a killed worker held waits for its lease).
        if not wait_until(300, lambda: self.pending_webhooks() == 0, every=1):
            self.note("the webhook queue did not drain in 300 s")
        # The upstream faults' alerts fire and resolve: failures in a row at the first success, the error rate
        # once the faults have left its 5-minute window (checked when the run is long enough for that).
        inv = self.invariant("alerts: error rate and integration failure fire during the upstream faults and resolve after")
        failing, rate = ("SoakIntegrationFailing", self.api), ("SoakErrorRate", self.api)
        last_fault = max(w[2] for w in self.phases.windows if w[0].startswith("upstream")) - 35
        for key in (failing, rate):
            seen = self.alerts_seen.get(key)
            inv.check(seen is not None and self.phases.in_fault(seen[0], {"upstream 5xx", "upstream black hole", "upstream 429", "upstream slow"}),
                      "%s for the upstream's integration %s" % (key[0], "never fired" if seen is None else "first fired at %.0f s, outside an upstream fault" % seen[0]))
        gone = lambda key: (lambda: key not in set(self.poll_alerts(session) or [key]))
        inv.check(bool(wait_until(60, gone(failing), every=2)), "SoakIntegrationFailing still firing 60 s after the load stopped")
        # The window is whole minutes: the faults leave it up to a minute after 5 minutes have passed.
        rate_clear = last_fault + 300 + 90 - self.phases.now()
        if rate_clear <= 150:
            inv.check(bool(wait_until(max(rate_clear, 10), gone(rate), every=2)), "SoakErrorRate still firing 5 minutes after the last upstream fault")
        else:
            self.note("SoakErrorRate's resolution not checked: the run ended %.0f s after the last upstream fault, inside the rule's 5-minute window" % (self.phases.now() - last_fault))

        # RSS after the first two minutes (or half of a shorter run) against the end.
        inv = self.invariant("memory: resident set at the end within 1.2x of its value after the warm-up")
        warm = min(120.0, self.seconds / 2)
        killed = set(self.killed)
        for name, samples in self.rss.items():
            base = [kib for t, kib in samples if t >= warm]
            if name in killed:
                # Killed by the SIGKILL fault: its last sample is the moment of the fault, not the end of the
                # run; its replacement is measured from its own start.
                self.note("RSS %s (killed by the fault, not judged): %s" % (name, " ".join("%.0f s %.1f MiB" % (t, k / 1024) for t, k in samples[-1:])))
            elif len(base) >= 2:
                inv.check(base[-1] <= 1.2 * base[0], "%s: %d KiB after %.0f s, %d KiB at the end" % (name, base[0], warm, base[-1]))
                self.note("RSS %s: %.1f MiB after %.0f s, %.1f MiB at the end (x%.2f)" % (name, base[0] / 1024, warm, base[-1] / 1024, base[-1] / base[0]))
            # The curve, one sample a minute: growth that levels off is a cache or the allocator filling, a line is a leak.
            curve, minute = [], -1
            for t, kib in samples:
                if int(t // 60) != minute:
                    minute = int(t // 60)
                    curve.append("%d:%.1f" % (minute, kib / 1024))
            self.note("RSS %s by minute (MiB): %s" % (name, " ".join(curve)))

        # The servers stop cleanly (SIGTERM); the rest is read from the database itself.
        for i in self.instances:
            code = i["process"].stop(signal.SIGTERM, wait=45)
            self.invariant("shutdown: SIGTERM ends every instance cleanly").check(code == 0, "%s exited %s" % (i["name"], code))
        self.check_database()
        r = subprocess.run([self.portal_bin, "ledger", "verify", "--master-key-file", self.key], capture_output=True, text=True, env=self.portal_env())
        self.invariant("ledger: `portal ledger verify` passes at the end").check(r.returncode == 0, (r.stdout + r.stderr)[-400:])
        self.check_answers()

    def pending_webhooks(self):
        rows = self.sql("SELECT COUNT(*) FROM webhook_events WHERE status IN ('pending', 'retrying')")
        return int(rows[0][0])

    def sql(self, query):
        if self.pg:
            return self.pg.query(query)
        db = sqlite3.connect("file:%s?mode=ro" % self.database_url[len("sqlite://"):], uri=True, timeout=30)
        try:
            return [tuple("" if v is None else str(v) for v in row) for row in db.execute(query).fetchall()]
        finally:
            db.close()

    def entries(self):
        if self.pg:
            rows = self.sql("SELECT convert_from(e.entry, 'UTF8') FROM ledger_entries e JOIN organizations o ON o.id = e.organization_id WHERE o.slug = '%s' ORDER BY e.seq" % SLUG)
        else:
            db = sqlite3.connect("file:%s?mode=ro" % self.database_url[len("sqlite://"):], uri=True, timeout=30)
            rows = [(bytes(r[0]).decode(),) for r in db.execute("SELECT e.entry FROM ledger_entries e JOIN organizations o ON o.id = e.organization_id WHERE o.slug = ? ORDER BY e.seq", (SLUG,))]
            db.close()
        return [json.loads(r[0]) for r in rows]

    def check_database(self):
        entries = self.entries()
        by_type = {}
        for e in entries:
            by_type.setdefault(e["type"], []).append(e)
        self.entry_count = len(entries)
        # The outbox drained: no change waits for its entry.
        outbox = int(self.sql("SELECT COUNT(*) FROM audit_outbox")[0][0])
        self.invariant("ledger: the outbox is drained at the end").check(outbox == 0, "%d events still in audit_outbox" % outbox)
        # Gateway calls: each integration_requests row has exactly one request.* entry (its callId) and each
        # entry its row.
        inv = self.invariant("ledger: no entry without its change, no change without its entry")
        rows = {r[0].lower() for r in self.sql("SELECT id FROM integration_requests")}
        logged = {}
        for e in by_type.get("request.completed", []) + by_type.get("request.failed", []):
            c = e["data"].get("callId")
            logged[c] = logged.get(c, 0) + 1
        for c in rows | set(logged):
            inv.check(c in rows and logged.get(c, 0) == 1, "call %s: %s row, %d entries" % (c, "a" if c in rows else "no", logged.get(c, 0)))
        # Webhooks: each stored event has one webhook.received entry, and a processed one a webhook.processed entry.
        received = {}
        for e in by_type.get("webhook.received", []):
            received[e["data"].get("eventId")] = received.get(e["data"].get("eventId"), 0) + 1
        processed = {}
        for e in by_type.get("webhook.processed", []):
            processed[e["data"].get("eventId")] = processed.get(e["data"].get("eventId"), 0) + 1
        stored = self.sql("SELECT id, status FROM webhook_events")
        for event_id, status in stored:
            eid = event_id.lower()
            inv.check(received.get(eid, 0) == 1, "webhook event %s has %d webhook.received entries" % (eid, received.get(eid, 0)))
        self.stored_webhooks = {e.lower(): s for e, s in stored}
        # Every sync job has its sync.started entry, and a finished one its sync.completed/failed entry.
        started = {e["data"].get("jobId") for e in by_type.get("sync.started", [])}
        for (job,) in self.sql("SELECT id FROM sync_jobs"):
            inv.check(job.lower() in started, "sync job %s has no sync.started entry" % job)
        # Webhooks acknowledged with a 2xx: stored once, processed exactly once, in the ledger.
        inv = self.invariant("webhooks: every 2xx is stored once, processed exactly once, and in the ledger")
        for stored_id, provider_id in self.webhooks_acked.items():
            sid = (stored_id or "").lower()
            inv.check(self.stored_webhooks.get(sid) == "processed" and processed.get(sid, 0) == 1 and received.get(sid, 0) == 1,
                      "%s (%s): status %s, %d processed entries" % (provider_id, sid, self.stored_webhooks.get(sid), processed.get(sid, 0)))
        self.call_rows = rows
        self.call_entries = logged

    def check_answers(self):
        # Every gateway call answered to its client has its row and its entry, named in the answer; only the
        # portal's refusals before a call is made (a database outage's 503, a validation error) name none.
        inv = self.invariant("gateway: every call answered has its integration_requests row and its ledger entry")
        for path, status, kind, call_id in self.gateway_answered:
            if call_id is None:
                inv.check(status in (503, 400, 401, 403, 404, 422), "%s %s answered %d without a callId" % (kind, path, status))
                continue
            c = call_id.lower()
            inv.check(c in self.call_rows and self.call_entries.get(c, 0) == 1,
                      "%s %s answered %d: call %s has %s row and %d entries" % (kind, path, status, c, "a" if c in self.call_rows else "no", self.call_entries.get(c, 0)))
        # No 5xx outside a fault's window; in one, the portal's own are 503 with Retry-After; no hang.
        inv = self.invariant("answers: no 5xx outside a fault, only 503 + Retry-After in one (upstream errors passed through aside)")
        hangs = self.invariant("answers: no request hangs past its deadline")
        for r in self.records:
            hangs.check(r.status != -1, "%s at %.0f s (%s) had no answer in %d s" % (r.op, r.started, r.phase, CLIENT_TIMEOUT))
            if r.status < 500:
                continue
            if r.upstream:  # the proxy passing the upstream's own 5xx on
                inv.check(self.phases.in_fault(r.started, {"upstream 5xx"}), "%s passed an upstream %d at %.0f s" % (r.op, r.status, r.started))
                continue
            gateway_upstream = r.op.startswith("gateway.") and r.status in (502, 504) and self.phases.in_fault(r.started, {"upstream 5xx", "upstream slow", "upstream black hole", "upstream 429", "oauth down"})
            portal_503 = r.status == 503 and r.retry_after and self.phases.in_fault(r.started, until=r.started + max(r.seconds, 0))
            inv.check(gateway_upstream or portal_503, "%s answered %d at %.0f s (%s)%s" % (r.op, r.status, r.started, r.phase, "" if r.retry_after else " without Retry-After"))

    # ---- the report

    def report(self):
        lines = ["## Soak on %s: %.1f minutes, %d instance(s)" % (self.backend, self.minutes, len(self.instances)), ""]
        lines += ["| invariant | backend | checked | violations |", "|---|---|---:|---:|"]
        for inv in self.invariants.values():
            lines.append("| %s | %s | %d | %d |" % (inv.name, self.backend, inv.checked, inv.violations))
        lines.append("")
        bad = [inv for inv in self.invariants.values() if inv.violations]
        for inv in bad:
            lines.append("- **%s**: %s" % (inv.name, "; ".join(str(e) for e in inv.examples)))
        if bad:
            lines.append("")
        phases = []
        for _, _, n in self.phases.plan:
            if n not in phases:
                phases.append(n)
        ops = sorted({r.op for r in self.records})
        lines += ["| operation | phase | requests | per second | p50 ms | p95 ms | p99 ms | answers |", "|---|---|---:|---:|---:|---:|---:|---|"]
        span = {n: 0.0 for n in phases}
        for a, b, n in self.phases.plan:
            span[n] += (b - a) * self.seconds
        for op in ops:
            for phase in phases + ["drain"]:
                rs = [r for r in self.records if r.op == op and r.phase == phase]
                if not rs:
                    continue
                ms = sorted(r.seconds * 1000 for r in rs)
                q = lambda p: ms[min(len(ms) - 1, int(math.ceil(p * len(ms))) - 1)]
                codes = {}
                for r in rs:
                    key = {0: "no answer", -1: "hang"}.get(r.status, str(r.status))
                    codes[key] = codes.get(key, 0) + 1
                answers = ", ".join("%s×%d" % (k, v) for k, v in sorted(codes.items()))
                rate = len(rs) / span[phase] if span.get(phase) else 0
                lines.append("| %s | %s | %d | %.1f | %.0f | %.0f | %.0f | %s |" % (op, phase, len(rs), rate, q(0.5), q(0.95), q(0.99), answers))
        lines.append("")
        lines.append("Ledger: %d entries of `%s`; %d checkpoints fetched and checked; %d bundles built and verified; %d webhooks acknowledged; %d sync jobs."
                     % (getattr(self, "entry_count", 0), SLUG, len(self.checkpoints), len(self.bundles), len(self.webhooks_acked), len(self.sync_results)))
        names = {self.api: "Soak CRM (api_key)", self.oauth: "Soak Analytics (oauth2)", self.directory: "Soak Directory"}
        for (a, integration), b in sorted(self.alerts_seen.items(), key=lambda kv: kv[1][0]):
            lines.append("Alert %s (%s) seen firing from %.0f s to %.0f s." % (a, names.get(integration, integration), b[0], b[1]))
        lines += ["", "Notes:"] + ["- " + n for n in self.notes]
        return "\n".join(lines), not bad

    def close(self, keep=False):
        self.stop.set()
        for i in self.instances:
            i["process"].stop(signal.SIGKILL, wait=5)
        for p in (getattr(self, "upstream", None), getattr(self, "provider", None), getattr(self, "idp", None)):
            if p:
                p.stop(signal.SIGKILL, wait=5)
        if getattr(self, "tlog", None):
            self.tlog.kill()
        if self.pg:
            self.pg.close(keep)


def stopped(signum, frame):
    """SIGTERM or SIGINT: stop at once, killing every child process and the soak's PostgreSQL cluster."""
    sys.exit(128 + signum)


def main():
    signal.signal(signal.SIGTERM, stopped)
    signal.signal(signal.SIGINT, stopped)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "10")))
    parser.add_argument("--backend", default=os.environ.get("SOAK_BACKEND", "both"), choices=["sqlite", "postgres", "both"])
    parser.add_argument("--portal", default=os.path.join(ROOT, ".build", "release", "portal"))
    parser.add_argument("--rate-scale", type=float, default=float(os.environ.get("SOAK_RATE_SCALE", "1")))
    parser.add_argument("--out", default=os.path.join(ROOT, "var", "soak", "latest.md"))
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    rates = ", ".join("%s %.1f/s" % (k, v * args.rate_scale) for k, v in RATES.items())
    sections = ["# Soak report", "", "%s; %s minutes per backend; rates: %s; reports every %.0f s; `portal ledger verify` in a loop." % (
        datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), args.minutes, rates, PERIODS["reports"]), ""]
    passed = True
    for backend in backends:
        work = tempfile.mkdtemp(prefix="portal-soak-%s." % backend)
        soak = Soak(backend, args.minutes, os.path.abspath(args.portal), args.rate_scale, work)
        try:
            soak.run()
            text, ok = soak.report()
        except BaseException as error:
            text, ok = "## Soak on %s: aborted: %s: %s\n\nWork folder kept: %s" % (backend, type(error).__name__, error, work), False
            soak.close(keep=True)
            Process.kill_all()
            sections.append(text)
            print(text, flush=True)
            passed = False
            if isinstance(error, (KeyboardInterrupt, SystemExit)) and getattr(error, "code", 1) in (130, 143):
                raise
            continue
        soak.close(keep=not ok)
        sections.append(text)
        print(text, flush=True)
        passed = passed and ok
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("work folder kept: " + work, flush=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    open(args.out, "w").write("\n".join(sections) + "\n")
    print("report: " + args.out + (" — every invariant held" if passed else " — INVARIANTS BROKEN"), flush=True)
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    try:
        main()
    finally:
        Process.kill_all()

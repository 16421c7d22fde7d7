"""The web console in a real browser: Debian's chromium, driven by selenium, against a running server.

Run by Tests/acceptance/console.sh (which starts the server and makes the data) with PORTAL, ADMIN, OTHER
(an admin of another organization), AUDITOR, CRM_ID and SHOTS (the screenshot folder) in the environment.
Every wait is for a condition; axe-core runs on every page (no serious or critical violation allowed).
"""
import base64
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
import urllib.error
import urllib.request

from axe_selenium_python import Axe
from standardwebhooks.webhooks import Webhook
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

PORTAL = os.environ["PORTAL"]
ADMIN = os.environ["ADMIN"]
OTHER = os.environ["OTHER"]
AUDITOR = os.environ["AUDITOR"]
COMPLIANCE = os.environ["COMPLIANCE"]
CRM_ID = os.environ["CRM_ID"]
DIRECTORY_ID = os.environ["DIRECTORY_ID"]
OAUTH_ID = os.environ["OAUTH_ID"]
SHOTS = os.environ["SHOTS"]
PORTAL_BIN = os.environ["PORTAL_BIN"]
WORK = os.environ["WORK"]
UPSTREAM = os.environ["UPSTREAM"]
WAIT = 60  # a backstop for a broken feature on a busy machine, not a pace

failures = []


def check(condition, message):
    if condition:
        print(f"  ok: {message}")
    else:
        print(f"  FAIL: {message}")
        failures.append(message)


def browser(width=1280):
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", f"--window-size={width},900"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def wait_for(driver, condition, what):
    try:
        # A page replaced while it is read (a form's answer arriving) is read again, not a failure.
        return WebDriverWait(driver, WAIT, poll_frequency=0.1, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(lambda d: condition(d))
    except Exception:
        check(False, f"{what} (at {driver.current_url})")
        return None


def accessibility(driver, page):
    axe = Axe(driver)
    axe.inject()
    results = axe.run()
    serious = [v for v in results["violations"] if v.get("impact") in ("serious", "critical")]
    for v in serious:
        print(f"    axe {v['impact']}: {v['id']}: {v['help']} ({len(v['nodes'])} nodes)")
        for node in v["nodes"][:3]:
            print(f"      {node.get('html', '')[:160]} :: {node.get('failureSummary', '')[:200]}")
    check(not serious, f"axe-core: no serious or critical violation on {page}")


def shot(driver, name):
    os.makedirs(SHOTS, exist_ok=True)
    height = driver.execute_script("return Math.min(document.documentElement.scrollHeight, 3000)")
    driver.set_window_size(driver.get_window_size()["width"], max(600, height))
    driver.save_screenshot(os.path.join(SHOTS, f"{name}.png"))


def sign_in(driver, token):
    driver.get(f"{PORTAL}/console/sign-in")
    field = wait_for(driver, lambda d: d.find_element(By.ID, "token"), "the sign-in form")
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "form[action='/console/sign-in'] button[type=submit]").click()


def post_from_page(driver, path, fields):
    """POSTs a form from the page's own origin with fetch (as a forged or hand-made form would); returns
    the status and the body's text."""
    return driver.execute_async_script(
        """
        const [path, fields, done] = arguments;
        fetch(path, {method: "POST", body: new URLSearchParams(fields), redirect: "manual", credentials: "same-origin"})
          .then(async (r) => done([r.status, await r.text()])).catch((e) => done([0, String(e)]));
        """,
        path,
        fields,
    )


def api(method, path, token, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{PORTAL}{path}", data=data, method=method,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def deliver(url, secret, event_id, body):
    """A delivery signed by the standardwebhooks package (the provider's side)."""
    text = json.dumps(body)
    signature = Webhook(secret).sign(event_id, datetime.now(tz=timezone.utc), text)
    request = urllib.request.Request(url, data=text.encode(), method="POST", headers={
        "Content-Type": "application/json", "webhook-id": event_id, "webhook-timestamp": str(int(time.time())), "webhook-signature": signature})
    with urllib.request.urlopen(request) as r:
        return r.status


def reload_until(driver, url, condition, what):
    """Opens url until condition holds (the server's state changes in the background)."""
    def attempt(d):
        d.get(url)
        return condition(d)
    return wait_for(driver, attempt, what)


def operations(driver):
    """Syncs and webhooks of the directory: a sync started and watched to the end, a webhook endpoint
    registered, a signed event received and processed, a conflict it makes resolved."""
    driver.get(f"{PORTAL}/console/integrations/{DIRECTORY_ID}/sync")
    wait_for(driver, lambda d: d.find_element(By.ID, "start-sync"), "the start-sync form")
    accessibility(driver, "sync")
    driver.find_element(By.ID, "start-sync").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "notice"), "the sync started")
    # The live section is replaced while it is read: its text is taken in the same step as the element.
    done = wait_for(driver, lambda d: [r.text for r in d.find_elements(By.CSS_SELECTOR, "tr[data-status=completed]")], "the running job's row turns completed by itself")
    check(bool(done) and "250" in done[0], f"the sync completes in the page with its 250 records: {done[0] if done else ''}")
    shot(driver, "sync")

    driver.get(f"{PORTAL}/console/integrations/{DIRECTORY_ID}/webhooks")
    wait_for(driver, lambda d: d.find_element(By.ID, "w-endpoint"), "the webhook form")
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    driver.find_element(By.ID, "w-endpoint").send_keys("/webhooks/directory")
    Select(driver.find_element(By.ID, "w-scheme")).select_by_value("standard-webhooks")
    driver.find_element(By.ID, "w-secret").send_keys(secret)
    driver.find_element(By.ID, "w-events").send_keys("user.*")
    driver.find_element(By.CSS_SELECTOR, f"form[action='/console/integrations/{DIRECTORY_ID}/webhooks'] button[type=submit]").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "notice"), "the endpoint created")
    url = driver.find_element(By.CSS_SELECTOR, "article[data-webhook='/webhooks/directory'] input[readonly]").get_attribute("value")
    check(url.endswith("/webhooks/default/directory") and secret not in driver.page_source, f"the URL to give the provider is shown, the secret never: {url}")
    accessibility(driver, "webhooks")
    events = driver.find_element(By.CSS_SELECTOR, "article[data-webhook='/webhooks/directory'] input[name=events]")
    events.clear()
    events.send_keys("user.*, group.created")
    driver.find_element(By.CSS_SELECTOR, "article[data-webhook='/webhooks/directory'] form[action$='/events'] button").click()
    wait_for(driver, lambda d: "done=webhook-updated" in d.current_url, "the endpoint's events saved")
    check("group.created" in driver.find_element(By.CSS_SELECTOR, "article[data-webhook='/webhooks/directory']").text, "an endpoint's events are updated")
    driver.find_element(By.CSS_SELECTOR, "article[data-webhook='/webhooks/directory'] form[action$='/test'] button").click()
    result = wait_for(driver, lambda d: d.find_element(By.ID, "test-result"), "the test event's result")
    check(result is not None and result.text.startswith("Test event"), f"a test event is sent from the page: {result.text if result else ''}")

    # A record edited in the portal, then changed at the provider and announced by a signed event: a conflict.
    status, _ = api("PATCH", f"/portal/integrations/{DIRECTORY_ID}/records/users/u-000001", ADMIN, {"name": "Edited in the portal"})
    check(status == 200, f"a record edited through the API: {status}")
    local = "http://" + PORTAL.split("://", 1)[1] + "/webhooks/default/directory"
    status = deliver(local, secret, "evt_console_1", {"type": "user.updated", "data": {"id": "u-000001", "email": "user1@example.test", "name": "Changed at the provider"}})
    check(status in (200, 202), f"the signed delivery is accepted: {status}")
    row = reload_until(driver, f"{PORTAL}/console/integrations/{DIRECTORY_ID}/webhooks",
                       lambda d: [r for r in d.find_elements(By.CSS_SELECTOR, "#events tbody tr") if "user.updated" in r.text and "processed" in r.text],
                       "the signed event appears processed in the event log")
    check(bool(row), "the signed event is in the log, processed")
    shot(driver, "webhooks")
    conflict = reload_until(driver, f"{PORTAL}/console/integrations/{DIRECTORY_ID}/sync",
                            lambda d: d.find_elements(By.CSS_SELECTOR, "article.conflict"), "the conflict awaiting review")
    check(bool(conflict) and "Edited in the portal" in conflict[0].text and "Changed at the provider" in conflict[0].text,
          "the conflict shows both sides")
    shot(driver, "conflict")
    conflict[0].find_element(By.XPATH, ".//button[starts-with(normalize-space(.), \"Keep the provider's\")]").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "no-conflicts"), "the resolved conflict leaves the list")
    status, record = api("GET", f"/portal/integrations/{DIRECTORY_ID}/records/users?limit=1000", ADMIN)
    names = [r.get("data", {}).get("name") for r in (record or {}).get("items", []) if r.get("recordId") == "u-000001"]
    check(names == ["Changed at the provider"], f"the provider's side was kept: {names}")


def compliance(driver, keys):
    """A SOC 2 bundle requested, watched until built, downloaded through the console and verified offline
    with the verifier keys the ledger page shows; a subject exported and erased."""
    driver.get(f"{PORTAL}/console/compliance")
    wait_for(driver, lambda d: d.find_element(By.ID, "request-report"), "the bundle form")
    accessibility(driver, "compliance")
    Select(driver.find_element(By.ID, "r-kind")).select_by_value("soc2")
    driver.find_element(By.ID, "request-report").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "notice"), "the bundle requested")
    link = wait_for(driver, lambda d: [a.get_attribute("href") for a in d.find_elements(By.CSS_SELECTOR, "tr[data-status=completed] a[download]")],
                    "the bundle built, its row updated in the page")
    shot(driver, "compliance")
    if not link:
        return
    href = link[0]
    encoded = driver.execute_async_script("""
        const [url, done] = arguments;
        fetch(url, {credentials: "same-origin"}).then((r) => r.arrayBuffer()).then((b) => {
          let s = ""; const bytes = new Uint8Array(b);
          for (let i = 0; i < bytes.length; i += 8192) s += String.fromCharCode(...bytes.subarray(i, i + 8192));
          done(btoa(s));
        }).catch((e) => done(""));
    """, href)
    path = os.path.join(WORK, "console-soc2.tar.zst")
    with open(path, "wb") as f:
        f.write(base64.b64decode(encoded))
    verify = subprocess.run([PORTAL_BIN, "report", "verify", path] + [a for k in keys for a in ("--vkey", k)], capture_output=True, text=True)
    check(verify.returncode == 0, f"the bundle downloaded from the console verifies offline with the keys the ledger page shows: {verify.stdout[-300:]}{verify.stderr[-300:]}")

    driver.get(f"{PORTAL}/console/compliance/register")
    table = wait_for(driver, lambda d: d.find_element(By.ID, "register"), "the record of processing")
    check(table is not None and "CRM" in table.text, "the record of processing lists the recipients")
    accessibility(driver, "register")
    shot(driver, "register")

    for action, button in (("export", "subject-export"), ("erase", "subject-erase")):
        driver.get(f"{PORTAL}/console/compliance")
        wait_for(driver, lambda d: d.find_element(By.ID, "s-subject"), "the subject form")
        driver.find_element(By.ID, "s-subject").send_keys("user7@example.test")
        driver.execute_script("window.confirm = () => true;")
        driver.find_element(By.ID, button).click()
        result = wait_for(driver, lambda d: d.find_element(By.ID, "subject-result"), f"the subject {action}'s result")
        check(result is not None and "user7@example.test" in driver.find_element(By.TAG_NAME, "h1").text, f"a data subject's {action} shows its result")
    shot(driver, "subject-erased")


def configure(driver):
    """The seed's IntegrationConfig: from the catalog (a failing test shown), from scratch (the API's 422
    beside its field, the unsaved test passing in place, saved), edited with its secret masked, deleted."""
    driver.get(f"{PORTAL}/console/integrations")
    wait_for(driver, lambda d: d.find_element(By.ID, "add-integration"), "the add button").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "from-scratch"), "the catalog")
    accessibility(driver, "catalog")
    shot(driver, "catalog")
    # A preset needs its parameters: the API's 422 names the missing one, shown beside it; then it saves.
    # (No test here: the presets' hosts are on the Internet, and these tests reach only loopback.)
    driver.find_element(By.XPATH, "//a[strong[text()='Custom analytics endpoint']]").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "f-credentials-apiKey"), "the preset's form")
    accessibility(driver, "preset")
    driver.find_element(By.ID, "f-credentials-apiKey").send_keys("k-analytics-0123456789")
    driver.find_element(By.ID, "save").click()
    error = wait_for(driver, lambda d: d.find_element(By.ID, "f-parameters-host-error"), "the missing parameter named beside its field")
    check(error is not None and "required" in error.text and "k-analytics-0123456789" not in driver.page_source,
          f"a preset's missing parameter is explained beside it, the secret not written back: {error.text if error else ''}")
    driver.find_element(By.ID, "f-parameters-host").send_keys("analytics.example.test")
    driver.find_element(By.ID, "f-credentials-apiKey").send_keys("k-analytics-0123456789")
    driver.find_element(By.ID, "save").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "notice"), "the preset's integration saved")
    check("analytics.example.test" in driver.find_element(By.TAG_NAME, "main").text, "the preset's base URL holds the parameter")

    driver.get(f"{PORTAL}/console/integrations/new/scratch")
    wait_for(driver, lambda d: d.find_element(By.ID, "f-name"), "the scratch form")
    accessibility(driver, "configure")
    driver.find_element(By.ID, "f-name").send_keys("Upstream")
    Select(driver.find_element(By.ID, "f-type")).select_by_value("analytics")
    driver.find_element(By.ID, "f-baseUrl").send_keys("ftp://nowhere.example")
    Select(driver.find_element(By.ID, "f-authMethod")).select_by_value("api_key")
    check(not driver.find_element(By.CSS_SELECTOR, "fieldset[data-method=api_key]").get_attribute("hidden")
          and driver.find_element(By.CSS_SELECTOR, "fieldset[data-method=oauth2]").get_attribute("hidden"), "the form follows the auth method")
    driver.find_element(By.ID, "f-credentials-apiKey").send_keys("k-upstream-0123456789")
    driver.find_element(By.ID, "save").click()
    error = wait_for(driver, lambda d: d.find_element(By.ID, "f-baseUrl-error"), "the API's 422 beside the base URL")
    check(error is not None and error.text != "" and "k-upstream-0123456789" not in driver.page_source,
          f"the API's message is beside the field it names, and the secret is not written back: {error.text if error else ''}")
    shot(driver, "configure-error")
    url = driver.find_element(By.ID, "f-baseUrl")
    url.clear()
    url.send_keys(UPSTREAM)
    driver.find_element(By.ID, "f-config-testEndpoint").send_keys("/ok")
    driver.find_element(By.ID, "f-credentials-apiKey").send_keys("k-upstream-0123456789")
    driver.find_element(By.ID, "test-unsaved").click()
    result = wait_for(driver, lambda d: d.find_element(By.ID, "test-result").get_attribute("data-success"), "the unsaved test")
    check(result == "true", f"the unsaved configuration's test passes: {driver.find_element(By.ID, 'test-result').text[:200]}")
    driver.find_element(By.ID, "save").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "notice"), "the integration saved")
    check("/console/integrations/" in driver.current_url and "Upstream" in driver.find_element(By.TAG_NAME, "h1").text, "saved: its page opens")
    driver.find_element(By.ID, "edit").click()
    field = wait_for(driver, lambda d: d.find_element(By.ID, "f-credentials-apiKey"), "the edit form")
    check(field.get_attribute("value") == "" and "••••" in (field.get_attribute("placeholder") or "") and "k-upstream-0123456789" not in driver.page_source,
          f"on edit the secret is masked, never echoed: {field.get_attribute('placeholder')}")
    name = driver.find_element(By.ID, "f-name")
    name.clear()
    name.send_keys("Upstream API")
    check(name.get_attribute("value") == "Upstream API", f"the new name is in the form: {name.get_attribute('value')!r}")
    driver.find_element(By.ID, "save").click()
    wait_for(driver, lambda d: "done=saved" in d.current_url, "the edit saved")
    heading = driver.find_element(By.TAG_NAME, "h1").text
    check("Upstream API" in heading, f"the saved name is shown: {heading!r}")
    driver.find_element(By.ID, "test-saved").click()
    wait_for(driver, lambda d: "done=test-" in d.current_url, "the saved integration's test")
    notice = wait_for(driver, lambda d: d.find_element(By.ID, "notice"), "the saved integration's test result")
    check(notice is not None and "passed" in notice.text, f"the kept secret still works after the edit: {notice.text if notice else ''}")
    driver.execute_script("window.confirm = () => true;")
    driver.find_element(By.ID, "delete").click()
    wait_for(driver, lambda d: d.current_url.endswith("/console/integrations?done=deleted"), "the deletion")
    check("Upstream API" not in driver.find_element(By.ID, "integrations").text, "a deleted integration leaves the list")


def alerting(driver):
    """An alert fires when an integration fails, resolves when it recovers; a silence made and ended."""
    status, created = api("POST", "/portal/integrations", ADMIN, {
        "name": "Flaky", "type": "analytics", "baseUrl": UPSTREAM, "authMethod": "api_key",
        "credentials": {"apiKey": "k-flaky-0123456789"}, "config": {"retry": {"maxAttempts": 1}}})
    check(status == 201, f"the flaky integration: {status}")
    flaky = created["id"]
    for _ in range(3):
        api("POST", f"/portal/integrations/{flaky}/requests", ADMIN, {"method": "GET", "endpoint": "/fail"})
    firing = reload_until(driver, f"{PORTAL}/console/alerts",
                          lambda d: [r for r in d.find_elements(By.CSS_SELECTOR, "#active-alerts tbody tr") if "IntegrationFailing" in r.text and "Flaky" in r.text],
                          "the alert fires")
    check(bool(firing), "the failing integration's alert is listed as firing")
    accessibility(driver, "alerts")
    shot(driver, "alerts")
    driver.find_element(By.ID, "s-matchers").send_keys("integration_name=Flaky")
    driver.find_element(By.ID, "s-comment").send_keys("provider maintenance")
    driver.find_element(By.ID, "silence").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "notice"), "the silence made")
    item = driver.find_elements(By.CSS_SELECTOR, "li[data-silence]")
    check(bool(item) and "integration_name=Flaky" in item[0].text, "the silence is listed")
    item[0].find_element(By.CSS_SELECTOR, "button").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "no-silences"), "the silence ended")
    api("POST", f"/portal/integrations/{flaky}/requests", ADMIN, {"method": "GET", "endpoint": "/ok"})
    resolved = reload_until(driver, f"{PORTAL}/console/alerts",
                            lambda d: [r for r in d.find_elements(By.CSS_SELECTOR, "#recent-alerts tbody tr") if "IntegrationFailing" in r.text],
                            "the alert resolves")
    check(bool(resolved) and not driver.find_elements(By.CSS_SELECTOR, "#active-alerts"), "the alert resolves by itself once a call succeeds")


def settings(driver):
    """The organization's settings: an alert receiver added (its URL never shown again) and removed."""
    driver.get(f"{PORTAL}/console/settings")
    wait_for(driver, lambda d: d.find_element(By.ID, "r-name"), "the settings page")
    accessibility(driver, "settings")
    driver.find_element(By.ID, "r-name").send_keys("oncall")
    Select(driver.find_element(By.ID, "r-kind")).select_by_value("slack")
    driver.find_element(By.ID, "r-url").send_keys("https://hooks.slack.com/services/T000/B000/console-secret-path")
    driver.find_element(By.ID, "add-receiver").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "notice"), "the receiver added")
    check("console-secret-path" not in driver.page_source and driver.find_elements(By.CSS_SELECTOR, "li[data-receiver=oncall]"),
          "the receiver is listed, its URL never shown")
    shot(driver, "settings")
    driver.execute_script("window.confirm = () => true;")
    driver.find_element(By.CSS_SELECTOR, "li[data-receiver=oncall] button").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "no-receivers"), "the receiver removed")


def connect(driver):
    """Connect: the OAuth authorization-code flow through nanoidp, back to the integration's page."""
    driver.get(f"{PORTAL}/console/integrations/{OAUTH_ID}")
    wait_for(driver, lambda d: d.find_element(By.ID, "connect"), "the Connect button").click()
    wait_for(driver, lambda d: d.find_element(By.NAME, "username"), "nanoidp's login form")
    driver.find_element(By.NAME, "username").send_keys("testuser")
    driver.find_element(By.NAME, "password").send_keys("test123")
    driver.find_element(By.NAME, "password").submit()
    notice = wait_for(driver, lambda d: "done=connected" in d.current_url and d.find_element(By.ID, "notice"), "back on the integration's page, connected")
    check(notice is not None and "Connected" in notice.text and f"/console/integrations/{OAUTH_ID}" in driver.current_url,
          "Connect runs the provider's login and comes back to the integration's page, still signed in")
    status, answer = api("POST", f"/portal/integrations/{OAUTH_ID}/requests", ADMIN, {"method": "GET", "endpoint": "/ok"})
    check(status == 200 and answer.get("status") == 200, f"the connected integration calls out with its token: {status}")


def governance(driver):
    """Approvals: with approvals required, an integration the admin adds waits and makes no call; the admin
    cannot approve their own request; a compliance officer approves it in the console with a comment."""
    status, _ = api("PUT", "/portal/policy", ADMIN, {"approvals": "required"})
    check(status == 200, f"approvals required: {status}")
    status, created = api("POST", "/portal/integrations", ADMIN, {
        "name": "Needs approval", "type": "analytics", "baseUrl": UPSTREAM, "authMethod": "api_key", "credentials": {"apiKey": "k-approval-123456"}})
    integration = created.get("id") if status == 201 else None
    check(integration and created.get("status") == "pending", f"a new integration waits for approval: {status} {created}")
    status, problem = api("POST", f"/portal/integrations/{integration}/requests", ADMIN, {"method": "GET", "endpoint": "/ok"})
    check(status == 409 and "approv" in problem.get("detail", ""), f"a pending integration makes no call: {status} {problem}")

    driver.get(f"{PORTAL}/console/governance")
    row = wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, f"#pending-approvals tr[data-integration='{integration}']"), "the request waits in Governance")
    check(row is not None and row.find_elements(By.CLASS_NAME, "own-request") and not row.find_elements(By.CLASS_NAME, "approve"),
          "the requester sees their request without an approve button")
    driver.get(f"{PORTAL}/console/integrations/{integration}")
    pending = wait_for(driver, lambda d: d.find_element(By.ID, "approval-pending").text, "the integration page says it waits")
    check(pending is not None and "second person" in pending, "the integration page says it waits for a second person")

    driver.delete_all_cookies()
    sign_in(driver, COMPLIANCE)
    wait_for(driver, lambda d: "/console/integrations" in d.current_url, "signed in as the compliance officer")
    driver.get(f"{PORTAL}/console/governance")
    row = wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, f"#pending-approvals tr[data-integration='{integration}']"), "the request, for the approver")
    accessibility(driver, "governance")
    shot(driver, "governance")
    row.find_element(By.TAG_NAME, "textarea").send_keys("DPA on file; destination reviewed")
    row.find_element(By.CLASS_NAME, "approve").click()
    notice = wait_for(driver, lambda d: d.find_element(By.ID, "notice").text, "the approval's notice")
    check(notice is not None and "Approved" in notice, "approved from the console")
    decisions = wait_for(driver, lambda d: d.find_element(By.ID, "decisions").text, "the decisions table") or ""
    check("Cora Compliance" in decisions and "DPA on file" in decisions and "approved" in decisions, f"the decision is listed: {decisions!r}")
    status, answer = api("POST", f"/portal/integrations/{integration}/requests", ADMIN, {"method": "GET", "endpoint": "/ok"})
    check(status == 200, f"the approved integration calls out: {status}")

    # Service level objectives: the integration's page shows attainment, budget and burn rates.
    status, _ = api("PATCH", f"/portal/integrations/{integration}", ADMIN, {"config": {"slo": {"availability": 0.99, "latency": {"thresholdMs": 2000, "objective": 0.95}}}})
    check(status == 200, f"objectives set: {status}")
    driver.get(f"{PORTAL}/console/integrations/{integration}")
    table = wait_for(driver, lambda d: d.find_element(By.ID, "slo-table").text, "the objectives on the integration's page")
    check(table is not None and "availability" in table and "99.0%" in table and "met" in table, f"attainment shown: {table}")

    # A security review: an incomplete one is refused beside the questions; a complete one is recorded.
    driver.get(f"{PORTAL}/console/integrations/{integration}/reviews/new")
    wait_for(driver, lambda d: d.find_element(By.ID, "record-review"), "the review form").click()
    # The text is read inside the wait: the page may be replaced while it is read.
    error = wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#fs-encryption_in_transit .field-error").text, "a missing answer named beside its question")
    check(error is not None and "required" in error, "an unanswered required question is named beside it")
    for fieldset in driver.find_elements(By.CSS_SELECTOR, "fieldset.question"):
        radios = fieldset.find_elements(By.CSS_SELECTOR, "input[type=radio][value=yes]")
        if radios:
            radios[0].click()
        else:
            area = fieldset.find_element(By.TAG_NAME, "textarea")
            area.clear()
            area.send_keys("SOC 2 Type II; EU (Frankfurt)")
    driver.find_element(By.ID, "dpa").click()
    driver.find_element(By.ID, "dpa-ref").send_keys("DPA-2026-7")
    accessibility(driver, "security review")
    shot(driver, "review")
    driver.find_element(By.ID, "record-review").click()
    card = wait_for(driver, lambda d: "done=reviewed" in d.current_url and d.find_element(By.ID, "security-review").text, "the recorded review on the integration's page")
    check(card is not None and "approved" in card and "on file" in card and "Cora Compliance" in card, f"the review is shown: {card}")
    driver.get(f"{PORTAL}/console/governance")
    row = wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, f"#review-schedule tr[data-integration='{integration}']").text, "the review schedule")
    check(row is not None and "current" in row, f"the schedule shows the review current: {row}")

    status, _ = api("PUT", "/portal/policy", ADMIN, {"approvals": "off"})
    driver.delete_all_cookies()
    sign_in(driver, ADMIN)
    wait_for(driver, lambda d: "/console/integrations" in d.current_url, "signed in as the admin again")


def headers_of(path):
    try:
        with urllib.request.urlopen(f"{PORTAL}{path}") as r:
            return r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers)


def main():
    # Security headers, without a browser.
    status, headers = headers_of("/console/sign-in")
    csp = headers.get("Content-Security-Policy", "")
    check(status == 200 and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp,
          f"the sign-in page has a CSP without inline script: {csp}")
    check(headers.get("X-Content-Type-Options") == "nosniff" and headers.get("Referrer-Policy") and headers.get("X-Frame-Options") == "DENY",
          "nosniff, Referrer-Policy and X-Frame-Options on every page")

    driver = browser()
    driver.set_script_timeout(WAIT)
    try:
        # A wrong token is refused with a message, and no session.
        sign_in(driver, "ptk_" + "x" * 43)
        error = wait_for(driver, lambda d: d.find_element(By.ID, "sign-in-error"), "a refused sign-in shows why")
        check(error is not None and "refused" in error.text, "a wrong token is refused on the sign-in page")
        accessibility(driver, "sign-in")
        shot(driver, "sign-in")

        # A deep link survives the sign-in.
        driver.get(f"{PORTAL}/console/integrations/{CRM_ID}")
        wait_for(driver, lambda d: "/console/sign-in" in d.current_url, "an unsigned visit goes to sign-in")
        field = driver.find_element(By.ID, "token")
        field.send_keys(ADMIN)
        driver.find_element(By.CSS_SELECTOR, "form[action='/console/sign-in'] button[type=submit]").click()
        wait_for(driver, lambda d: d.current_url.endswith(f"/console/integrations/{CRM_ID}"), "sign-in returns to the page asked for")
        cookie = driver.get_cookie("portal_session")
        check(cookie is not None and cookie.get("httpOnly") and cookie.get("sameSite") == "Lax", f"the session cookie is HttpOnly and SameSite=Lax: {cookie}")

        # The integration's page: configuration with masked credentials, traffic, webhooks.
        heading = wait_for(driver, lambda d: d.find_element(By.TAG_NAME, "h1"), "the integration page")
        check(heading is not None and "CRM" in heading.text, "the integration page names the integration")
        body = driver.find_element(By.TAG_NAME, "body").text
        check("k-console-CRM-123456" not in driver.page_source and "••••" in body, "the credential is masked, never echoed")
        metrics = driver.find_element(By.ID, "metrics").text
        check("4" in metrics and "25.0%" in metrics, f"the integration's traffic: 4 requests, 25% errors: {metrics!r}")
        accessibility(driver, "integration")
        shot(driver, "integration")

        # The list, and its filters.
        driver.get(f"{PORTAL}/console/integrations")
        table = wait_for(driver, lambda d: d.find_element(By.ID, "integrations"), "the integrations list")
        check(table is not None and "CRM" in table.text and "Analytics" in table.text, "both integrations are listed")
        accessibility(driver, "integrations")
        shot(driver, "integrations")
        Select(driver.find_element(By.ID, "f-type")).select_by_value("analytics")
        driver.find_element(By.CSS_SELECTOR, "form.filters button").click()
        wait_for(driver, lambda d: "type=analytics" in d.current_url, "the type filter")
        table = driver.find_element(By.ID, "integrations").text
        check("Analytics" in table and "CRM" not in table, "the type filter keeps only analytics integrations")

        operations(driver)
        configure(driver)

        alerting(driver)
        settings(driver)
        connect(driver)
        governance(driver)

        # The ledger: checkpoint, keys, an entry whose proof this browser checks, and a tampered one it refuses.
        driver.get(f"{PORTAL}/console/ledger?seq=1")
        result = wait_for(driver, lambda d: d.find_element(By.ID, "proof-result").get_attribute("data-verdict") and d.find_element(By.ID, "proof-result"),
                          "the browser's proof check")
        verdict = result.get_attribute("data-verdict") if result else None
        check(verdict == "pass", f"the browser verifies entry 1's inclusion proof and the Ed25519 checkpoint signature: {result.text if result else ''}")
        accessibility(driver, "ledger")
        shot(driver, "ledger")
        driver.execute_script("""
            const el = document.getElementById("proof-data");
            const data = JSON.parse(el.dataset.proof);
            data.entryText = data.entryText.replace('"seq":1', '"seq":2');
            el.dataset.proof = JSON.stringify(data);
            document.getElementById("proof-result").dataset.verdict = "";
            document.getElementById("check-proof").click();
        """)
        wait_for(driver, lambda d: d.find_element(By.ID, "proof-result").get_attribute("data-verdict") == "fail", "a tampered entry fails the browser's check")
        driver.execute_script("""
            const el = document.getElementById("proof-data");
            const data = JSON.parse(el.dataset.proof);
            data.entryText = data.entryText.replace('"seq":2', '"seq":1');
            const p = data.inclusionProof; if (p.length) { p[0] = btoa(String.fromCharCode(...new Uint8Array(32))); }
            el.dataset.proof = JSON.stringify(data);
            document.getElementById("proof-result").dataset.verdict = "";
            document.getElementById("check-proof").click();
        """)
        wait_for(driver, lambda d: d.find_element(By.ID, "proof-result").get_attribute("data-verdict") == "fail", "a tampered proof fails the browser's check")
        check(True, "a tampered entry and a tampered proof both fail the browser's check")
        driver.find_element(By.ID, "verify-now").click()
        verdict = wait_for(driver, lambda d: d.find_element(By.ID, "verify-result"), "the verification's verdict")
        check(verdict is not None and verdict.get_attribute("data-passed") == "true", f"'verify now' passes: {verdict.text if verdict else ''}")
        keys = [t.get_attribute("value") for t in driver.find_elements(By.CSS_SELECTOR, "ul.keys textarea")]
        check(len(keys) == 2, "both verifier keys are on the ledger page")
        compliance(driver, keys)
        driver.get(f"{PORTAL}/console/ledger?seq=999999")
        wait_for(driver, lambda d: d.find_element(By.ID, "lookup-error"), "an entry beyond the ledger is reported")

        # Tokens: create one (shown once), see it listed, revoke it.
        driver.get(f"{PORTAL}/console/tokens")
        wait_for(driver, lambda d: d.find_element(By.ID, "t-owner"), "the token form")
        accessibility(driver, "tokens")
        driver.find_element(By.ID, "t-owner").send_keys("Ola Operator")
        Select(driver.find_element(By.ID, "t-role")).select_by_value("operator")
        expires = driver.find_element(By.ID, "t-expires")
        expires.clear()
        expires.send_keys("soon")
        driver.find_element(By.CSS_SELECTOR, "form[action='/console/tokens'] button[type=submit]").click()
        error = wait_for(driver, lambda d: d.find_element(By.ID, "t-expires-error"), "the API's 422 shown beside its field")
        check(error is not None and error.text != "", f"an invalid expiry is explained beside the field: {error.text if error else ''}")
        expires = driver.find_element(By.ID, "t-expires")
        expires.clear()
        expires.send_keys("7d")
        driver.find_element(By.CSS_SELECTOR, "form[action='/console/tokens'] button[type=submit]").click()
        created = wait_for(driver, lambda d: d.find_element(By.ID, "new-token"), "the new token shown once")
        token = created.get_attribute("value") if created else ""
        check(token.startswith("ptk_") and len(token) == 47, "the new token is shown once")
        shot(driver, "tokens")
        driver.get(f"{PORTAL}/console/tokens")
        check(token not in driver.page_source, "the token is not shown again")
        row = driver.find_element(By.XPATH, "//tr[th[text()='Ola Operator']]")
        driver.execute_script("window.confirm = () => true;")
        row.find_element(By.CSS_SELECTOR, "button.danger").click()
        wait_for(driver, lambda d: "revoked" in d.find_element(By.XPATH, "//tr[th[text()='Ola Operator']]").text, "the revoked token is listed as revoked")
        check(True, "a token is created and revoked from the console")

        # CSRF: a form without the token, and one with a wrong token, change nothing.
        status, _ = post_from_page(driver, "/console/tokens", {"role": "admin", "owner": "Mallory"})
        check(status == 403, f"a form without its CSRF token is refused (403): {status}")
        status, _ = post_from_page(driver, "/console/tokens", {"role": "admin", "owner": "Mallory", "csrf": "forged"})
        check(status == 403, f"a form with a forged CSRF token is refused (403): {status}")
        driver.get(f"{PORTAL}/console/tokens")
        check("Mallory" not in driver.page_source, "no token was made by the refused forms")

        # Sign out: the session ends server-side; the old cookie no longer opens a page.
        old = driver.get_cookie("portal_session")["value"]
        driver.find_element(By.CSS_SELECTOR, "form[action='/console/sign-out'] button").click()
        wait_for(driver, lambda d: "/console/sign-in" in d.current_url, "sign-out returns to the sign-in page")
        request = urllib.request.Request(f"{PORTAL}/console/integrations", headers={"Cookie": f"portal_session={old}"})

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        try:
            urllib.request.build_opener(NoRedirect).open(request)
            reused = 200
        except urllib.error.HTTPError as e:
            reused = e.code
            location = e.headers.get("Location", "")
        check(reused == 303 and "/console/sign-in" in location, f"the signed-out session's cookie leads back to sign-in: {reused}")
    finally:
        driver.quit()

    # Another organization's admin sees none of it, by URL either.
    driver = browser()
    try:
        sign_in(driver, OTHER)
        wait_for(driver, lambda d: d.current_url.endswith("/console/integrations"), "the other organization's admin signs in")
        check("CRM" not in driver.find_element(By.TAG_NAME, "main").text, "another organization's list does not show acme's integrations")
        driver.get(f"{PORTAL}/console/integrations/{CRM_ID}")
        problem = wait_for(driver, lambda d: d.find_element(By.ID, "problem"), "another organization's integration by URL")
        check(problem is not None and "CRM" not in driver.page_source and "Not found" in driver.title, "another organization's integration is not found, by URL too")
        accessibility(driver, "error")
        shot(driver, "not-found")
    finally:
        driver.quit()

    # An auditor sees no token administration, and the server refuses it when asked anyway.
    driver = browser(width=390)
    try:
        sign_in(driver, AUDITOR)
        wait_for(driver, lambda d: d.current_url.endswith("/console/integrations"), "the auditor signs in")
        nav = driver.find_element(By.CSS_SELECTOR, "nav[aria-label=Sections]").text
        check("Tokens" not in nav and "Ledger" in nav, f"the auditor's navigation has the ledger, not tokens: {nav!r}")
        shot(driver, "integrations-phone")
        csrf = driver.find_element(By.CSS_SELECTOR, "form[action='/console/sign-out'] input[name=csrf]").get_attribute("value")
        status, text = post_from_page(driver, "/console/tokens", {"role": "admin", "owner": "Escalation", "csrf": csrf})
        check(status == 403 and "auditor" in text, f"the server refuses an auditor's token creation (403): {status}")
        driver.get(f"{PORTAL}/console/tokens")
        problem = wait_for(driver, lambda d: d.find_element(By.ID, "problem"), "the auditor opening the tokens page")
        check(problem is not None and "may not" in problem.text, "the tokens page is refused to an auditor, by URL too")
        # The session cookie removed: back to sign-in, as after an expired session.
        driver.delete_cookie("portal_session")
        driver.get(f"{PORTAL}/console/ledger")
        wait_for(driver, lambda d: "/console/sign-in" in d.current_url, "without a session, a page returns to sign-in")
        check("next=" in driver.current_url, "and comes back to the page after signing in")
    finally:
        driver.quit()

    if failures:
        print(f"console: {len(failures)} failed", file=sys.stderr)
        sys.exit(1)
    print("console: all checks passed")


if __name__ == "__main__":
    main()

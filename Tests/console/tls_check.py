"""Reads the TLS a real Chromium negotiated with the portal from the DevTools protocol (issue 21): the
response's securityDetails (protocol and keyExchangeGroup), and the HSTS header the console sends.

Environment: PORTAL (https://127.0.0.1:PORT). Exit 1 when a check fails.
"""
import json
import os
import sys

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

PORTAL = os.environ["PORTAL"]

options = Options()
options.binary_location = "/usr/bin/chromium"
for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--ignore-certificate-errors"):
    options.add_argument(flag)
options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
failures = []
try:
    driver.execute_cdp_cmd("Network.enable", {})
    driver.get(f"{PORTAL}/console/sign-in")
    details, headers = None, {}
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") != "Network.responseReceived":
            continue
        response = message["params"]["response"]
        if response.get("url", "").startswith(f"{PORTAL}/console/sign-in"):
            details = response.get("securityDetails")
            headers = {k.lower(): v for k, v in response.get("headers", {}).items()}
            break
    if details is None:
        failures.append("no securityDetails for the sign-in page")
    else:
        print(f"  negotiated: {details.get('protocol')}, {details.get('keyExchangeGroup')}, {details.get('cipher')}")
        if details.get("keyExchangeGroup") != "X25519MLKEM768":
            failures.append(f"key exchange group {details.get('keyExchangeGroup')!r}, not X25519MLKEM768")
        if details.get("protocol") != "TLS 1.3":
            failures.append(f"protocol {details.get('protocol')!r}, not TLS 1.3")
    if not headers.get("strict-transport-security", "").startswith("max-age="):
        failures.append(f"no HSTS on the console: {headers.get('strict-transport-security')!r}")
finally:
    driver.quit()
for f in failures:
    print(f"  FAIL: {f}")
sys.exit(1 if failures else 0)

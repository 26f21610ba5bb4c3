#!/usr/bin/python3
"""End-to-end test of the PHP pages in a real browser: headless Chromium driven by Selenium
(Debian: chromium, chromium-driver, python3-selenium; nothing is downloaded), against the demo
shop of `make demo` (scripts/demo.sh: a real otpd and PHP's built-in web server).

It walks sms-2fa-setup.txt as written: first login, choose SMS, save a phone, "The phone number
is not verified", send the code, read it from the outbox page, verify, "The phone number is
verified", make and download the backup codes, log out, log in with a texted code, log in with a
backup code, add an authenticator by decoding the QR image on the page (zbarimg) and computing
its code, change the phone with an authenticator code, and the lock after wrong codes. Then it
checks that no code or secret reached a URL or a log.

A screenshot of every page goes to $OTPD_BROWSER_ARTIFACTS (default: a new temporary
directory), with pages.tsv: each page's weight (bytes over the wire, as the browser's
Navigation Timing counts them) and server time (request sent to first byte).

Waits are explicit and generous (a loaded 2-core machine): every step waits for what the page
must show, never a fixed sleep, and no assertion is on time.

Environment: OTPD_BIN (default <repo>/.build/debug/otpd), OTPD_BROWSER_ARTIFACTS, CHROMIUM
(default /usr/bin/chromium), CHROMEDRIVER (default /usr/bin/chromedriver).
Exit status 0 when every step passed.
"""
import base64
import glob
import hashlib
import hmac
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
WAIT = 60  # seconds any one page or element may take to appear
PHONE = "+1 555 010 4477"
NEW_PHONE = "+44 20 7946 0958"


class Walk:
    def __init__(self):
        self.artifacts = os.environ.get("OTPD_BROWSER_ARTIFACTS") or tempfile.mkdtemp(prefix="otpd-browser-")
        os.makedirs(self.artifacts, exist_ok=True)
        self.work = tempfile.mkdtemp(prefix="otpd-browser-demo-")
        self.downloads = os.path.join(self.work, "downloads")
        os.makedirs(self.downloads)
        self.password = "pw-" + secrets.token_urlsafe(9)
        self.shots = 0
        self.pages = []  # (screenshot, url, transfer bytes, body bytes, server ms)
        self.secrets_seen = set()  # every code and secret typed: none may reach a URL or a log
        self.demo = None
        self.driver = None
        self.url = None

    # ---- Set-up ----------------------------------------------------------------------------

    def start_demo(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        ready = os.path.join(self.work, "ready")
        env = dict(os.environ, DEMO_DIR=os.path.join(self.work, "demo"), DEMO_PORT=str(port),
                   DEMO_PASSWORD=self.password, DEMO_READY_FILE=ready)
        self.demo_out = open(os.path.join(self.work, "demo.out"), "w")
        self.demo = subprocess.Popen([os.path.join(ROOT, "scripts", "demo.sh")], env=env, stdout=self.demo_out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while not os.path.exists(ready):
            if self.demo.poll() is not None or time.monotonic() > deadline:
                self.demo_out.flush()
                raise SystemExit("the demo did not start:\n" + open(self.demo_out.name).read())
            time.sleep(0.1)
        self.url = open(ready).read().strip().rstrip("/")
        self.demo_dir = env["DEMO_DIR"]

    def start_browser(self):
        options = Options()
        options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                         "--window-size=1000,1100", "--user-data-dir=" + os.path.join(self.work, "profile"),
                         "--no-first-run", "--disable-extensions", "--disable-background-networking"):
            options.add_argument(argument)
        options.add_experimental_option("prefs", {"download.default_directory": self.downloads,
                                                  "download.prompt_for_download": False})
        driver = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
        log = os.path.join(self.work, "chromedriver.log")
        try:
            service = Service(driver, log_output=log)  # Selenium 4.11 and later
        except TypeError:
            service = Service(driver, log_path=log)  # Debian 12's Selenium 4.8
        self.driver = webdriver.Chrome(service=service, options=options)
        self.driver.set_page_load_timeout(WAIT)
        self.driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                                    {"behavior": "allow", "downloadPath": self.downloads})

    def stop(self):
        if self.driver is not None:
            try:
                self.driver.quit()
            except Exception:
                pass
        if self.demo is not None and self.demo.poll() is None:
            os.killpg(self.demo.pid, signal.SIGTERM)
            try:
                self.demo.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.demo.pid, signal.SIGKILL)
                self.demo.wait()

    # ---- Browser helpers -------------------------------------------------------------------

    def wait(self, condition, what):
        try:
            return WebDriverWait(self.driver, WAIT, poll_frequency=0.2).until(condition)
        except TimeoutException:
            self.shot("FAILED-" + re.sub(r"\W+", "-", what)[:40])
            raise AssertionError(f"waited {WAIT} s for {what}; the page says:\n{self.body()}")

    def body(self):
        return self.driver.find_element(By.TAG_NAME, "body").text

    def see(self, text):
        self.wait(lambda d: text in self.body(), repr(text))

    def element(self, element_id):
        return self.wait(EC.presence_of_element_located((By.ID, element_id)), "#" + element_id)

    def absent(self, element_id):
        assert not self.driver.find_elements(By.ID, element_id), f"#{element_id} should not be on the page"

    def type(self, element_id, text):
        field = self.element(element_id)
        field.clear()
        field.send_keys(text)

    def submit(self, element_id):
        """Clicks a button that loads a new page, and waits for the new page.

        The old page is marked with a window property that a new document does not have.
        (Selenium's staleness_of asks the old element and expects one kind of error; recent
        Chromium answers a detached node with another, which made the wait fail at random.)"""
        self.driver.execute_script("window.__otpdOldPage = true;")
        self.element(element_id).click()

        def new_page_loaded(driver):
            try:
                return driver.execute_script(
                    "return window.__otpdOldPage === undefined && document.readyState === 'complete'")
            except WebDriverException:
                return False  # navigating: the old document is going away

        self.wait(new_page_loaded, f"the page after #{element_id}")

    def open(self, path):
        self.driver.get(self.url + path)
        self.wait(lambda d: d.execute_script("return document.readyState") == "complete", path)

    def shot(self, name):
        self.shots += 1
        path = os.path.join(self.artifacts, f"{self.shots:02d}-{name}.png")
        self.driver.save_screenshot(path)
        timing = self.driver.execute_script(
            "const n = performance.getEntriesByType('navigation')[0];"
            "return n ? [n.transferSize, n.encodedBodySize, n.responseStart - n.requestStart] : [0, 0, 0];")
        self.pages.append((os.path.basename(path), self.driver.current_url.replace(self.url, ""), *timing))

    def sign_in(self):
        self.open("/login")
        self.type("user", "admin")
        self.type("password", self.password)
        self.submit("sign-in")

    def sign_out(self):
        self.open("/admin")
        self.submit("logout")
        self.see("Shop admin: sign in")

    def texted_code(self, purpose, known):
        """Reads the newest text for `purpose` from the demo's outbox page in a second tab, as a
        person would read their phone; `known` is how many texts there were before."""
        main = self.driver.current_window_handle
        self.driver.switch_to.new_window("tab")
        deadline = time.monotonic() + WAIT
        try:
            while True:
                self.open("/outbox")
                rows = self.driver.find_elements(By.CSS_SELECTOR, "#texts tr")[1:]
                if len(rows) > known:
                    cells = rows[0].find_elements(By.TAG_NAME, "td")
                    assert cells[2].text == purpose, f"the newest text is for {cells[2].text}, not {purpose}"
                    code = re.search(r"\b(\d{6,10})\b", cells[3].text).group(1)
                    break
                assert time.monotonic() < deadline, f"no new {purpose} text in the outbox"
                time.sleep(0.3)  # polling the outbox page, not an assertion on time
            if purpose == "verify_phone" and self.shots < 6:
                self.shot("outbox")
        finally:
            self.driver.close()
            self.driver.switch_to.window(main)
        self.secrets_seen.add(code)
        return code

    def texts(self):
        path = os.path.join(self.demo_dir, "outbox.jsonl")
        return sum(1 for _ in open(path)) if os.path.exists(path) else 0

    # ---- The walk ----------------------------------------------------------------------------

    def run(self):
        # First login: the password, then the choice of method.
        self.open("/login")
        self.shot("shop-login")
        self.sign_in()
        self.see("Choose how to confirm your sign-ins")
        self.shot("first-login-choose")
        self.element("method-sms").click()
        self.submit("choose")

        # The SMS/Text message configure page, as the product describes it.
        self.see("SMS/Text message configure")
        self.shot("sms-configure")
        self.type("phone", PHONE)
        self.submit("save")
        self.see("The phone number is not verified")
        assert self.element("send-code").text == "Send verification code"
        self.absent("code")
        self.shot("sms-not-verified")
        known = self.texts()
        self.submit("send-code")
        self.element("code")
        self.element("verify")
        self.absent("send-code")  # "replaced with a blank field for verification"
        self.see("The phone number is not verified")
        self.shot("sms-code-field")
        self.type("code", self.texted_code("verify_phone", known))
        self.submit("verify")

        # Verified; the backup codes are made right away and shown once.
        self.see("The phone number is verified")
        self.see("These codes are shown only once")
        codes = [li.text for li in self.driver.find_elements(By.CSS_SELECTOR, "#codes li")]
        assert len(codes) == 10 and all(re.fullmatch(r"[a-z0-9]{4}(-[a-z0-9]{4}){3}", c) for c in codes), codes
        self.secrets_seen.update(codes)
        self.shot("backup-codes")
        self.element("download").click()
        downloaded = self.wait(lambda d: [f for f in glob.glob(os.path.join(self.downloads, "*.txt"))], "the download")
        text = open(downloaded[0]).read()
        assert all(code in text for code in codes), text
        shutil.copy(downloaded[0], os.path.join(self.artifacts, "backup-codes-download.txt"))
        self.element("print")  # window.print() in a headless browser prints nothing: its button is there
        self.submit("done")
        self.see("Signed in as admin")
        self.shot("dashboard-after-setup")
        self.open("/2fa?page=backup")
        self.see("You have 10 unused backup codes")
        assert codes[0] not in self.driver.page_source, "the codes are shown once"
        self.open("/2fa?page=profile")
        self.see("Text messages")
        self.shot("profile")
        self.submit_link("sms-configure")
        self.see("The phone number is verified")
        self.absent("not-verified")
        self.shot("sms-verified")
        self.sign_out()

        # Log in with a texted code; "Send again" shows the wait otpd returns.
        known = self.texts()
        self.sign_in()
        self.see("We sent a code by text message to +1******4477")
        assert self.element("resend").get_attribute("disabled") is not None
        assert re.search(r"You can ask for a new code in \d+ seconds", self.body()), self.body()
        self.shot("login-sms")
        self.type("code", self.texted_code("login", known))
        self.submit("verify")
        self.see("Signed in as admin")
        self.shot("dashboard-after-sms-login")
        self.sign_out()

        # Log in with a backup code.
        self.sign_in()
        self.see("Two-step verification")
        self.shot("login-again")
        self.submit_link("use-backup")
        self.see("Enter one of your backup codes")
        self.shot("login-backup")
        self.type("code", codes[0])
        self.submit("verify")
        self.see("Signed in as admin")

        # Add an authenticator: a proof first (a texted manage_factors code), then the QR code.
        self.open("/2fa?page=profile")
        self.see("9 left")
        self.submit("add-totp")
        self.see("To add an authenticator app, confirm it is you")
        self.shot("step-up-add-authenticator")
        known = self.texts()
        self.submit("send-sms")
        self.type("sms-code", self.texted_code("manage_factors", known))
        self.submit("confirm-sms")
        self.see("Scan this code with your authenticator app")
        self.shot("authenticator-qr")
        qr = os.path.join(self.work, "qr.png")
        self.element("qr").screenshot(qr)
        shutil.copy(qr, os.path.join(self.artifacts, "authenticator-qr-element.png"))
        uri = subprocess.run(["zbarimg", "--quiet", "--raw", qr], capture_output=True, text=True,
                             check=True).stdout.strip()
        assert uri.startswith("otpauth://totp/"), uri
        secret = urllib.parse.parse_qs(urllib.parse.urlparse(uri).query)["secret"][0]
        self.secrets_seen.add(secret)
        assert self.element("secret").text.replace(" ", "") == secret, "the secret as text is the QR's"
        step = int(time.time()) // 30
        self.type("code", totp(secret, step))
        self.submit("confirm")
        self.see("The authenticator app is on.")
        self.shot("authenticator-on")

        # Change the phone with an authenticator code instead of a text to the current number.
        self.open("/2fa?page=sms")
        self.type("phone", NEW_PHONE)
        self.submit("save")
        self.see("To change the phone number, confirm it is you")
        self.see("A code from your authenticator app")
        self.shot("step-up-change-phone")
        # otpd refuses a step it accepted before (replay): wait for the app's next code.
        self.wait(lambda d: int(time.time()) // 30 > step, "the authenticator's next code")
        code = totp(secret, int(time.time()) // 30)
        self.secrets_seen.add(code)
        self.type("totp-code", code)
        self.submit("confirm-totp")
        self.see("The new phone number +44******0958 is not verified")
        self.see("The phone number is verified")  # the old number works until the new one is verified
        self.shot("sms-new-number-pending")
        self.sign_out()

        # Wrong codes lock the sign-in, and the page says until when.
        self.sign_in()
        self.see("Two-step verification")
        self.submit_link("use-totp")
        self.see("Open your authenticator app")
        self.shot("login-authenticator")
        valid = {totp(secret, int(time.time()) // 30 + d) for d in (-1, 0, 1, 2)}
        wrong = next(c for c in ("000000", "111111", "222222") if c not in valid)
        for attempt in range(12):
            self.type("code", wrong)
            self.submit("verify")
            if "Sign-in is locked" in self.body():
                break
            self.see("The code is not valid.")
            if attempt == 0:
                self.shot("login-wrong-code")
        self.see("Sign-in is locked until")
        assert re.search(r"locked until \d\d:\d\d \S+ \(about \d+ minutes? from now\)", self.body()), self.body()
        self.shot("login-locked")

        self.check_logs()

    def submit_link(self, element_id):
        """Follows a link that loads a new page (the same wait as ``submit``)."""
        self.submit(element_id)

    def check_logs(self):
        """No code, backup code or secret in a URL the web server logged, nor in otpd's log;
        and no PHP warning, notice, deprecation or error on any page."""
        for log in ("php.log", "otpd.log"):
            text = open(os.path.join(self.demo_dir, log)).read()
            for secret in self.secrets_seen:
                assert secret not in text, f"{log} holds a code or secret"
        php_log = open(os.path.join(self.demo_dir, "php.log")).read()
        problems = re.findall(r".*PHP (?:Warning|Notice|Deprecated|Fatal error|Parse error).*", php_log)
        assert not problems, "PHP complained:\n" + "\n".join(problems[:10])

    def report(self):
        with open(os.path.join(self.artifacts, "pages.tsv"), "w") as out:
            out.write("screenshot\tpage\tbytes over the wire\tbody bytes\tserver ms\n")
            for shot, url, transfer, body, server in self.pages:
                out.write(f"{shot}\t{url}\t{transfer}\t{body}\t{server:.1f}\n")


def totp(secret_base32, step):
    """RFC 6238 (HMAC-SHA1, 6 digits), as an authenticator app computes it."""
    key = base64.b32decode(secret_base32.upper() + "=" * (-len(secret_base32) % 8))
    digest = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    return "%06d" % ((struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF) % 1_000_000)


def main():
    walk = Walk()
    print(f"browser test: screenshots and page figures in {walk.artifacts}", flush=True)
    ok = False
    try:
        walk.start_demo()
        walk.start_browser()
        walk.run()
        ok = True
    finally:
        walk.report()
        walk.stop()
        if ok:
            shutil.rmtree(walk.work, ignore_errors=True)
        else:
            print(f"browser test: FAILED; the demo's files and logs are kept in {walk.work}", file=sys.stderr)
    print(f"browser test: passed, {walk.shots} pages; screenshots in {walk.artifacts}")


if __name__ == "__main__":
    main()

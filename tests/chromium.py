"""Headless Chromium driven through the Chrome DevTools protocol, with the standard library only.

``Chromium`` starts ``chromium --headless --remote-debugging-pipe``: the browser reads commands
on its file descriptor 3 and writes answers and events on 4, each a JSON message ended by a NUL
byte. ``Chromium.new_page`` opens a tab (a flat session) that can navigate, evaluate script,
click at an element's centre with real mouse events, take screenshots, and report console errors
and uncaught exceptions.

As a script, it screenshots a page: ``python tests/chromium.py PAGE.html OUT.png [WIDTH [HEIGHT]]``
(HEIGHT 0 or absent: the whole page).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    """``$BDBENCH_CHROMIUM``, else the first Chromium or Chrome binary on ``PATH``."""
    override = os.environ.get("BDBENCH_CHROMIUM")
    if override:
        return shutil.which(override) or (override if os.access(override, os.X_OK) else None)
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class CDPError(RuntimeError):
    """A protocol error, a closed pipe or a timeout; the message ends with Chromium's stderr tail."""


class Chromium:
    def __init__(self, binary: str, timeout: float = 20.0, startup_timeout: float = 90.0):
        self.timeout = timeout
        self.events: list[dict] = []
        self._next_id = 0
        self._buffer = b""
        self._profile = tempfile.TemporaryDirectory(prefix="bdbench-chromium-")
        self._log = open(Path(self._profile.name) / "stderr.txt", "wb")  # noqa: SIM115 - closed in close()
        to_child, self._writer = os.pipe()
        self._reader, from_child = os.pipe()
        # above 4, so that the child's dup2 onto 3 and 4 never overwrites one it still needs
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 5) for fd in (to_child, from_child)]
        for fd in (to_child, from_child):
            os.close(fd)

        def child_fds() -> None:
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        args = [binary, "--headless", "--remote-debugging-pipe", "--disable-gpu", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars", "--mute-audio",
                "--disable-dev-shm-usage", "--font-render-hinting=none", f"--user-data-dir={self._profile.name}",
                # on a machine without a network, a browser that keeps looking up its update, sync and
                # metrics hosts can stall its first answers for longer than a test waits
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-quic", "--disable-default-apps", "--metrics-recording-only"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium refuses to run its sandbox as root
        self.process = subprocess.Popen(args + ["about:blank"], stdin=subprocess.DEVNULL, stdout=self._log,
                                        stderr=self._log, close_fds=False, preexec_fn=child_fds)
        for fd in high:
            os.close(fd)
        self._handshake(startup_timeout)

    def _handshake(self, startup_timeout: float) -> None:
        """Wait, up to ``startup_timeout``, for the first answer: a loaded CI machine can take far
        longer to start a browser than to answer any later command."""
        timeout, self.timeout = self.timeout, startup_timeout
        try:
            self.send("Browser.getVersion")
        except CDPError:
            self.close()
            raise
        finally:
            self.timeout = timeout

    # -- protocol ---------------------------------------------------------------------------
    def _stderr_tail(self) -> str:
        self._log.flush()
        text = (Path(self._profile.name) / "stderr.txt").read_text(errors="replace")
        return "\n".join(text.splitlines()[-15:])

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CDPError(f"no answer from chromium in {self.timeout:.0f} s\n{self._stderr_tail()}")
            ready, _, _ = select.select([self._reader], [], [], remaining)
            if ready:
                chunk = os.read(self._reader, 1 << 20)
                if not chunk:
                    raise CDPError(f"chromium closed the pipe (exit {self.process.poll()})\n{self._stderr_tail()}")
                self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._writer, data):]
        deadline = time.monotonic() + self.timeout
        while True:
            answer = self._read_message(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise CDPError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self.events.append(answer)

    def wait_event(self, method: str, session: str | None = None) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == method and event.get("sessionId") == session:
                    return self.events.pop(i)
            self.events.append(self._read_message(deadline))

    def new_page(self, width: int = 1400, height: int = 900) -> Page:
        return Page(self, width, height)

    # -- life cycle -------------------------------------------------------------------------
    def close(self) -> None:
        try:
            if self.process.poll() is None:
                self.timeout = 5.0
                self.send("Browser.close")
        except (CDPError, OSError):
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._reader, self._writer):
            os.close(fd)
        self._log.close()
        self._profile.cleanup()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Page:
    """One tab: ``goto``, ``evaluate``, ``click``, ``screenshot``; ``errors()`` lists what went wrong."""

    def __init__(self, browser: Chromium, width: int, height: int):
        self.browser, self.width, self.height = browser, width, height
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self._viewport(height)

    def send(self, method: str, params: dict | None = None) -> dict:
        return self.browser.send(method, params, self.session)

    def _viewport(self, height: int) -> None:
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def goto(self, url: str) -> None:
        self.send("Page.navigate", {"url": url})
        self.browser.wait_event("Page.loadEventFired", self.session)

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise CDPError(f"{expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """Scroll ``selector`` into view and click its centre with the mouse (press and release)."""
        box = self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                            "if (!e) return null; e.scrollIntoView({block: 'center', inline: 'center'});"
                            "const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        if box is None:
            raise CDPError(f"nothing matches {selector!r}")
        x, y = box
        self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries (failed loads) so far."""
        out = []
        for event in self.browser.events:
            if event.get("sessionId") != self.session:
                continue
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                out.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                out.append("exception: " + str(details.get("exception", {}).get("description", details.get("text"))))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                out.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".strip())
        return out

    def screenshot(self, path: str | Path, height: int | None = None) -> bytes:
        """A PNG of the page's top ``height`` CSS pixels (the whole page when None)."""
        if height is None:
            height = int(self.evaluate("document.documentElement.scrollHeight"))
        self.evaluate("window.scrollTo(0, 0)")
        self._viewport(height)
        shot = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                    "clip": {"x": 0, "y": 0, "width": self.width, "height": height,
                                                             "scale": 1}})
        self._viewport(self.height)
        data = base64.b64decode(shot["data"])
        Path(path).write_bytes(data)
        return data


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    binary = find_chromium()
    if binary is None:
        print("no chromium binary found (install the chromium package or set BDBENCH_CHROMIUM)", file=sys.stderr)
        return 1
    width = int(argv[2]) if len(argv) > 2 else 1400
    height = int(argv[3]) if len(argv) > 3 and int(argv[3]) > 0 else None
    with Chromium(binary) as browser:
        page = browser.new_page(width)
        page.goto(Path(argv[0]).resolve().as_uri())
        page.screenshot(argv[1], height)
        for error in page.errors():
            print(error, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

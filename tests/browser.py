"""A headless Chromium driven over the Chrome DevTools Protocol, with no extra packages.

Only what the report tests need: open a local page, collect uncaught exceptions, console
errors, log errors and every network request, and evaluate JavaScript in the page. The
browser runs in its own session (process group) and :meth:`Browser.close` kills that
group by the id of the process it started, so no renderer outlives a test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from websockets.sync.client import connect

FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
)


def find_chromium() -> str | None:
    """``$JAMREC_CHROMIUM``, else the first Chromium/Chrome on the PATH, else None."""
    explicit = os.environ.get("JAMREC_CHROMIUM")
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    """One headless browser with one page (a flat CDP session to a new target)."""

    def __init__(self, binary: str, profile: Path, timeout_s: float = 30.0):
        self.timeout_s = timeout_s
        self.events: list[dict] = []
        self._next_id = 0
        self.log = profile / "chromium.log"
        profile.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        try:
            self.ws = connect(self._ws_url(profile), max_size=None, open_timeout=timeout_s)
            target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            self.session = self.send(
                "Target.attachToTarget", {"targetId": target, "flatten": True}
            )["sessionId"]
            for domain in ("Runtime", "Log", "Page", "Network"):
                self.send(f"{domain}.enable", session=self.session)
        except BaseException:
            self.close()
            raise

    def _ws_url(self, profile: Path) -> str:
        """The browser endpoint, from the DevToolsActivePort file Chromium writes."""
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited ({self.process.returncode}): {self._tail()}")
            lines = port_file.read_text().split() if port_file.exists() else []
            if len(lines) >= 2:
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
            time.sleep(0.05)
        raise TimeoutError(f"no DevTools endpoint after {self.timeout_s} s: {self._tail()}")

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send one command and wait for its result; events seen meanwhile are kept."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + self.timeout_s
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _receive(self, deadline: float) -> dict:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no reply from chromium in time")
        reply = json.loads(self.ws.recv(timeout=left))
        if "method" in reply:
            self.events.append(reply)
        return reply

    def open(self, url: str) -> None:
        """Navigate the page to ``url`` and wait for its load event."""
        seen = len(self.events)
        self.send("Page.navigate", {"url": url}, session=self.session)
        deadline = time.monotonic() + self.timeout_s
        while not any(e["method"] == "Page.loadEventFired" for e in self.events[seen:]):
            self._receive(deadline)

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (an exception raises)."""
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=self.session,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def errors(self) -> list[str]:
        """Uncaught exceptions, console errors and log entries of level error, so far."""
        found = []
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails'].get('text')}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(f"console.{params['type']}: {params.get('args')}")
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(f"log: {params['entry'].get('text')} ({params['entry'].get('url')})")
        return found

    def requests(self) -> list[str]:
        """Every URL the page requested (``Network.requestWillBeSent``), in order."""
        return [
            e["params"]["request"]["url"]
            for e in self.events
            if e["method"] == "Network.requestWillBeSent"
        ]

    def close(self) -> None:
        """Close the connection and kill the browser's process group (started by us)."""
        ws = getattr(self, "ws", None)
        if ws is not None:
            try:
                ws.close()
            except Exception:
                pass
        # The group may outlive its leader (renderers): kill it whatever the leader's state.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)

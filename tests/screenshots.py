"""A page as a person sees it, through headless Chromium (Debian's ``chromium``) driven over the
DevTools protocol: the window set to a phone's or a desktop's width (a phone: 375 px, as
``Emulation.setDeviceMetricsOverride`` does — headless windows are never narrower than 500 px),
its layout measured in the page itself, and a full-page screenshot.

``layout`` returns, once the page is laid out: the page's width (wider than the window = the
page scrolls sideways), every element that sticks out of the window other than inside a box that
scrolls on its own (a wide table in an ``overflow-x: auto`` box is fine: the page stays still),
and, per chart (``.chart svg``), its width on screen, its smallest text as drawn (font size
times the SVG's scale) and the words cut off by its edges.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

MEASURE = r"""
(function () {
  const vw = window.innerWidth, out = {viewport: vw, page_width: document.documentElement.scrollWidth,
                                        page_height: document.documentElement.scrollHeight, outside: [], charts: []};
  function scrollBox(el) {
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      const s = getComputedStyle(p);
      if ((s.overflowX === 'auto' || s.overflowX === 'scroll') && p.scrollWidth > p.clientWidth) return p;
    }
    return null;
  }
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (!r.width) continue;
    if (r.right <= vw + 0.5 && r.left >= -0.5) continue;
    const box = scrollBox(el);
    if (box) { const b = box.getBoundingClientRect(); if (b.right <= vw + 0.5 && b.left >= -0.5) continue; }
    out.outside.push({tag: el.tagName.toLowerCase(), left: Math.round(r.left), right: Math.round(r.right),
                      text: (el.textContent || '').trim().slice(0, 50)});
  }
  for (const svg of document.querySelectorAll('.chart svg')) {
    const box = svg.getBoundingClientRect(), clipped = [];
    let smallest = 1e9;
    for (const t of svg.querySelectorAll('text')) {
      if (!t.textContent.trim()) continue;
      const m = t.getScreenCTM(), r = t.getBoundingClientRect();
      smallest = Math.min(smallest, parseFloat(getComputedStyle(t).fontSize) * Math.hypot(m.a, m.b));
      if (r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5)
        clipped.push(t.textContent.trim());
    }
    out.charts.push({width: Math.round(box.width), smallest_text_px: Math.round(smallest * 10) / 10, clipped});
  }
  return JSON.stringify(out);
})()
"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


class _Page:
    """One tab of a headless Chromium of our own, over its DevTools WebSocket."""

    def __init__(self, ws_url: str):
        from websockets.sync.client import connect

        self.ws = connect(ws_url, max_size=None, open_timeout=30)
        self.next_id = 0

    def call(self, method: str, timeout: float = 60, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def wait_for(self, event: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic()))).get("method") != event:
            pass

    def show(self, url: str, width: int, height: int) -> None:
        self.size(width, height)
        self.call("Page.enable")
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def size(self, width: int, height: int) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=width < 600)


@contextlib.contextmanager
def _browser():
    # chromium's helper processes may still write into the profile as it exits: cleaned up as far as possible
    with tempfile.TemporaryDirectory(prefix="winecrm-chromium-", ignore_cleanup_errors=True) as profile:
        process = subprocess.Popen(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", f"--user-data-dir={profile}",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        page = None
        try:
            deadline = time.monotonic() + 60
            port = None
            while port is None and time.monotonic() < deadline:
                line = process.stderr.readline()
                if not line and process.poll() is not None:
                    raise RuntimeError(f"chromium exited ({process.returncode}) before listening")
                found = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
                port = found and int(found.group(1))
            if port is None:
                raise RuntimeError("chromium did not start its DevTools endpoint within 60 s")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
                target = next(t for t in json.load(answer) if t["type"] == "page")
            page = _Page(target["webSocketDebuggerUrl"])
            yield page
        finally:
            if page is not None:
                page.ws.close()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)  # the browser and its helper processes
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def _measure(page: _Page) -> dict:
    return json.loads(page.call("Runtime.evaluate", expression=MEASURE, returnByValue=True)["result"]["value"])


def layout(page: str | Path, width: int, height: int = 900) -> dict:
    """The page's layout at ``width`` CSS pixels (see the module docstring)."""
    with _browser() as tab:
        tab.show(Path(page).resolve().as_uri(), width, height)
        return _measure(tab)


def screenshot(page: str | Path, png: str | Path, width: int) -> Path:
    """A full-page PNG of the page at ``width`` CSS pixels."""
    png = Path(png)
    with _browser() as tab:
        tab.show(Path(page).resolve().as_uri(), width, 900)
        tab.size(width, _measure(tab)["page_height"])
        data = tab.call("Page.captureScreenshot", format="png")["data"]
    png.write_bytes(base64.b64decode(data))
    return png

"""Screenshot of a live page after a condition holds, through Chromium's DevTools protocol (the
plain `chromium --screenshot` captures at the load event, before a Gradio page has run its first
request). Used by scripts/screenshots.sh; needs Chromium and websocket-client.

    python scripts/_page_shot.py URL OUT.png --wait-for "TEXT" [--width 1200 --height 900]
"""
from __future__ import annotations

import argparse
import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("out")
    ap.add_argument("--wait-for", default="", help="take the shot once the page's text contains this")
    ap.add_argument("--width", type=int, default=1200)
    ap.add_argument("--height", type=int, default=900)
    ap.add_argument("--timeout", type=float, default=60.0)
    a = ap.parse_args()
    import websocket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    profile = tempfile.mkdtemp(prefix="vaelab-chromium-")
    proc = subprocess.Popen(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                             f"--remote-debugging-port={port}", f"--remote-allow-origins=http://127.0.0.1:{port}",
                             f"--user-data-dir={profile}",
                             f"--window-size={a.width},{a.height}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + a.timeout
        while True:
            try:
                tabs = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json"))
                page = next(t for t in tabs if t.get("type") == "page")
                break
            except (OSError, StopIteration):
                if time.time() > deadline:
                    raise SystemExit("Chromium's DevTools endpoint did not come up") from None
                time.sleep(0.3)
        ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=a.timeout)
        ids = iter(range(1, 10**6))

        def call(method, **params):
            i = next(ids)
            ws.send(json.dumps({"id": i, "method": method, "params": params}))
            while True:
                m = json.loads(ws.recv())
                if m.get("id") == i:
                    return m.get("result", {})

        call("Emulation.setDeviceMetricsOverride", width=a.width, height=a.height, deviceScaleFactor=1, mobile=False)
        call("Page.navigate", url=a.url)
        while True:
            text = call("Runtime.evaluate", expression="document.body ? document.body.innerText : ''",
                        returnByValue=True).get("result", {}).get("value", "")
            if a.wait_for in text and "processing" not in text:
                break
            if time.time() > deadline:
                raise SystemExit(f"the page did not show {a.wait_for!r} within {a.timeout:.0f} s")
            time.sleep(0.5)
        time.sleep(1.0)  # let the images finish painting
        png = call("Page.captureScreenshot", format="png")["data"]
        with open(a.out, "wb") as f:
            f.write(base64.b64decode(png))
        print(f"wrote {a.out}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()

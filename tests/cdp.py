"""A headless Chromium driven over the DevTools protocol, with a websocket client
written on the standard library: just enough to load pages, click, read the
DOM and collect console errors and failed requests."""

import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
import urllib.request

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
         "--disable-extensions", "--mute-audio", "--remote-debugging-port=0"]


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


class WebSocket:
    """RFC 6455 client side: masked text frames out, whole messages in."""

    def __init__(self, url, timeout=30):
        assert url.startswith("ws://")
        hostport, _, path = url[len("ws://"):].partition("/")
        host, _, port = hostport.partition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(("GET /%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           % (path, hostport, key)).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("websocket handshake: connection closed")
            head += chunk
        head, _, self.buf = head.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise ConnectionError("websocket handshake refused: %r" % head[:200])

    def send(self, text):
        data = text.encode("utf-8")
        n = len(data)
        header = bytes([0x81])
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("websocket closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self):
        message = b""
        while True:
            b0, b1 = self._read(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x8:
                raise ConnectionError("websocket closed by the browser")
            if opcode == 0x9:  # ping
                continue
            message += payload
            if b0 & 0x80:
                return message.decode("utf-8")

    def close(self):
        self.sock.close()


class Browser:
    """One headless Chromium with one page; `problems` collects console errors,
    uncaught exceptions, failed requests and HTTP errors."""

    def __init__(self, profile_dir, executable=None, timeout=30, flags=()):
        self.timeout = timeout
        self.proc = subprocess.Popen([executable or find_chromium()] + FLAGS + list(flags) +
                                     ["--user-data-dir=" + profile_dir, "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        port_file = os.path.join(profile_dir, "DevToolsActivePort")
        deadline = time.monotonic() + timeout
        while not (os.path.exists(port_file) and open(port_file).read().count("\n") >= 1):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.05)
        port = int(open(port_file).read().split()[0])
        with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port, timeout=timeout) as r:
            page = [t for t in json.load(r) if t.get("type") == "page"][0]
        self.ws = WebSocket(page["webSocketDebuggerUrl"], timeout)
        self.next_id = 0
        self.width = 0
        self.events = []
        self.problems = []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(domain + ".enable")

    def call(self, method, **params):
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})
            self._event(msg)

    def _event(self, msg):
        name, p = msg.get("method"), msg.get("params", {})
        if not name:
            return
        self.events.append(msg)
        if name == "Runtime.exceptionThrown":
            self.problems.append("exception: %s" % p["exceptionDetails"].get("text"))
        elif name == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            self.problems.append("console.%s: %s" % (p["type"], [a.get("value") for a in p.get("args", [])]))
        elif name == "Log.entryAdded" and p["entry"].get("level") == "error":
            self.problems.append("log: %s %s" % (p["entry"].get("text"), p["entry"].get("url", "")))
        elif name == "Network.loadingFailed" and not p.get("canceled"):
            self.problems.append("request failed: %s" % p.get("errorText"))
        elif name == "Network.responseReceived" and p["response"]["status"] >= 400:
            self.problems.append("HTTP %d: %s" % (p["response"]["status"], p["response"]["url"]))

    def wait_event(self, name, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            self._event(msg)
            if msg.get("method") == name:
                return msg.get("params", {})
        raise TimeoutError("no %s" % name)

    def load(self, url):
        self.call("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError("evaluate %r: %s" % (expression, result["exceptionDetails"].get("text")))
        return result["result"].get("value")

    def set_width(self, width, height=900):
        """Lay the page out as in a window `width` CSS pixels wide (no reload needed)."""
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=False)
        self.call("Emulation.setScrollbarsHidden", hidden=True)
        self.width = width

    def screenshot(self, path):
        """The whole page (not just the window) as a PNG file."""
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        width = max(self.width, size["width"])  # wider than the window: it shows
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": width, "height": min(size["height"], 8000), "scale": 1})
        with open(path, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        return path

    def click_and_wait(self, selector):
        """Click the element (a submit button) and wait for the page it leads to."""
        self.call("Runtime.evaluate", expression="document.querySelector(%s).click()" % json.dumps(selector))
        self.wait_event("Page.loadEventFired")

    def close(self):
        try:
            if getattr(self, "ws", None):
                self.ws.close()
        finally:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # chromium and its helper processes
            except ProcessLookupError:
                pass
            self.proc.wait(10)

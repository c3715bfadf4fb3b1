"""An upstream for the ingress tests, run by python3 in a throwaway container (stdlib only).

On 8069 it answers every request with JSON naming the port, the method, the path, the request
headers, how many body bytes it read (it reads them all, as Odoo does) and ``name``, the
environment variable ECHO_NAME (which of two upstreams answered). On 8072 it answers
a WebSocket upgrade on any path (RFC 6455 handshake) and echoes each text frame back prefixed
with ``8072:``, so a test can tell which port the proxy chose. Plain HTTP on 8072 gets the JSON
answer too.
"""

import base64
import hashlib
import json
import os
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.headers.get("Upgrade", "").lower() == "websocket":
            self._websocket()
            return
        length = int(self.headers.get("Content-Length") or 0)
        read = 0
        while read < length:
            chunk = self.rfile.read(min(65536, length - read))
            if not chunk:
                break
            read += len(chunk)
        body = json.dumps(
            {
                "port": self.server.server_address[1],
                "method": self.command,
                "path": self.path,
                "headers": {k: v for k, v in self.headers.items()},
                "body_bytes": read,
                "name": os.environ.get("ECHO_NAME", ""),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def _websocket(self):
        key = self.headers["Sec-WebSocket-Key"]
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        prefix = f"{self.server.server_address[1]}:".encode()
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                return
            opcode, size = head[0] & 0x0F, head[1] & 0x7F
            if size == 126:
                size = struct.unpack(">H", self.rfile.read(2))[0]
            elif size == 127:
                size = struct.unpack(">Q", self.rfile.read(8))[0]
            mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(size)))
            if opcode == 8:  # close: answer it and end
                self.wfile.write(b"\x88\x00")
                return
            if opcode == 1:
                reply = prefix + data
                self.wfile.write(bytes([0x81, len(reply)]) + reply)
                self.wfile.flush()

    def log_message(self, format, *args):
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


if __name__ == "__main__":
    servers = [Server(("0.0.0.0", port), Handler) for port in (8069, 8072)]
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("echo upstream serving on 8069 and 8072", flush=True)
    servers[0].serve_forever()

#!/usr/bin/env python3
"""natsctl.py - the two NATS operations the fleet example needs beyond
`cerebelum publish` (Debian has no NATS command-line tool), over the plain
NATS text protocol with the standard library only:

  natsctl.py URL stream NAME SUBJECT   create a JetStream stream (file storage,
                                       10 min duplicate window) unless it exists
  natsctl.py URL sub SUBJECT SECONDS   subscribe, and print each message's data
                                       on a line (flushed) for SECONDS

Not a NATS client: enough for an example and its test."""
import json
import signal
import socket
import sys


def connect(url):
    host, port = url.replace("nats://", "").rsplit(":", 1)
    s = socket.create_connection((host, int(port)), 5)
    s.settimeout(None)
    f = s.makefile("rb")
    f.readline()  # INFO {...}
    s.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,'
              b'"no_responders":true,"protocol":1}\r\nPING\r\n')
    return s, f


def next_msg(s, f):
    """The next MSG or HMSG as (subject, data); answers the server's PINGs."""
    while True:
        line = f.readline()
        if not line:
            raise EOFError("connection closed")
        if line.startswith(b"PING"):
            s.sendall(b"PONG\r\n")
        elif line.startswith(b"MSG "):
            parts = line.split()
            n = int(parts[-1])
            return parts[1].decode(), f.read(n + 2)[:n]
        elif line.startswith(b"HMSG "):
            parts = line.split()
            hlen, total = int(parts[-2]), int(parts[-1])
            return parts[1].decode(), f.read(total + 2)[:total][hlen:]
        elif line.startswith(b"-ERR"):
            raise RuntimeError(line.decode().strip())


def stream(url, name, subject):
    s, f = connect(url)
    cfg = json.dumps({"name": name, "subjects": [subject], "storage": "file",
                      "retention": "limits", "num_replicas": 1,
                      "duplicate_window": 600 * 10**9}).encode()
    s.sendall(b"SUB _INBOX.natsctl 1\r\nPUB $JS.API.STREAM.CREATE.%s _INBOX.natsctl %d\r\n%s\r\n"
              % (name.encode(), len(cfg), cfg))
    _, data = next_msg(s, f)
    r = json.loads(data)
    err = r.get("error")
    if err and err.get("err_code") != 10058:  # 10058: the stream exists already
        sys.exit("stream %s: %s" % (name, err.get("description")))
    print("stream %s on %s" % (name, subject))


def sub(url, subject, seconds):
    s, f = connect(url)
    s.sendall(b"SUB %s 1\r\nPING\r\n" % subject.encode())
    signal.signal(signal.SIGALRM, lambda *_: sys.exit(0))
    signal.alarm(max(1, int(seconds)))
    while True:
        _, data = next_msg(s, f)
        sys.stdout.write(data.decode() + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[2] == "stream":
        stream(sys.argv[1], sys.argv[3], sys.argv[4])
    elif len(sys.argv) == 5 and sys.argv[2] == "sub":
        sub(sys.argv[1], sys.argv[3], float(sys.argv[4]))
    else:
        sys.exit(__doc__)

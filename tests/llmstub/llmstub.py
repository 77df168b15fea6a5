#!/usr/bin/env python3
"""llmstub: an OpenAI-compatible chat-completions server for tests.

Cerebelum's LLM worker, its examples and its benchmarks need a model server
that speaks the real wire protocol over real HTTP: /v1/models,
/v1/chat/completions (plain JSON and server-sent events, usage, finish
reasons, error bodies shaped like OpenAI's and vLLM's), with latency knobs
and scripted faults, and a journal of what each request became. No model
runs here: the answer is a pure function of SHA-256(model, messages, seed),
so the same request always gets the same content and two different prompts
get different content (and different scores under a JSON schema).

Token convention: one token is one whitespace-separated word. prompt_tokens
counts the words of every message's content; completion_tokens counts the
words of the content sent.

Standard library only (Debian 12's python3). See README.md beside this file
for the knobs, the fault rules and the journal.
"""

import argparse
import hashlib
import json
import math
import os
import re
import select
import signal
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

# The faults a rule may name. Status faults answer with an error body and the
# code; the others are described at fault_plan().
STATUS_FAULTS = {
    "400": (400, "BadRequestError", "Bad request (scripted by llmstub)"),
    "401": (401, "AuthenticationError", "Incorrect API key provided (scripted by llmstub)"),
    "403": (403, "PermissionDeniedError", "You are not allowed to use this model (scripted by llmstub)"),
    "404": (404, "NotFoundError", "The model does not exist (scripted by llmstub)"),
    "408": (408, "RequestTimeoutError", "Request timed out (scripted by llmstub)"),
    "422": (422, "UnprocessableEntityError", "Unprocessable entity (scripted by llmstub)"),
    "429": (429, "RateLimitError", "Rate limit reached, please try again later (scripted by llmstub)"),
    "500": (500, "InternalServerError", "Internal server error (scripted by llmstub)"),
    "502": (502, "BadGatewayError", "Bad gateway (scripted by llmstub)"),
    "503": (503, "ServiceUnavailableError", "The server is overloaded (scripted by llmstub)"),
    "504": (504, "GatewayTimeoutError", "Gateway timeout (scripted by llmstub)"),
}
OTHER_FAULTS = {"context_length", "context_length_nested", "hang", "stall", "reset",
                "bad_json", "bad_schema", "length", "no_done"}
FAULTS = set(STATUS_FAULTS) | OTHER_FAULTS

REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           408: "Request Timeout", 422: "Unprocessable Entity", 429: "Too Many Requests",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
           504: "Gateway Timeout"}

WORDS = (
    "the system should keep every step durable so that a crash loses nothing and "
    "each worker reads its task from the queue then writes the result back while "
    "the engine records history in order we propose a small change to the parser "
    "which validates input early returns clear errors and logs the cause tests cover "
    "the retry path the timeout path and the happy path a careful review found two "
    "risks memory growth under load and a race between cancel and complete we "
    "suggest a lock free mailbox bounded buffers explicit ownership simple names "
    "fewer branches better metrics faster startup stable interfaces plain data "
    "clear contracts honest comments reliable storage idempotent handlers").split()
SCHEMA_WORDS = ("alpha beta gamma delta sound clear robust simple careful complete "
                "correct partial strong weak solid direct").split()

MAX_BODY = 64 << 20


def now_ms():
    return int(time.time() * 1000)


class Rng:
    """A deterministic stream of numbers: SHA-256 of key || counter. Unlike
    random.Random it cannot change between Python versions."""

    def __init__(self, key):
        self.key = key
        self.ctr = 0

    def u64(self):
        self.ctr += 1
        d = hashlib.sha256(self.key + self.ctr.to_bytes(8, "big")).digest()
        return int.from_bytes(d[:8], "big")

    def random(self):
        return self.u64() / 2.0 ** 64

    def randint(self, lo, hi):
        return lo + self.u64() % (hi - lo + 1)

    def choice(self, seq):
        return seq[self.u64() % len(seq)]


# --------------------------------------------------------------------------
# Content: text and JSON-schema instances derived from the request's hash.


def message_text(m):
    c = m.get("content") if isinstance(m, dict) else None
    if isinstance(c, str):
        return c
    if isinstance(c, list):
        return " ".join(p.get("text", "") for p in c if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def count_words(s):
    return len(s.split())


def tokenize(content):
    """Split content into tokens that concatenate back to it exactly: each
    token is a word with the whitespace before it."""
    toks = re.findall(r"\s*\S+", content)
    tail = content[len("".join(toks)):]
    if tail and toks:
        toks[-1] += tail
    elif tail:
        toks = [tail]
    return toks


def gen_text(rng, n):
    out = []
    sentence = 0
    for i in range(n):
        w = rng.choice(WORDS)
        if sentence == 0:
            w = w.capitalize()
        sentence += 1
        if i == n - 1 or (sentence >= 6 and rng.randint(0, 7) == 0):
            w += "."
            sentence = 0
        out.append(w)
    return " ".join(out)


def resolve_ref(ref, root):
    if not isinstance(ref, str) or not ref.startswith("#"):
        return {}
    node = root
    for part in [p for p in ref[1:].split("/") if p]:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return {}
    return node


def schema_type(s):
    t = s.get("type")
    if isinstance(t, list):
        non_null = [x for x in t if x != "null"]
        return non_null[0] if non_null else "null"
    if t:
        return t
    if "properties" in s or "additionalProperties" in s or "required" in s:
        return "object"
    if "items" in s or "prefixItems" in s:
        return "array"
    if any(k in s for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")):
        return "number"
    return "string"


def gen_string(s, rng):
    fmt = s.get("format")
    fixed = {"date-time": "2026-01-01T00:00:00Z", "date": "2026-01-01", "time": "00:00:00Z",
             "email": "stub@example.com", "uri": "https://example.com/stub",
             "uuid": "00000000-0000-4000-8000-000000000000", "ipv4": "127.0.0.1"}
    if fmt in fixed:
        return fixed[fmt]
    lo = int(s.get("minLength", 0))
    hi = s.get("maxLength")
    text = gen_text(rng, rng.randint(6, 16))
    while len(text) < lo:
        text += " " + rng.choice(WORDS)
    if hi is not None and len(text) > int(hi):
        text = text[: int(hi)].rstrip() if int(hi) >= lo else text[: int(hi)]
        while len(text) < lo:
            text += "x"
    return text


def gen_number(s, rng, integer):
    lo = s.get("minimum")
    hi = s.get("maximum")
    xlo = s.get("exclusiveMinimum")
    xhi = s.get("exclusiveMaximum")
    # draft 4 spells exclusivity as booleans beside minimum/maximum
    if xlo is True:
        xlo, lo = lo, None
    if xhi is True:
        xhi, hi = hi, None
    if not isinstance(xlo, (int, float)) or isinstance(xlo, bool):
        xlo = None
    if not isinstance(xhi, (int, float)) or isinstance(xhi, bool):
        xhi = None
    low = max([v for v in (lo, xlo) if v is not None], default=None)
    high = min([v for v in (hi, xhi) if v is not None], default=None)
    if low is None and high is None:
        low, high = 0, 100
    elif low is None:
        low = high - 100
    elif high is None:
        high = low + 100
    if integer:
        a = math.floor(low) + 1 if (xlo is not None and low == xlo and float(low).is_integer()) else math.ceil(low)
        b = math.ceil(high) - 1 if (xhi is not None and high == xhi and float(high).is_integer()) else math.floor(high)
        if b < a:
            return a
        return rng.randint(a, b)
    f = 0.05 + 0.9 * rng.random()
    v = low + f * (high - low)
    if high - low >= 0.01:
        v = round(v, 3)
    return min(max(v, low), high) if (xlo is None and xhi is None) else v


def gen_value(s, rng, root, depth=0):
    if s is True or not isinstance(s, dict) or depth > 12:
        return gen_text(rng, rng.randint(3, 8))
    if "$ref" in s:
        return gen_value(resolve_ref(s["$ref"], root), rng, root, depth + 1)
    if "const" in s:
        return s["const"]
    if isinstance(s.get("enum"), list) and s["enum"]:
        return rng.choice(s["enum"])
    for k in ("anyOf", "oneOf"):
        if isinstance(s.get(k), list) and s[k]:
            return gen_value(s[k][0], rng, root, depth + 1)
    if isinstance(s.get("allOf"), list):
        merged = {k: v for k, v in s.items() if k != "allOf"}
        for sub in s["allOf"]:
            if isinstance(sub, dict) and "$ref" in sub:
                sub = resolve_ref(sub["$ref"], root)
            if not isinstance(sub, dict):
                continue
            for k, v in sub.items():
                if k == "properties":
                    merged.setdefault("properties", {}).update(v)
                elif k == "required":
                    merged["required"] = list(merged.get("required", [])) + list(v)
                else:
                    merged.setdefault(k, v)
        return gen_value(merged, rng, root, depth + 1)
    t = schema_type(s)
    if t == "object":
        props = s.get("properties") or {}
        required = s.get("required") or []
        extra = s.get("additionalProperties", True)
        out = {}
        for name, sub in props.items():
            out[name] = gen_value(sub, rng, root, depth + 1)
        for name in required:
            if name not in out and extra is not False:
                out[name] = gen_value(extra if isinstance(extra, dict) else True, rng, root, depth + 1)
        want = int(s.get("minProperties", 0))
        if not props and isinstance(extra, dict):
            want = max(want, 2)
        i = 1
        while len(out) < want and extra is not False:
            out["field_%d" % i] = gen_value(extra if isinstance(extra, dict) else True, rng, root, depth + 1)
            i += 1
        return out
    if t == "array":
        lo = int(s.get("minItems", 0))
        hi = s.get("maxItems")
        hi = lo + 3 if hi is None else max(lo, min(int(hi), lo + 3))
        n = rng.randint(max(lo, 1) if hi >= 1 else 0, hi) if hi > 0 else 0
        prefix = s.get("prefixItems") if isinstance(s.get("prefixItems"), list) else []
        items = s.get("items", True)
        if isinstance(items, list):  # draft 4 tuple form
            prefix, items = items, s.get("additionalItems", True)
        out = []
        for i in range(n):
            sub = prefix[i] if i < len(prefix) else items
            v = gen_value(sub, rng, root, depth + 1)
            if s.get("uniqueItems"):
                for _ in range(8):
                    if v not in out:
                        break
                    v = gen_value(sub, rng, root, depth + 1)
                if v in out and len(out) >= lo:
                    break
            out.append(v)
        return out
    if t == "integer":
        return gen_number(s, rng, True)
    if t == "number":
        return gen_number(s, rng, False)
    if t == "boolean":
        return rng.randint(0, 1) == 1
    if t == "null":
        return None
    return gen_string(s, rng)


def violate(schema, value, root):
    """A JSON value that is valid JSON but not valid for the schema."""
    s = schema if isinstance(schema, dict) else {}
    if "$ref" in s:
        s = resolve_ref(s["$ref"], root)
    if schema_type(s) == "object" and isinstance(value, dict):
        bad = dict(value)
        changed = False
        req = s.get("required") or []
        if req:
            bad.pop(req[0], None)  # a required key is missing
            changed = True
        if s.get("additionalProperties") is False:
            bad["unexpected_key"] = True
            changed = True
        return bad if changed else ["not", "an", "object"]
    if schema_type(s) == "array":
        return {"not": "an array"}
    if schema_type(s) in ("number", "integer", "boolean"):
        return "not a number"
    return 12345


# --------------------------------------------------------------------------
# Shared state: rules and journal.


class State:
    def __init__(self, journal_path):
        self.lock = threading.Lock()
        self.rules = []
        self.journal = []
        self.seq = 0
        self.jfile = open(journal_path, "a", encoding="utf-8") if journal_path else None
        self.stopping = threading.Event()

    def add_rules(self, rules):
        with self.lock:
            self.rules.extend(rules)
            return len(self.rules)

    def reset(self):
        with self.lock:
            self.rules = []
            self.journal = []

    def take_rule(self, task, last_user):
        subject = task if task is not None else last_user
        with self.lock:
            for r in self.rules:
                if r["times"] == 0:
                    continue
                if r["match"] and r["match"] not in subject:
                    continue
                if r["times"] > 0:
                    r["times"] -= 1
                return dict(r)
        return None

    def open_entry(self, **fields):
        with self.lock:
            self.seq += 1
            e = {"seq": self.seq, "task": None, "model": None, "stream": False, "status": "in_flight",
                 "fault": None, "http_status": None, "prompt_tokens": 0, "completion_tokens": 0,
                 "started_ms": now_ms(), "ended_ms": None, "prompt_sha256": None, "seed": None}
            e.update(fields)
            self.journal.append(e)
            return e

    def update(self, e, **fields):
        with self.lock:
            e.update(fields)

    def close_entry(self, e, status, **fields):
        with self.lock:
            if e["status"] != "in_flight":
                return
            e.update(fields)
            e["status"] = status
            e["ended_ms"] = now_ms()
            self.write_line(e)

    def write_line(self, e):
        if self.jfile:
            self.jfile.write(json.dumps(e, separators=(",", ":")) + "\n")
            self.jfile.flush()

    def settle(self, e, status, write, **fields):
        """Finalize e as status, then call write() (the answer's last bytes).
        The entry is final before the client can have the answer, so a test
        that reads the journal right after its response sees it settled; if
        the write fails the entry becomes "aborted" and ClientGone goes on."""
        with self.lock:
            if e["status"] != "in_flight":
                return
            e.update(fields)
            e["status"] = status
            e["ended_ms"] = now_ms()
        try:
            write()
        except ClientGone:
            with self.lock:
                e["status"] = "aborted"
                e["ended_ms"] = now_ms()
                self.write_line(e)
            raise
        with self.lock:
            self.write_line(e)

    def snapshot(self):
        with self.lock:
            return json.dumps(self.journal)

    def stats(self):
        with self.lock:
            out = {"total": len(self.journal), "in_flight": 0, "completed": 0, "aborted": 0,
                   "fault": 0, "error": 0, "faults": {}}
            for e in self.journal:
                out[e["status"]] = out.get(e["status"], 0) + 1
                if e["fault"]:
                    out["faults"][e["fault"]] = out["faults"].get(e["fault"], 0) + 1
            return out


def parse_rule(r):
    if not isinstance(r, dict):
        raise ValueError("a rule must be an object")
    fault = r.get("fault")
    if isinstance(fault, int) and not isinstance(fault, bool):
        fault = str(fault)
    if fault not in FAULTS:
        raise ValueError("unknown fault %r (known: %s)" % (fault, ", ".join(sorted(FAULTS))))
    match = r.get("match", "") or ""
    if not isinstance(match, str):
        raise ValueError("match must be a string")
    times = r.get("times", 1)
    if not isinstance(times, int) or times < -1:
        raise ValueError("times must be an integer >= -1")
    out = {"match": match, "fault": fault, "times": times}
    for k in ("retry_after_s", "after_tokens"):
        v = r.get(k)
        if v is not None:
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
                raise ValueError("%s must be a number >= 0" % k)
            out[k] = v
    unknown = set(r) - {"match", "fault", "times", "retry_after_s", "after_tokens"}
    if unknown:
        raise ValueError("unknown key %r in a rule" % sorted(unknown)[0])
    return out


# --------------------------------------------------------------------------
# The HTTP side.


class ClientGone(Exception):
    """The client closed its connection (EOF or a write error)."""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "llmstub/1"
    sys_version = ""

    def version_string(self):
        return self.server_version

    def setup(self):
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, fmt, *args):
        if self.server.cfg.verbose:
            sys.stderr.write("llmstub: %s - %s\n" % (self.address_string(), fmt % args))

    # ---- socket helpers

    def peer_gone(self):
        """True when the client has closed its side (non-blocking check)."""
        try:
            r, _, _ = select.select([self.connection], [], [], 0)
            if not r:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def wait(self, seconds):
        """Sleep for seconds (None: forever), watching for the client to go
        away; raise ClientGone as soon as it does (within ~50 ms)."""
        end = None if seconds is None else time.monotonic() + seconds
        while True:
            if self.server.state.stopping.is_set():
                raise ClientGone()
            left = 0.05 if end is None else min(0.05, end - time.monotonic())
            if left <= 0:
                return
            try:
                r, _, _ = select.select([self.connection], [], [], left)
            except (OSError, ValueError):
                raise ClientGone()
            if r:
                try:
                    data = self.connection.recv(1, socket.MSG_PEEK)
                except OSError:
                    raise ClientGone()
                if data == b"":
                    raise ClientGone()
                # The client sent more (a pipelined request): it is still
                # there; don't spin on the readable socket.
                time.sleep(left)

    def write(self, data):
        try:
            self.wfile.write(data)
        except (OSError, ValueError):
            raise ClientGone()

    def send_body(self, code, body, ctype="application/json", headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.send_response(code, REASONS.get(code))
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        try:
            self.end_headers()
        except (OSError, ValueError):
            raise ClientGone()
        if self.command != "HEAD":
            self.write(body)

    def send_error_json(self, code, message, etype=None, headers=None):
        etype = etype or STATUS_FAULTS.get(str(code), (code, "APIError", ""))[1]
        self.send_body(code, {"error": {"message": message, "type": etype, "param": None, "code": code}},
                       headers=headers)

    def chunk(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.write(b"%x\r\n%s\r\n" % (len(data), data))

    def hard_reset(self):
        """Close the TCP connection with an RST (SO_LINGER 0)."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        # Detach and close the descriptor itself: rfile and wfile keep the
        # socket object alive, and a detached socket makes their later use by
        # http.server (flush, close, shutdown) harmless no-ops or OSErrors.
        try:
            os.close(self.connection.detach())
        except OSError:
            pass

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            total = 0
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024).strip():
                        pass
                    break
                total += size
                if total > MAX_BODY:
                    raise ValueError("body too large")
                parts.append(self.rfile.read(size))
                self.rfile.readline(8)
            return b"".join(parts)
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(n) if n > 0 else b""

    # ---- dispatch

    def do_GET(self):
        self.dispatch("GET")

    def do_HEAD(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def dispatch(self, method):
        path = urlsplit(self.path).path.rstrip("/") or "/"
        try:
            try:
                body = self.read_body() if method == "POST" else b""
            except (ValueError, OSError):
                self.close_connection = True
                self.send_error_json(400, "could not read the request body")
                return
            if path == "/health" and method == "GET":
                self.send_body(200, "ok", "text/plain")
            elif path.startswith("/v1/"):
                if not self.authorized():
                    answer = lambda: self.send_error_json(401, "Incorrect API key provided", "AuthenticationError")
                    if path == "/v1/chat/completions":
                        st = self.server.state
                        st.settle(st.open_entry(task=self.headers.get("X-Cerebelum-Task")), "error", answer,
                                  http_status=401)
                    else:
                        answer()
                elif path == "/v1/models" and method == "GET":
                    self.send_body(200, {"object": "list", "data": [self.model_obj(m) for m in self.server.cfg.models]})
                elif path.startswith("/v1/models/") and method == "GET":
                    m = path[len("/v1/models/"):]
                    if m in self.server.cfg.models:
                        self.send_body(200, self.model_obj(m))
                    else:
                        self.send_error_json(404, "The model `%s` does not exist." % m, "NotFoundError")
                elif path == "/v1/chat/completions" and method == "POST":
                    ChatRequest(self, body).run()
                else:
                    self.send_error_json(404, "no route %s %s" % (method, path), "NotFoundError")
            elif path.startswith("/_stub/"):
                self.control(method, path, body)
            else:
                self.send_error_json(404, "no route %s %s" % (method, path), "NotFoundError")
        except ClientGone:
            self.close_connection = True

    def authorized(self):
        key = self.server.cfg.api_key
        if not key:
            return True
        return self.headers.get("Authorization", "") == "Bearer " + key

    def model_obj(self, m):
        return {"id": m, "object": "model", "created": self.server.started, "owned_by": "llmstub"}

    def control(self, method, path, body):
        st = self.server.state
        if path == "/_stub/script" and method == "POST":
            try:
                rules = json.loads(body or b"[]")
                if isinstance(rules, dict):
                    rules = [rules]
                if not isinstance(rules, list):
                    raise ValueError("the body must be a JSON array of rules")
                parsed = [parse_rule(r) for r in rules]
            except ValueError as e:
                self.send_error_json(400, "bad script: %s" % e, "BadRequestError")
                return
            n = st.add_rules(parsed)
            self.send_body(200, {"rules": n})
        elif path == "/_stub/script" and method == "GET":
            with st.lock:
                rules = [dict(r) for r in st.rules]
            self.send_body(200, rules)
        elif path == "/_stub/reset" and method == "POST":
            st.reset()
            self.send_body(200, {"ok": True})
        elif path == "/_stub/journal" and method == "GET":
            self.send_body(200, st.snapshot())
        elif path == "/_stub/stats" and method == "GET":
            self.send_body(200, st.stats())
        else:
            self.send_error_json(404, "no route %s %s" % (method, path), "NotFoundError")


class ChatRequest:
    """One POST /v1/chat/completions: parse, pick a fault, answer, journal."""

    def __init__(self, h, body):
        self.h = h
        self.body = body
        self.state = h.server.state
        self.cfg = h.server.cfg
        self.sent_tokens = 0
        self.status = None

    def bad(self, code, message, etype):
        self.state.settle(self.entry, "error", lambda: self.h.send_error_json(code, message, etype),
                          http_status=code)

    def header_num(self, name, default):
        v = self.h.headers.get(name)
        if v is None:
            return default
        try:
            return float(v)
        except ValueError:
            return default

    def run(self):
        h = self.h
        task = h.headers.get("X-Cerebelum-Task")
        self.entry = self.state.open_entry(task=task)
        try:
            req = json.loads(self.body or b"null")
        except ValueError:
            return self.bad(400, "the request body is not valid JSON", "BadRequestError")
        if not isinstance(req, dict):
            return self.bad(400, "the request body must be a JSON object", "BadRequestError")
        model = req.get("model")
        messages = req.get("messages")
        stream = req.get("stream") is True
        self.state.update(self.entry, model=model, stream=stream)
        if not isinstance(model, str) or not model:
            return self.bad(400, "model is required", "BadRequestError")
        if not isinstance(messages, list) or not messages:
            return self.bad(400, "messages must be a non-empty array", "BadRequestError")
        if model not in self.cfg.models:
            return self.bad(404, "The model `%s` does not exist." % model, "NotFoundError")
        max_tokens = req.get("max_completion_tokens", req.get("max_tokens"))
        if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
            return self.bad(400, "max_tokens must be a positive integer", "BadRequestError")
        n = req.get("n", 1) or 1
        if not isinstance(n, int) or n < 1 or n > 16:
            return self.bad(400, "n must be an integer between 1 and 16", "BadRequestError")
        seed = req.get("seed")
        rf = req.get("response_format") or {"type": "text"}
        rtype = rf.get("type", "text") if isinstance(rf, dict) else "text"
        if rtype not in ("text", "json_object", "json_schema"):
            return self.bad(400, "response_format.type must be text, json_object or json_schema", "BadRequestError")
        schema = None
        if rtype == "json_schema":
            js = rf.get("json_schema")
            if not isinstance(js, dict) or not isinstance(js.get("schema", {}), dict):
                return self.bad(400, "response_format.json_schema.schema must be an object", "BadRequestError")
            schema = js.get("schema", {})
        so = req.get("stream_options") or {}
        include_usage = stream and isinstance(so, dict) and so.get("include_usage") is True

        canon = json.dumps([model, messages, seed], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        self.key = hashlib.sha256(canon.encode("utf-8")).digest()
        prompt_sha = hashlib.sha256(json.dumps(messages, sort_keys=True, separators=(",", ":"),
                                               ensure_ascii=False).encode("utf-8")).hexdigest()
        prompt_tokens = sum(count_words(message_text(m)) for m in messages)
        self.state.update(self.entry, prompt_tokens=prompt_tokens, prompt_sha256=prompt_sha, seed=seed)

        last_user = ""
        for m in messages:
            if isinstance(m, dict) and m.get("role") == "user":
                last_user = message_text(m)

        rule = None
        hf = h.headers.get("X-Stub-Fault")
        if hf:
            try:
                rule = parse_rule({"fault": hf,
                                   **({"retry_after_s": float(h.headers["X-Stub-Retry-After"])} if h.headers.get("X-Stub-Retry-After") else {}),
                                   **({"after_tokens": int(h.headers["X-Stub-After-Tokens"])} if h.headers.get("X-Stub-After-Tokens") else {})})
            except (ValueError, KeyError) as e:
                return self.bad(400, "bad X-Stub-Fault: %s" % e, "BadRequestError")
        if rule is None:
            rule = self.state.take_rule(task, last_user)
        fault = rule["fault"] if rule else None

        if fault is None and self.cfg.max_context and prompt_tokens + (max_tokens or 0) > self.cfg.max_context:
            fault = "context_length"  # the stub's own limit, not a scripted fault
            rule = {"fault": fault, "natural": True}
        self.state.update(self.entry, fault=fault)

        self.ttft = self.header_num("X-Stub-Ttft-Ms", self.cfg.ttft_ms) / 1000.0
        self.tps = self.header_num("X-Stub-Tps", self.cfg.tps)
        self.model, self.stream, self.include_usage = model, stream, include_usage
        self.prompt_tokens, self.max_tokens, self.schema, self.rtype = prompt_tokens, max_tokens, schema, rtype
        self.rule, self.fault, self.n = rule, fault, n

        try:
            self.answer()
        except ClientGone:
            self.h.close_connection = True
            self.state.close_entry(self.entry, "aborted", http_status=self.status, completion_tokens=self.sent_tokens)

    # ---- content

    def choice_content(self, index):
        """(content, finish_reason) of choice index, before faults that cut."""
        key = self.key + (b"" if index == 0 else b"/%d" % index)
        rng = Rng(key)
        natural = 20 + int.from_bytes(hashlib.sha256(key + b"/len").digest()[:4], "big") % 61
        if self.rtype == "text":
            if self.fault == "bad_schema":
                return "This is plain prose, not JSON: " + gen_text(rng, 12), "stop"
            text = gen_text(rng, natural)
            if self.max_tokens is not None and self.max_tokens < natural:
                # cut like a model would: the same prefix, stopped mid-sentence
                return "".join(tokenize(text)[: self.max_tokens]), "length"
            return text, "stop"
        rng = Rng(key + b"/json")
        if self.rtype == "json_object":
            value = {"answer": gen_text(rng, rng.randint(6, 14)), "confidence": round(0.05 + 0.9 * rng.random(), 3),
                     "tags": [rng.choice(SCHEMA_WORDS) for _ in range(rng.randint(1, 3))]}
            if self.fault == "bad_schema":
                return "Here is the JSON you asked for: " + json.dumps(value)[:-1], "stop"
        else:
            value = gen_value(self.schema, rng, self.schema)
            if self.fault == "bad_schema":
                value = violate(self.schema, value, self.schema)
        text = json.dumps(value, ensure_ascii=False)
        toks = tokenize(text)
        if self.max_tokens is not None and len(toks) > self.max_tokens:
            return "".join(toks[: self.max_tokens]), "length"
        return text, "stop"

    def plan(self):
        choices = []
        for i in range(self.n):
            content, finish = self.choice_content(i)
            if self.fault == "length":
                toks = tokenize(content)
                if self.rtype == "text":
                    keep = max(1, len(toks) // 2)
                    content = "".join(toks[:keep])
                else:
                    content = content[: max(1, len(content) // 2)]
                finish = "length"
            choices.append({"content": content, "finish": finish, "tokens": tokenize(content)})
        return choices

    def usage(self, completion):
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": completion,
                "total_tokens": self.prompt_tokens + completion,
                "prompt_tokens_details": {"cached_tokens": 0}}

    # ---- answering

    def answer(self):
        f = self.fault
        h = self.h
        if f in STATUS_FAULTS:
            code, etype, msg = STATUS_FAULTS[f]
            headers = {}
            if self.rule.get("retry_after_s") is not None:
                ra = self.rule["retry_after_s"]
                headers["Retry-After"] = str(int(ra)) if float(ra).is_integer() else str(ra)
            self.status = code
            self.state.settle(self.entry, "fault", lambda: h.send_error_json(code, msg, etype, headers),
                              http_status=code)
            return
        if f in ("context_length", "context_length_nested"):
            self.status = 400
            p, m = self.prompt_tokens, self.max_tokens or 1000
            limit = self.cfg.max_context or 4096
            p = max(p, limit + 1 - m)  # scripted: claim a prompt long enough to overflow
            msg = ("This model's maximum context length is %d tokens. However, you requested %d tokens "
                   "(%d in the messages, %d in the completion). Please reduce the length of the messages "
                   "or completion." % (limit, p + m, p, m))
            err = {"message": msg, "type": "BadRequestError", "param": None, "code": 400}
            body = {"error": err} if f == "context_length_nested" else dict({"object": "error"}, **err)
            self.state.settle(self.entry, "error" if self.rule.get("natural") else "fault",
                              lambda: h.send_body(400, body), http_status=400)
            return
        if f == "hang":
            h.close_connection = True
            h.wait(None)
            return
        if f == "reset" and (not self.stream or self.rule.get("after_tokens") is None):
            self.state.close_entry(self.entry, "fault")
            h.hard_reset()
            return
        choices = self.plan()
        if self.stream:
            self.answer_stream(choices)
        else:
            self.answer_plain(choices)

    def completion_id(self):
        return "chatcmpl-" + hashlib.sha256(self.key + b"%d" % self.entry["seq"]).hexdigest()[:24]

    def answer_plain(self, choices):
        h, f = self.h, self.fault
        total = sum(len(c["tokens"]) for c in choices)
        h.wait(self.ttft + (total / self.tps if self.tps > 0 else 0))
        obj = {"id": self.completion_id(), "object": "chat.completion", "created": int(time.time()),
               "model": self.model,
               "choices": [{"index": i, "message": {"role": "assistant", "content": c["content"], "tool_calls": []},
                            "logprobs": None, "finish_reason": c["finish"], "stop_reason": None}
                           for i, c in enumerate(choices)],
               "usage": self.usage(total)}
        body = json.dumps(obj).encode("utf-8")
        if f == "bad_json":
            body = body[: len(body) // 2]
        if f in ("stall", "no_done"):
            # Headers promise the whole body; half of it is sent, then the
            # connection stalls or is closed.
            h.close_connection = True
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            h.send_header("Connection", "close")
            try:
                h.end_headers()
            except (OSError, ValueError):
                raise ClientGone()
            self.status = 200
            h.write(body[: len(body) // 2])
            self.sent_tokens = total // 2
            if f == "stall":
                h.wait(None)
                return
            self.state.close_entry(self.entry, "fault", http_status=200, completion_tokens=self.sent_tokens)
            return
        self.status = 200
        if h.peer_gone():
            raise ClientGone()
        self.sent_tokens = total
        self.state.settle(self.entry, "fault" if f else "completed", lambda: h.send_body(200, body),
                          http_status=200, completion_tokens=total)

    def sse(self, obj):
        if self.h.peer_gone():
            raise ClientGone()
        self.h.chunk("data: " + json.dumps(obj, ensure_ascii=False) + "\n\n")

    def answer_stream(self, choices):
        h, f = self.h, self.fault
        after = self.rule.get("after_tokens") if self.rule else None
        total = sum(len(c["tokens"]) for c in choices)
        if f == "stall" and after is None:
            after = total // 2
        if f == "no_done" and after is None:
            after = total
        if f == "bad_json" and after is None:
            after = 0
        if after is not None:
            after = int(after)
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream; charset=utf-8")
        h.send_header("Cache-Control", "no-cache")
        h.send_header("Transfer-Encoding", "chunked")
        if f in ("no_done", "stall", "reset"):
            h.close_connection = True
            h.send_header("Connection", "close")
        try:
            h.end_headers()
        except (OSError, ValueError):
            raise ClientGone()
        self.status = 200
        self.state.update(self.entry, http_status=200)

        cid, created = self.completion_id(), int(time.time())
        usage_null = {"usage": None} if self.include_usage else {}

        def chunk_obj(choice_list):
            return dict({"id": cid, "object": "chat.completion.chunk", "created": created, "model": self.model,
                         "choices": choice_list}, **usage_null)

        h.wait(self.ttft)
        self.sse(chunk_obj([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                             "finish_reason": None} for i in range(len(choices))]))
        pos = [0] * len(choices)
        broke = False
        cut = False  # stall, reset, no_done: stop sending content at `after`
        while not cut:
            progressed = False
            for i, c in enumerate(choices):
                if pos[i] >= len(c["tokens"]):
                    continue
                if after is not None and f in ("stall", "reset", "no_done") and self.sent_tokens >= after:
                    cut = True
                    break
                if f == "bad_json" and not broke and self.sent_tokens >= after:
                    broke = True
                    if h.peer_gone():
                        raise ClientGone()
                    h.chunk('data: {"id": "%s", "object": "chat.completion.chunk", "choices": [{"index": 0, '
                            '"delta": {"content": "brok\n\n' % cid)
                k = 3  # tokens per content chunk
                if after is not None and f in ("stall", "reset", "no_done"):
                    k = min(k, after - self.sent_tokens)
                toks = c["tokens"][pos[i]: pos[i] + k]
                if self.tps > 0 and self.sent_tokens > 0:
                    h.wait(len(toks) / self.tps)
                self.sse(chunk_obj([{"index": i, "delta": {"content": "".join(toks)}, "logprobs": None,
                                     "finish_reason": None}]))
                pos[i] += len(toks)
                self.sent_tokens += len(toks)
                self.state.update(self.entry, completion_tokens=self.sent_tokens)
                progressed = True
            if not progressed:
                break
        done = all(pos[i] >= len(c["tokens"]) for i, c in enumerate(choices))
        if f == "bad_json" and not broke:
            h.chunk('data: {"id": "%s", "object": "chat.completion.chunk", "choices": [\n\n' % cid)
        if f == "stall":
            h.wait(None)
            return
        if f == "reset":
            self.state.close_entry(self.entry, "fault", http_status=200, completion_tokens=self.sent_tokens)
            h.hard_reset()
            return
        if done:
            for i, c in enumerate(choices):
                self.sse(chunk_obj([{"index": i, "delta": {}, "logprobs": None, "finish_reason": c["finish"],
                                     "stop_reason": None}]))
        if f == "no_done":
            # the chunked body's end: a clean close, no usage, no [DONE]
            self.state.settle(self.entry, "fault", lambda: h.chunk(b""), http_status=200,
                              completion_tokens=self.sent_tokens)
            return
        if self.include_usage:
            self.sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": self.model,
                      "choices": [], "usage": self.usage(self.sent_tokens)})
        if h.peer_gone():
            raise ClientGone()
        self.state.settle(self.entry, "fault" if f else "completed",
                          lambda: h.write(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n"), http_status=200,
                          completion_tokens=self.sent_tokens)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, ClientGone)):
            return
        super().handle_error(request, client_address)


def parse_args(argv):
    p = argparse.ArgumentParser(description="OpenAI-compatible LLM stub server for tests")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = an ephemeral port")
    p.add_argument("--port-file", help="write the port here (atomically) once listening")
    p.add_argument("--ttft-ms", type=float, default=0, help="delay before the first content chunk")
    p.add_argument("--tps", type=float, default=0, help="tokens per second after the first (0 = no pacing)")
    p.add_argument("--models", default="stub-model", help="comma-separated model ids")
    p.add_argument("--api-key", help="require Authorization: Bearer KEY on /v1/*")
    p.add_argument("--journal", help="append every finished journal entry to this file as a JSON line")
    p.add_argument("--max-context", type=int, default=0,
                   help="answer context_length when prompt + max_tokens exceeds it (0 = no limit)")
    p.add_argument("--verbose", action="store_true", help="log each request to stderr")
    a = p.parse_args(argv)
    a.models = [m.strip() for m in a.models.split(",") if m.strip()]
    if not a.models:
        p.error("--models needs at least one model")
    return a


def main(argv=None):
    cfg = parse_args(sys.argv[1:] if argv is None else argv)
    state = State(cfg.journal)

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    srv = Server((cfg.host, cfg.port), Handler)
    srv.cfg, srv.state, srv.started = cfg, state, int(time.time())
    host, port = srv.server_address[:2]
    if cfg.port_file:
        tmp = "%s.tmp.%d" % (cfg.port_file, os.getpid())
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, cfg.port_file)
    print("llmstub listening on %s:%d" % (host, port), flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        state.stopping.set()
        srv.server_close()
        if state.jfile:
            with state.lock:
                state.jfile.close()
                state.jfile = None
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Tests of tests/llmstub/llmstub.py over real HTTP (standard library only).

Each test class starts its own stub as a subprocess on an ephemeral port
(read from --port-file) and kills it at the end, even when a test fails
(tearDownClass, and an atexit hook for anything left behind).
"""

import atexit
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
STUB = os.path.join(HERE, "llmstub.py")
PROCS = []


@atexit.register
def kill_all():
    for p in PROCS:
        if p.poll() is None:
            p.kill()
            p.wait()


def start_stub(tmp, *args):
    port_file = os.path.join(tmp, "port")
    if os.path.exists(port_file):
        os.unlink(port_file)
    err = open(os.path.join(tmp, "stderr"), "wb")
    proc = subprocess.Popen([sys.executable, STUB, "--port", "0", "--port-file", port_file] + list(args),
                            stdout=subprocess.PIPE, stderr=err)
    err.close()
    proc.stderr_path = err.name
    PROCS.append(proc)
    deadline = time.monotonic() + 15
    while not os.path.exists(port_file):
        if proc.poll() is not None:
            raise RuntimeError("llmstub exited: %s" % stub_stderr(proc))
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("llmstub did not write its port file")
        time.sleep(0.02)
    with open(port_file) as f:
        port = int(f.read().strip())
    line = proc.stdout.readline().decode()
    assert line.strip() == "llmstub listening on 127.0.0.1:%d" % port, line
    return proc, port


def stub_stderr(proc):
    with open(proc.stderr_path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def stop_stub(proc):
    """Kill the stub; return what it wrote on stderr."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    proc.stdout.close()
    return stub_stderr(proc)


# A small JSON-schema validator for the subset the stub claims to honour.
def validate(schema, v, root=None, path="$"):
    root = root if root is not None else schema
    if schema is True or schema == {}:
        return
    if "$ref" in schema:
        node = root
        for part in schema["$ref"][2:].split("/"):
            node = node[part]
        return validate(node, v, root, path)
    if "const" in schema and v != schema["const"]:
        raise AssertionError("%s: %r != const %r" % (path, v, schema["const"]))
    if "enum" in schema and v not in schema["enum"]:
        raise AssertionError("%s: %r not in enum %r" % (path, v, schema["enum"]))
    if "anyOf" in schema:
        for sub in schema["anyOf"]:
            try:
                validate(sub, v, root, path)
                break
            except AssertionError:
                pass
        else:
            raise AssertionError("%s: %r matches no anyOf" % (path, v))
    t = schema.get("type")
    types = t if isinstance(t, list) else [t] if t else []
    checks = {"object": lambda x: isinstance(x, dict), "array": lambda x: isinstance(x, list),
              "string": lambda x: isinstance(x, str), "boolean": lambda x: isinstance(x, bool),
              "null": lambda x: x is None,
              "integer": lambda x: isinstance(x, int) and not isinstance(x, bool),
              "number": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool)}
    if types and not any(checks[ty](v) for ty in types):
        raise AssertionError("%s: %r is not of type %r" % (path, v, t))
    if isinstance(v, dict):
        props = schema.get("properties", {})
        for r in schema.get("required", []):
            if r not in v:
                raise AssertionError("%s: required %r missing in %r" % (path, r, v))
        extra = schema.get("additionalProperties", True)
        for k, x in v.items():
            if k in props:
                validate(props[k], x, root, path + "." + k)
            elif extra is False:
                raise AssertionError("%s: additional property %r" % (path, k))
            elif isinstance(extra, dict):
                validate(extra, x, root, path + "." + k)
    if isinstance(v, list):
        if len(v) < schema.get("minItems", 0) or len(v) > schema.get("maxItems", 1 << 30):
            raise AssertionError("%s: %d items out of bounds" % (path, len(v)))
        if schema.get("uniqueItems") and len(set(map(json.dumps, v))) != len(v):
            raise AssertionError("%s: items not unique" % path)
        for i, x in enumerate(v):
            validate(schema.get("items", True), x, root, "%s[%d]" % (path, i))
    if isinstance(v, str):
        if len(v) < schema.get("minLength", 0) or len(v) > schema.get("maxLength", 1 << 30):
            raise AssertionError("%s: length %d out of bounds" % (path, len(v)))
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if "minimum" in schema and v < schema["minimum"]:
            raise AssertionError("%s: %r < minimum %r" % (path, v, schema["minimum"]))
        if "maximum" in schema and v > schema["maximum"]:
            raise AssertionError("%s: %r > maximum %r" % (path, v, schema["maximum"]))
        if "exclusiveMinimum" in schema and v <= schema["exclusiveMinimum"]:
            raise AssertionError("%s: %r <= exclusiveMinimum" % (path, v))
        if "exclusiveMaximum" in schema and v >= schema["exclusiveMaximum"]:
            raise AssertionError("%s: %r >= exclusiveMaximum" % (path, v))


def scoring_schema(criteria):
    return {"type": "object", "additionalProperties": False, "required": ["criteria", "rationale"],
            "properties": {"criteria": {"type": "object", "additionalProperties": False, "required": list(criteria),
                                        "properties": {c: {"type": "number", "minimum": 0, "maximum": 1}
                                                       for c in criteria}},
                           "rationale": {"type": "string"}}}


NESTED = {
    "type": "object", "additionalProperties": False,
    "required": ["title", "priority", "steps", "meta", "tags", "approved", "count", "where"],
    "properties": {
        "title": {"type": "string", "minLength": 3, "maxLength": 40},
        "priority": {"enum": ["low", "medium", "high"]},
        "steps": {"type": "array", "minItems": 2, "maxItems": 5,
                  "items": {"type": "object", "additionalProperties": False, "required": ["name", "cost"],
                            "properties": {"name": {"type": "string"},
                                           "cost": {"type": "integer", "minimum": 1, "maximum": 9},
                                           "kind": {"type": "string", "enum": ["a", "b"]}}}},
        "meta": {"type": "object", "required": ["ratio"],
                 "properties": {"ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                                "note": {"type": ["string", "null"]}}},
        "tags": {"type": "array", "minItems": 1, "uniqueItems": True,
                 "items": {"type": "string", "enum": ["x", "y", "z", "w"]}},
        "approved": {"type": "boolean"},
        "count": {"type": "integer", "minimum": -5, "maximum": 5},
        "where": {"$ref": "#/$defs/point"},
        "choice": {"anyOf": [{"type": "integer", "minimum": 100}, {"type": "null"}]}},
    "$defs": {"point": {"type": "object", "additionalProperties": False, "required": ["x", "y"],
                        "properties": {"x": {"type": "number"}, "y": {"type": "number", "maximum": -10}}}}}


def msgs(text, system="You are a careful engineer."):
    return [{"role": "system", "content": system}, {"role": "user", "content": text}]


class StubCase(unittest.TestCase):
    stub_args = ["--models", "m1,m2"]

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="llmstub-test-")
        cls.journal_path = os.path.join(cls.tmp, "journal.jsonl")
        cls.proc, cls.port = start_stub(cls.tmp, "--journal", cls.journal_path, *cls.stub_args)

    @classmethod
    def tearDownClass(cls):
        err = stop_stub(cls.proc)
        shutil.rmtree(cls.tmp, ignore_errors=True)
        if "Traceback" in err:  # an exception the stub did not handle
            raise AssertionError("llmstub wrote on stderr:\n" + err)

    def setUp(self):
        self.assertEqual(self.call("POST", "/_stub/reset")[0], 200)

    # ---- HTTP helpers

    def conn(self, timeout=10):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def call(self, method, path, body=None, headers=None, timeout=10):
        c = self.conn(timeout)
        try:
            data = json.dumps(body) if body is not None and not isinstance(body, (str, bytes)) else body
            c.request(method, path, body=data, headers=dict({"Content-Type": "application/json"}, **(headers or {})))
            r = c.getresponse()
            return r.status, r, r.read()
        finally:
            c.close()

    def chat(self, body, headers=None, expect=200):
        status, r, data = self.call("POST", "/v1/chat/completions", body, headers)
        self.assertEqual(status, expect, data)
        return r, json.loads(data)

    def script(self, *rules):
        status, _, data = self.call("POST", "/_stub/script", list(rules))
        self.assertEqual(status, 200, data)

    def journal(self):
        return json.loads(self.call("GET", "/_stub/journal")[2])

    def wait_entry(self, pred, timeout=3.0):
        deadline = time.monotonic() + timeout
        while True:
            entries = [e for e in self.journal() if pred(e)]
            if entries:
                return entries
            if time.monotonic() > deadline:
                self.fail("no journal entry as expected in %r" % self.journal())
            time.sleep(0.02)

    def open_stream(self, body, headers=None, timeout=10):
        c = self.conn(timeout)
        c.request("POST", "/v1/chat/completions", body=json.dumps(dict(body, stream=True)),
                  headers=dict({"Content-Type": "application/json"}, **(headers or {})))
        r = c.getresponse()
        return c, r

    @staticmethod
    def events(r):
        """Server-sent events parsed incrementally from a response: yields the
        data payload of each event (a string)."""
        data = []
        while True:
            line = r.readline()
            if not line:
                return
            line = line.decode("utf-8").rstrip("\r\n")
            if line == "":
                if data:
                    yield "\n".join(data)
                    data = []
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))

    def stream(self, body, headers=None):
        c, r = self.open_stream(body, headers)
        try:
            self.assertEqual(r.status, 200)
            self.assertTrue(r.getheader("Content-Type").startswith("text/event-stream"))
            return list(self.events(r))
        finally:
            c.close()


class TestBasics(StubCase):
    def test_health_and_models(self):
        status, _, data = self.call("GET", "/health")
        self.assertEqual((status, data), (200, b"ok"))
        status, _, data = self.call("GET", "/v1/models")
        obj = json.loads(data)
        self.assertEqual(obj["object"], "list")
        self.assertEqual([m["id"] for m in obj["data"]], ["m1", "m2"])
        for m in obj["data"]:
            self.assertEqual(m["object"], "model")
            self.assertEqual(m["owned_by"], "llmstub")
            self.assertIsInstance(m["created"], int)

    def test_non_stream(self):
        r, obj = self.chat({"model": "m1", "messages": msgs("write a parser please"), "seed": 5},
                           {"X-Cerebelum-Task": "exec-1/gen.0/1"})
        self.assertEqual(r.getheader("Content-Type"), "application/json")
        self.assertEqual(obj["object"], "chat.completion")
        self.assertTrue(obj["id"].startswith("chatcmpl-"))
        self.assertEqual(obj["model"], "m1")
        ch = obj["choices"][0]
        self.assertEqual(ch["index"], 0)
        self.assertEqual(ch["message"]["role"], "assistant")
        self.assertEqual(ch["finish_reason"], "stop")
        content = ch["message"]["content"]
        n = len(content.split())
        self.assertTrue(20 <= n <= 80, n)
        u = obj["usage"]
        self.assertEqual(u["prompt_tokens"], 5 + 4)  # words of the system and user messages
        self.assertEqual(u["completion_tokens"], n)
        self.assertEqual(u["total_tokens"], u["prompt_tokens"] + n)
        self.assertEqual(u["prompt_tokens_details"], {"cached_tokens": 0})
        e = self.journal()[-1]
        self.assertEqual((e["task"], e["model"], e["stream"], e["status"], e["fault"], e["http_status"]),
                         ("exec-1/gen.0/1", "m1", False, "completed", None, 200))
        self.assertEqual((e["prompt_tokens"], e["completion_tokens"]), (9, n))
        self.assertEqual(len(e["prompt_sha256"]), 64)
        self.assertLessEqual(e["started_ms"], e["ended_ms"])

    def test_max_tokens_length(self):
        body = {"model": "m1", "messages": msgs("a long answer"), "seed": 9}
        full = self.chat(body)[1]["choices"][0]["message"]["content"]
        for key in ("max_tokens", "max_completion_tokens"):
            _, obj = self.chat(dict(body, **{key: 7}))
            ch = obj["choices"][0]
            self.assertEqual(ch["finish_reason"], "length")
            self.assertEqual(len(ch["message"]["content"].split()), 7)
            self.assertTrue(full.startswith(ch["message"]["content"]))
            self.assertEqual(obj["usage"]["completion_tokens"], 7)
        _, obj = self.chat(dict(body, max_tokens=1000))
        self.assertEqual(obj["choices"][0]["finish_reason"], "stop")
        self.assertEqual(obj["choices"][0]["message"]["content"], full)

    def test_determinism(self):
        body = {"model": "m1", "messages": msgs("same question"), "seed": 42, "temperature": 0.7}
        a = self.chat(body)[1]["choices"][0]["message"]["content"]
        b = self.chat(body)[1]["choices"][0]["message"]["content"]
        self.assertEqual(a, b)
        c = self.chat(dict(body, seed=43))[1]["choices"][0]["message"]["content"]
        self.assertNotEqual(a, c)
        d = self.chat(dict(body, messages=msgs("other question")))[1]["choices"][0]["message"]["content"]
        self.assertNotEqual(a, d)
        e = self.chat(dict(body, model="m2"))[1]["choices"][0]["message"]["content"]
        self.assertNotEqual(a, e)
        s = "".join(json.loads(x)["choices"][0]["delta"].get("content", "")
                    for x in self.stream(body) if x != "[DONE]" and json.loads(x)["choices"])
        self.assertEqual(s, a)

    def test_n_choices(self):
        _, obj = self.chat({"model": "m1", "messages": msgs("two please"), "n": 2})
        self.assertEqual([c["index"] for c in obj["choices"]], [0, 1])
        self.assertNotEqual(obj["choices"][0]["message"]["content"], obj["choices"][1]["message"]["content"])

    def test_errors(self):
        status, _, data = self.call("POST", "/v1/chat/completions", {"model": "nope", "messages": msgs("x")})
        self.assertEqual(status, 404)
        self.assertEqual(json.loads(data), {"error": {"message": "The model `nope` does not exist.",
                                                      "type": "NotFoundError", "param": None, "code": 404}})
        status, _, data = self.call("POST", "/v1/chat/completions", {"model": "m1"})
        self.assertEqual(status, 400)
        self.assertEqual(json.loads(data)["error"]["code"], 400)
        status, _, data = self.call("POST", "/v1/chat/completions", "{not json")
        self.assertEqual(status, 400)
        self.assertEqual(self.journal()[-1]["status"], "error")
        status, _, data = self.call("POST", "/_stub/script", [{"fault": "explode"}])
        self.assertEqual(status, 400)
        self.assertIn("unknown fault", json.loads(data)["error"]["message"])

    def test_keep_alive(self):
        c = self.conn()
        try:
            body = json.dumps({"model": "m1", "messages": msgs("hi")})
            c.request("POST", "/v1/chat/completions", body=body)
            r = c.getresponse()
            self.assertEqual(r.version, 11)
            r.read()
            sock = c.sock
            self.assertIsNotNone(sock)
            c.request("POST", "/v1/chat/completions", body=json.dumps({"model": "m1", "messages": msgs("hi"),
                                                                         "stream": True}))
            r = c.getresponse()
            self.assertEqual(r.getheader("Transfer-Encoding"), "chunked")
            r.read()
            c.request("GET", "/v1/models")
            c.getresponse().read()
            self.assertIs(c.sock, sock)  # one connection for all three
        finally:
            c.close()


class TestStream(StubCase):
    def check_chunks(self, evs, include_usage):
        self.assertEqual(evs[-1], "[DONE]")
        objs = [json.loads(x) for x in evs[:-1]]
        ids = {o["id"] for o in objs}
        self.assertEqual(len(ids), 1)
        for o in objs:
            self.assertEqual(o["object"], "chat.completion.chunk")
            self.assertEqual(o["model"], "m1")
            if include_usage:
                self.assertIn("usage", o)
            else:
                self.assertNotIn("usage", o)
        self.assertEqual(objs[0]["choices"][0]["delta"]["role"], "assistant")
        if include_usage:
            last = objs[-1]
            self.assertEqual(last["choices"], [])
            usage = last["usage"]
            objs = objs[:-1]
            for o in objs:
                self.assertIsNone(o["usage"])
        else:
            usage = None
        fin = objs[-1]["choices"][0]
        self.assertEqual(fin["delta"], {})
        content = ""
        for o in objs[1:-1]:
            ch = o["choices"][0]
            self.assertIsNone(ch["finish_reason"])
            self.assertEqual(set(ch["delta"]), {"content"})
            self.assertTrue(1 <= len(ch["delta"]["content"].split()) <= 3)
            content += ch["delta"]["content"]
        return content, fin["finish_reason"], usage

    def test_stream_shapes(self):
        body = {"model": "m1", "messages": msgs("stream me"), "seed": 1}
        plain = self.chat(body)[1]
        content, fin, usage = self.check_chunks(self.stream(body), False)
        self.assertEqual(content, plain["choices"][0]["message"]["content"])
        self.assertEqual(fin, "stop")
        self.assertIsNone(usage)
        content, fin, usage = self.check_chunks(
            self.stream(dict(body, stream_options={"include_usage": True})), True)
        self.assertEqual(usage, plain["usage"])
        content, fin, usage = self.check_chunks(
            self.stream(dict(body, max_tokens=5, stream_options={"include_usage": True})), True)
        self.assertEqual(fin, "length")
        self.assertEqual(usage["completion_tokens"], 5)
        self.assertEqual(len(content.split()), 5)
        e = self.journal()[-1]
        self.assertEqual((e["stream"], e["status"], e["completion_tokens"]), (True, "completed", 5))

    def test_pacing(self):
        body = {"model": "m1", "messages": msgs("slow please"), "max_tokens": 12}
        t0 = time.monotonic()
        c, r = self.open_stream(body, {"X-Stub-Ttft-Ms": "300", "X-Stub-Tps": "60"})
        try:
            first = None
            for x in self.events(r):
                if x != "[DONE]" and json.loads(x)["choices"][0]["delta"].get("content"):
                    first = first or time.monotonic() - t0
            total = time.monotonic() - t0
        finally:
            c.close()
        self.assertGreaterEqual(first, 0.28)
        self.assertGreaterEqual(total, 0.28 + 9 / 60.0 - 0.02)  # 12 tokens, 9 after the first chunk
        t0 = time.monotonic()
        self.chat(body, {"X-Stub-Ttft-Ms": "200"})
        self.assertGreaterEqual(time.monotonic() - t0, 0.19)

    def test_abort_mid_stream(self):
        body = {"model": "m1", "messages": msgs("abort me"), "stream": True}
        s = socket.create_connection(("127.0.0.1", self.port))
        payload = json.dumps(body).encode()
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Cerebelum-Task: e/gen.3/1\r\n"
                  b"X-Stub-Tps: 20\r\nContent-Length: %d\r\n\r\n%s" % (len(payload), payload))
        got = b""
        while got.count(b"data: ") < 3:
            got += s.recv(4096)
        s.close()
        t_close = time.time() * 1000
        e = self.wait_entry(lambda e: e["task"] == "e/gen.3/1" and e["status"] != "in_flight")[0]
        self.assertEqual(e["status"], "aborted")
        self.assertEqual(e["http_status"], 200)
        self.assertLess(e["ended_ms"] - t_close, 500)
        self.assertGreater(e["completion_tokens"], 0)

    def test_journal_file(self):
        self.chat({"model": "m1", "messages": msgs("one")}, {"X-Cerebelum-Task": "j/1/1"})
        self.stream({"model": "m1", "messages": msgs("two")}, {"X-Cerebelum-Task": "j/2/1"})
        entries = self.journal()
        deadline = time.monotonic() + 2
        while True:
            with open(self.journal_path) as f:
                lines = [json.loads(x) for x in f]
            tail = [x for x in lines if x["task"] in ("j/1/1", "j/2/1")]
            if len(tail) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        self.assertEqual(tail, [e for e in entries if e["task"] in ("j/1/1", "j/2/1")])
        self.assertEqual([x["status"] for x in tail], ["completed", "completed"])


class TestSchema(StubCase):
    def ask(self, schema, text, seed=None):
        body = {"model": "m1", "messages": msgs(text), "seed": seed,
                "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema,
                                                                          "strict": True}}}
        _, obj = self.chat(body)
        return obj

    def test_scoring_schema(self):
        schema = scoring_schema(["correctness", "clarity"])
        scores = set()
        for i in range(6):
            obj = self.ask(schema, "Score this proposal:\nproposal number %d" % i)
            ch = obj["choices"][0]
            self.assertEqual(ch["finish_reason"], "stop")
            v = json.loads(ch["message"]["content"])
            validate(schema, v)
            scores.add((v["criteria"]["correctness"], v["criteria"]["clarity"]))
            self.assertEqual(obj["usage"]["completion_tokens"], len(ch["message"]["content"].split()))
        self.assertGreaterEqual(len(scores), 5)
        # criteria as a map (additionalProperties as a schema) work too
        loose = {"type": "object", "required": ["criteria", "rationale"],
                 "properties": {"criteria": {"type": "object",
                                             "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1}},
                                "rationale": {"type": "string"}}}
        v = json.loads(self.ask(loose, "score")["choices"][0]["message"]["content"])
        validate(loose, v)
        self.assertGreaterEqual(len(v["criteria"]), 1)

    def test_nested_schema(self):
        for i in range(8):
            v = json.loads(self.ask(NESTED, "plan %d" % i, seed=i)["choices"][0]["message"]["content"])
            validate(NESTED, v)

    def test_streamed_schema(self):
        schema = scoring_schema(["a", "b", "c"])
        body = {"model": "m1", "messages": msgs("s"),
                "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}}
        evs = self.stream(body)
        text = "".join(json.loads(x)["choices"][0]["delta"].get("content") or "" for x in evs[:-1])
        validate(schema, json.loads(text))
        self.assertEqual(text, self.chat(body)[1]["choices"][0]["message"]["content"])

    def test_json_object(self):
        _, obj = self.chat({"model": "m1", "messages": msgs("json"), "response_format": {"type": "json_object"}})
        self.assertIsInstance(json.loads(obj["choices"][0]["message"]["content"]), dict)


class TestFaults(StubCase):
    body = {"model": "m1", "messages": msgs("fault me")}

    def test_status_faults(self):
        codes = ("400", "401", "403", "404", "408", "422", "429", "500", "502", "503", "504")
        for code in codes:
            task = "f/%s/1" % code
            self.script({"match": task, "fault": code})
            for stream in (False, True):
                # the rule is used once: the second request passes
                status, r, data = self.call("POST", "/v1/chat/completions", dict(self.body, stream=stream),
                                            {"X-Cerebelum-Task": task})
                if stream:
                    self.assertEqual(status, 200, code)
                    continue
                self.assertEqual(status, int(code), data)
                err = json.loads(data)["error"]
                self.assertEqual(set(err), {"message", "type", "param", "code"})
                self.assertEqual(err["code"], int(code))
                self.assertIsNone(r.getheader("Retry-After"))
        j = [e for e in self.journal() if not e["stream"]]
        self.assertEqual([(e["status"], e["http_status"]) for e in j],
                         [("fault", int(c)) for c in codes])
        # a status fault on a stream answers before the stream starts
        self.script({"fault": 429, "retry_after_s": 7}, {"fault": "503", "retry_after_s": 2})
        status, r, data = self.call("POST", "/v1/chat/completions", dict(self.body, stream=True))
        self.assertEqual((status, r.getheader("Retry-After")), (429, "7"))
        self.assertEqual(json.loads(data)["error"]["type"], "RateLimitError")
        status, r, data = self.call("POST", "/v1/chat/completions", self.body)
        self.assertEqual((status, r.getheader("Retry-After")), (503, "2"))

    def test_rule_matching(self):
        self.script({"match": "/gen.1/", "fault": "500", "times": 2}, {"match": "/gen.1/", "fault": "502"},
                    {"match": "needle", "fault": "503", "times": -1})
        seen = []
        for task in ("e/gen.0/1", "e/gen.1/1", "e/gen.1/2", "e/gen.1/3", "e/gen.1/4"):
            seen.append(self.call("POST", "/v1/chat/completions", self.body, {"X-Cerebelum-Task": task})[0])
        self.assertEqual(seen, [200, 500, 500, 502, 200])
        # without the header the last user message is matched; -1 = forever
        for _ in range(3):
            self.assertEqual(self.call("POST", "/v1/chat/completions",
                                       {"model": "m1", "messages": msgs("find the needle")})[0], 503)
        self.assertEqual(self.call("POST", "/v1/chat/completions", self.body)[0], 200)
        self.assertEqual(self.journal()[0]["task"], "e/gen.0/1")
        # reset clears rules and journal
        self.call("POST", "/_stub/reset")
        self.assertEqual(self.journal(), [])
        self.assertEqual(self.call("POST", "/v1/chat/completions",
                                   {"model": "m1", "messages": msgs("find the needle")})[0], 200)
        stats = json.loads(self.call("GET", "/_stub/stats")[2])
        self.assertEqual((stats["total"], stats["completed"]), (1, 1))

    def test_context_length(self):
        self.script({"fault": "context_length"}, {"fault": "context_length_nested"})
        status, _, data = self.call("POST", "/v1/chat/completions", dict(self.body, max_tokens=1000))
        self.assertEqual(status, 400)
        obj = json.loads(data)
        self.assertEqual(obj["object"], "error")
        self.assertEqual((obj["type"], obj["param"], obj["code"]), ("BadRequestError", None, 400))
        self.assertTrue(obj["message"].startswith("This model's maximum context length is 4096 tokens. "
                                                  "However, you requested "), obj["message"])
        status, _, data = self.call("POST", "/v1/chat/completions", self.body)
        self.assertEqual(status, 400)
        err = json.loads(data)["error"]
        self.assertIn("maximum context length", err["message"])
        self.assertEqual((err["type"], err["code"]), ("BadRequestError", 400))

    def test_hang_abort(self):
        self.script({"fault": "hang"})
        c = self.conn(timeout=0.4)
        c.request("POST", "/v1/chat/completions", body=json.dumps(self.body), headers={"X-Cerebelum-Task": "h/1/1"})
        with self.assertRaises(socket.timeout):
            c.getresponse()
        self.assertEqual(self.journal()[-1]["status"], "in_flight")
        c.close()
        t_close = time.time() * 1000
        e = self.wait_entry(lambda e: e["task"] == "h/1/1" and e["status"] != "in_flight")[0]
        self.assertEqual((e["status"], e["fault"], e["http_status"]), ("aborted", "hang", None))
        self.assertLess(e["ended_ms"] - t_close, 300)

    def test_stall(self):
        self.script({"fault": "stall", "after_tokens": 4})
        c, r = self.open_stream(self.body, {"X-Cerebelum-Task": "s/1/1"}, timeout=0.5)
        got = []
        with self.assertRaises(socket.timeout):
            for x in self.events(r):
                got.append(x)
        r.close()  # the response holds the socket open too
        c.close()
        text = "".join(json.loads(x)["choices"][0]["delta"].get("content", "") for x in got)
        self.assertEqual(len(text.split()), 4)
        self.assertNotIn("[DONE]", got)
        e = self.wait_entry(lambda e: e["task"] == "s/1/1" and e["status"] != "in_flight")[0]
        self.assertEqual((e["status"], e["fault"], e["completion_tokens"]), ("aborted", "stall", 4))
        # non-stream: half the promised body, then silence
        self.script({"fault": "stall"})
        with self.assertRaises((socket.timeout, http.client.IncompleteRead)):
            self.call("POST", "/v1/chat/completions", self.body, timeout=0.5)

    def test_reset(self):
        self.script({"fault": "reset"}, {"fault": "reset", "after_tokens": 5})
        with self.assertRaises(ConnectionError):
            self.call("POST", "/v1/chat/completions", self.body)
        c, r = self.open_stream(self.body)
        got = []
        with self.assertRaises((ConnectionError, http.client.IncompleteRead)):
            for x in self.events(r):
                got.append(x)
        c.close()
        self.assertEqual(len("".join(json.loads(x)["choices"][0]["delta"].get("content", "")
                                     for x in got).split()), 5)
        self.assertEqual([(e["status"], e["fault"]) for e in self.journal()], [("fault", "reset")] * 2)

    def test_bad_json(self):
        self.script({"fault": "bad_json"}, {"fault": "bad_json", "after_tokens": 3})
        status, _, data = self.call("POST", "/v1/chat/completions", self.body)
        self.assertEqual(status, 200)
        with self.assertRaises(ValueError):
            json.loads(data)
        evs = self.stream(self.body)
        broken = 0
        for x in evs[:-1]:
            try:
                json.loads(x)
            except ValueError:
                broken += 1
        self.assertEqual(broken, 1)

    def test_bad_schema(self):
        schema = scoring_schema(["correctness"])
        body = dict(self.body, response_format={"type": "json_schema",
                                                "json_schema": {"name": "s", "schema": schema}})
        self.script({"fault": "bad_schema"})
        v = json.loads(self.chat(body)[1]["choices"][0]["message"]["content"])
        with self.assertRaises(AssertionError):
            validate(schema, v)
        validate(schema, json.loads(self.chat(body)[1]["choices"][0]["message"]["content"]))
        self.script({"fault": "bad_schema"})
        with self.assertRaises(ValueError):
            json.loads(self.chat(dict(self.body, response_format={"type": "json_object"}))[1]
                       ["choices"][0]["message"]["content"])

    def test_length(self):
        full = self.chat(self.body)[1]["choices"][0]["message"]["content"]
        self.script({"fault": "length"}, {"fault": "length"})
        ch = self.chat(self.body)[1]["choices"][0]
        self.assertEqual(ch["finish_reason"], "length")
        self.assertTrue(full.startswith(ch["message"]["content"]) and len(ch["message"]["content"]) < len(full))
        body = dict(self.body, response_format={"type": "json_schema",
                                                "json_schema": {"name": "s", "schema": scoring_schema(["c"])}})
        ch = self.chat(body)[1]["choices"][0]
        self.assertEqual(ch["finish_reason"], "length")
        with self.assertRaises(ValueError):
            json.loads(ch["message"]["content"])
        self.script({"fault": "length"})
        objs = [json.loads(x) for x in self.stream(self.body)[:-1]]
        self.assertEqual(objs[-1]["choices"][0]["finish_reason"], "length")
        text = "".join(o["choices"][0]["delta"].get("content", "") for o in objs)
        self.assertTrue(full.startswith(text) and len(text) < len(full))

    def test_no_done(self):
        body = dict(self.body, stream_options={"include_usage": True})
        self.script({"fault": "no_done"}, {"fault": "no_done", "after_tokens": 2})
        evs = self.stream(body)  # ends cleanly, without an error
        objs = [json.loads(x) for x in evs]
        self.assertEqual(objs[-1]["choices"][0]["finish_reason"], "stop")
        self.assertTrue(all(o["choices"] for o in objs))  # no usage chunk
        evs = self.stream(body)
        objs = [json.loads(x) for x in evs]
        self.assertTrue(all(o["choices"][0]["finish_reason"] is None for o in objs))
        self.assertEqual(len("".join(o["choices"][0]["delta"].get("content", "") for o in objs).split()), 2)
        self.assertEqual([(e["status"], e["fault"]) for e in self.journal()], [("fault", "no_done")] * 2)

    def test_header_fault(self):
        status, r, _ = self.call("POST", "/v1/chat/completions", self.body,
                                 {"X-Stub-Fault": "429", "X-Stub-Retry-After": "3"})
        self.assertEqual((status, r.getheader("Retry-After")), (429, "3"))


class TestAuthAndLimits(StubCase):
    stub_args = ["--models", "m1", "--api-key", "sekrit", "--max-context", "50"]

    def test_api_key(self):
        body = {"model": "m1", "messages": msgs("hi")}
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            status, _, data = self.call("POST", "/v1/chat/completions", body, headers)
            self.assertEqual(status, 401)
            self.assertEqual(json.loads(data)["error"]["type"], "AuthenticationError")
        self.assertEqual(self.call("GET", "/v1/models")[0], 401)
        self.assertEqual(self.call("GET", "/health")[0], 200)
        ok = {"Authorization": "Bearer sekrit"}
        self.assertEqual(self.call("POST", "/v1/chat/completions", body, ok)[0], 200)
        self.assertEqual(self.call("GET", "/v1/models", None, ok)[0], 200)

    def test_max_context(self):
        ok = {"Authorization": "Bearer sekrit"}
        body = {"model": "m1", "messages": msgs("word " * 60)}
        status, _, data = self.call("POST", "/v1/chat/completions", body, ok)
        self.assertEqual(status, 400)
        self.assertIn("maximum context length is 50 tokens", json.loads(data)["message"])
        self.assertEqual(self.journal()[-1]["status"], "error")


class TestSignals(unittest.TestCase):
    def test_sigterm_exits_cleanly(self):
        tmp = tempfile.mkdtemp(prefix="llmstub-test-")
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                proc, port = start_stub(tmp)
                # a hanging request must not keep the stub alive
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("POST", "/v1/chat/completions",
                          body=json.dumps({"model": "stub-model", "messages": msgs("x")}),
                          headers={"X-Stub-Fault": "hang"})
                time.sleep(0.1)
                proc.send_signal(sig)
                self.assertEqual(proc.wait(timeout=5), 0)
                c.close()
                self.assertEqual(stop_stub(proc), "")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)

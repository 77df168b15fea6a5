#!/usr/bin/env python3
"""http_test.py - suite 'http': `cerebelum serve --http` (docs/http.md)
against the harness's PostgreSQL, with a real remote worker
(examples/remote/remote_worker.c) running the steps of a 3-step blueprint.

    http_test.py CEREBELUM REMOTE_WORKER SOURCE_ROOT

Checks, on one server: every /api/v1 route (success, 400, 404, 401 without
the token, 413 for an oversized body, 405), a server-sent-events stream of a
running execution to its end, the list stream, /metrics parsed by
prometheus_client's parser against a known workload (5 executions of the
3-step pipeline), /readyz turning 503 while PostgreSQL is stopped and 200
when it is back, and --log-format json (every line of serve's stderr is a
JSON object with time, level, component, execution, step, message).
Skipped (77) without CEREBELUM_TEST_DATABASE_URL (tests/harness/with-postgres.sh).
"""
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    print("FAIL: no prometheus_client for %s: apt-get install python3-prometheus-client "
          "(scripts/setup.sh)" % sys.executable, file=sys.stderr)
    sys.exit(1)

EXE, WORKER, ROOT = sys.argv[1], sys.argv[2], sys.argv[3]
PG_URL = os.environ.get("CEREBELUM_TEST_DATABASE_URL")
if not PG_URL:
    print("CEREBELUM_TEST_DATABASE_URL unset: skipped")
    sys.exit(77)

TOKEN = "s3cret-token"
fails = []
ran = [0]


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    fails.append(msg)


def check(cond, msg):
    ran[0] += 1
    if not cond:
        fail(msg)
    return cond


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Api:
    def __init__(self, port):
        self.port = port

    def req(self, method, path, body=None, token=TOKEN, raw=None, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = "Bearer " + token
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        text = r.read().decode()
        c.close()
        try:
            j = json.loads(text) if text else None
        except ValueError:
            j = None
        return r.status, j, text, r

    def expect(self, what, status, method, path, body=None, **kw):
        st, j, text, r = self.req(method, path, body, **kw)
        if not check(st == status, "%s: %s %s -> %d, want %d: %s" % (what, method, path, st, status, text[:400])):
            return j
        if status >= 400:
            e = (j or {}).get("error") if isinstance(j, dict) else None
            check(isinstance(e, dict) and isinstance(e.get("code"), str) and isinstance(e.get("message"), str)
                  and e["message"], "%s: error body %r" % (what, text[:300]))
        return j


def sse_events(port, path, until_end=True, max_s=60, max_events=None, token=TOKEN):
    """Read a text/event-stream; returns [(event, id, data)]."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=max_s)
    c.request("GET", path, headers={"Cookie": "cerebelum_token=" + token})
    r = c.getresponse()
    check(r.status == 200, "stream %s: status %d" % (path, r.status))
    check(r.getheader("Content-Type", "").startswith("text/event-stream"), "stream content type")
    out, ev, eid, data = [], None, None, []
    deadline = time.time() + max_s
    while time.time() < deadline:
        line = r.fp.readline()
        if not line:
            break
        line = line.decode().rstrip("\n")
        if line == "":
            if ev is not None or data:
                out.append((ev or "message", eid, json.loads("\n".join(data)) if data else None))
                if until_end and ev == "end":
                    break
                if max_events is not None and len(out) >= max_events:
                    break
            ev, eid, data = None, None, []
        elif line.startswith(":"):
            continue
        elif line.startswith("event: "):
            ev = line[7:]
        elif line.startswith("id: "):
            eid = line[4:]
        elif line.startswith("data: "):
            data.append(line[6:])
    c.close()
    return out


def main():
    tmp = tempfile.mkdtemp(prefix="cbm-http-test.")
    db = "cbm_http_%d_%d" % (os.getpid(), random.randint(0, 99999))
    subprocess.run(["psql", "-q", PG_URL, "-c", "CREATE DATABASE " + db], check=True)
    env = dict(os.environ)
    env["CEREBELUM_DATABASE_URL"] = PG_URL.rsplit("/", 1)[0] + "/" + db
    for k in ("CEREBELUM_TOKEN", "CEREBELUM_HTTP", "CEREBELUM_LOG_FORMAT", "CEREBELUM_LISTEN"):
        env.pop(k, None)
    env["CEREBELUM_LOG"] = "info"  # more lines to check as JSON
    hport = free_port()
    errpath = os.path.join(tmp, "serve.err")
    srv = subprocess.Popen([EXE, "serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:%d" % hport,
                            "--token", TOKEN, "--log-format", "json", "--demo-handlers",
                            "--max-message-bytes", "65536"],
                           stderr=open(errpath, "w"), env=env)
    worker = None
    try:
        addr = None
        for _ in range(600):
            with open(errpath) as f:
                for line in f:
                    try:
                        m = json.loads(line).get("message", "")
                    except ValueError:
                        continue
                    if m.startswith("serving on "):
                        addr = m.split()[2]
            if addr or srv.poll() is not None:
                break
            time.sleep(0.1)
        if not addr:
            fail("serve did not start: " + open(errpath).read())
            return
        worker = subprocess.Popen([WORKER, addr, "default,gpu", "--capability", "gpu=true", "--token", TOKEN,
                                   "--id", "w-http"], stderr=subprocess.DEVNULL, env=env)
        api = Api(hport)
        run_checks(api, hport, env)
        run_tls(tmp, env)
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        srv.send_signal(signal.SIGTERM)
        try:
            rc = srv.wait(60)
            check(rc == 0, "serve exited %s" % rc)
        except subprocess.TimeoutExpired:
            srv.kill()
            fail("serve did not stop within 60 s of SIGTERM")
        check_json_log(errpath)
        subprocess.run(["psql", "-q", PG_URL, "-c", "DROP DATABASE IF EXISTS %s WITH (FORCE)" % db])
        shutil.rmtree(tmp, ignore_errors=True)


def run_tls(tmp, env):
    """A second server with --tls-cert/--tls-key: HTTP is HTTPS, same certificate."""
    import ssl
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    hport = free_port()
    errpath = os.path.join(tmp, "tls.err")
    srv = subprocess.Popen([EXE, "serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:%d" % hport,
                            "--token", TOKEN, "--tls-cert", cert, "--tls-key", key],
                           stderr=open(errpath, "w"), env=env)
    try:
        for _ in range(600):
            if "serving on" in open(errpath).read() or srv.poll() is not None:
                break
            time.sleep(0.1)
        check("HTTP on 127.0.0.1:%d" % hport in open(errpath).read(), "TLS serve started: " + open(errpath).read())
        ctx = ssl.create_default_context(cafile=cert)
        c = http.client.HTTPSConnection("127.0.0.1", hport, context=ctx, timeout=10)
        c.request("GET", "/api/v1/executions", headers={"Authorization": "Bearer " + TOKEN})
        r = c.getresponse()
        body = r.read()
        check(r.status == 200 and b"executions" in body, "https list: %d %r" % (r.status, body[:200]))
        c.close()
        c = http.client.HTTPSConnection("127.0.0.1", hport, context=ctx, timeout=10)
        c.request("GET", "/api/v1/executions")
        r = c.getresponse()
        r.read()
        check(r.status == 401, "https without the token: %d" % r.status)
        c.close()
        plain_ok = True
        try:
            c = http.client.HTTPConnection("127.0.0.1", hport, timeout=5)
            c.request("GET", "/healthz")
            plain_ok = c.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            plain_ok = False
        check(not plain_ok, "plain HTTP is refused on the TLS port")
    finally:
        srv.send_signal(signal.SIGTERM)
        try:
            check(srv.wait(60) == 0, "TLS serve exit status")
        except subprocess.TimeoutExpired:
            srv.kill()
            fail("TLS serve did not stop")


def check_json_log(path):
    lines = open(path).read().splitlines()
    check(len(lines) >= 3, "serve's stderr has %d lines" % len(lines))
    for line in lines:
        try:
            o = json.loads(line)
        except ValueError:
            fail("stderr line is not JSON: %r" % line[:300])
            continue
        for k in ("time", "level", "component", "execution", "step", "message"):
            check(k in o, "log line lacks %s: %r" % (k, line[:300]))
        check(o.get("level") in ("error", "warn", "info", "debug"), "log level %r" % o.get("level"))
        check(isinstance(o.get("time"), str) and o["time"].endswith("Z"), "log time %r" % o.get("time"))


def wait_status(api, eid, want, max_s=60):
    st = None
    for _ in range(max_s * 10):
        _, j, _, _ = api.req("GET", "/api/v1/executions/" + eid)
        st = j["execution"]["status"] if j and "execution" in j else None
        if st in want:
            return st
        time.sleep(0.1)
    return st


def run_checks(api, hport, env):
    pipeline = open(os.path.join(ROOT, "examples", "remote", "pipeline.json")).read()
    unknown = "00000000-0000-4000-8000-000000000000"
    big = b'{"x":"' + b"a" * 70000 + b'"}'

    # ---- health before anything
    api.expect("healthz", 200, "GET", "/healthz", token=None)
    j = api.expect("readyz", 200, "GET", "/readyz", token=None)
    check(j and j.get("status") == "ready", "readyz body %r" % j)

    # ---- blueprints
    j = api.expect("register", 201, "POST", "/api/v1/blueprints", raw=pipeline.encode())
    version = (j or {}).get("version")
    check(j and j.get("name") == "pipeline" and j.get("created") is True and len(version or "") == 64,
          "register reply %r" % j)
    j = api.expect("register again", 200, "POST", "/api/v1/blueprints", raw=pipeline.encode())
    check(j and j.get("created") is False, "register again: created %r" % j)
    j = api.expect("register invalid", 400, "POST", "/api/v1/blueprints",
                   {"name": "bad", "steps": [{"name": "a", "kind": "loop"}]})
    check(j and "loop" in j["error"]["message"], "invalid blueprint message %r" % j)
    api.expect("register not json", 400, "POST", "/api/v1/blueprints", raw=b"{nope")
    api.expect("register no token", 401, "POST", "/api/v1/blueprints", raw=pipeline.encode(), token=None)
    api.expect("register wrong token", 401, "POST", "/api/v1/blueprints", raw=pipeline.encode(), token="nope")
    api.expect("register too big", 413, "POST", "/api/v1/blueprints", raw=big)
    j = api.expect("blueprints", 200, "GET", "/api/v1/blueprints")
    check(j and [b["name"] for b in j["blueprints"]] == ["pipeline"] and j["blueprints"][0]["latest_version"] == version
          and j["blueprints"][0]["versions"] == 1, "blueprints %r" % j)
    j = api.expect("blueprint", 200, "GET", "/api/v1/blueprints/pipeline")
    check(j and j["versions"][0]["version"] == version and j["versions"][0]["latest"] is True, "blueprint %r" % j)
    api.expect("blueprint unknown", 404, "GET", "/api/v1/blueprints/nope")
    j = api.expect("blueprint version", 200, "GET", "/api/v1/blueprints/pipeline/versions/" + version)
    check(j and [s["name"] for s in j["blueprint"]["steps"]] == ["fetch", "infer", "publish"], "version %r" % j)
    api.expect("blueprint version unknown", 404, "GET", "/api/v1/blueprints/pipeline/versions/abc")
    api.expect("blueprints no token", 401, "GET", "/api/v1/blueprints", token=None)
    api.expect("blueprints too big", 413, "GET", "/api/v1/blueprints", raw=big)
    api.expect("blueprints 405", 405, "DELETE", "/api/v1/blueprints")

    # ---- the workload: 5 executions of the 3-step pipeline on the remote worker,
    # the first one watched over server-sent events from its start
    ids = []
    j = api.expect("start", 201, "POST", "/api/v1/executions",
                   {"blueprint": "pipeline", "inputs": {"url": "http://example/0"}, "idempotency_key": "k0"})
    ids.append(j["execution_id"])
    events = sse_events(hport, "/api/v1/stream/executions/" + ids[0])
    hist = [d for e, _, d in events if e == "history"]
    seqs = [d["seq"] for d in hist]
    check(seqs == list(range(1, len(seqs) + 1)), "stream seqs %r" % seqs)
    done = [d["payload"]["step"] for d in hist if d["type"] == "StepCompleted"]
    check(done == ["fetch", "infer", "publish"], "stream's completed steps %r" % done)
    check(hist and hist[-1]["type"] == "ExecutionCompleted", "stream's last event %r" % (hist[-1:] or None))
    ends = [d for e, _, d in events if e == "end"]
    check(len(ends) == 1 and ends[0]["execution"]["status"] == "completed" and
          ends[0]["state"]["steps"]["publish"]["status"] == "completed", "stream end %r" % ends)
    check(events and events[-1][0] == "end", "the stream ends with 'end'")
    # a reconnect after seq 3 gets only the later events
    again = sse_events(hport, "/api/v1/stream/executions/%s?after_seq=3" % ids[0])
    check([d["seq"] for e, _, d in again if e == "history"][:1] == [4], "after_seq=3 stream %r" % again[:2])

    j = api.expect("start same key", 200, "POST", "/api/v1/executions",
                   {"blueprint": "pipeline", "inputs": {"url": "http://example/0"}, "idempotency_key": "k0"})
    check(j and j["execution_id"] == ids[0] and j["created"] is False, "idempotent start %r" % j)
    for i in range(1, 4):
        j = api.expect("start", 201, "POST", "/api/v1/executions",
                       {"blueprint": "pipeline", "inputs": {"url": "http://example/%d" % i}})
        ids.append(j["execution_id"])
    j = api.expect("batch", 200, "POST", "/api/v1/executions/batch",
                   {"items": [{"blueprint": "pipeline", "inputs": {"url": "http://example/4"}},
                              {"blueprint": "nope"}]})
    res = (j or {}).get("results", [])
    check(len(res) == 2 and res[0]["execution_id"] and res[0]["error"] is None and res[1]["error"]
          and res[1]["execution_id"] is None, "batch results %r" % res)
    ids.append(res[0]["execution_id"])
    for eid in ids:
        check(wait_status(api, eid, ("completed", "failed")) == "completed", "execution %s completed" % eid)

    # ---- /metrics against the workload (before anything else runs)
    st, _, text, r = api.req("GET", "/metrics", token=None)
    check(st == 200 and r.getheader("Content-Type", "").startswith("text/plain; version=0.0.4"),
          "metrics status %d %s" % (st, r.getheader("Content-Type")))
    fams = {f.name: f for f in text_string_to_metric_families(text)}

    def sample(fam, suffix="", **labels):
        f = fams.get(fam)
        for s in (f.samples if f else []):
            if s.name == fam + suffix and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
        return None
    # prometheus_client strips _total from counter family names
    check(sample("cerebelum_executions_started", "_total", blueprint="pipeline") == 5,
          "started %r" % sample("cerebelum_executions_started", "_total", blueprint="pipeline"))
    check(sample("cerebelum_executions_completed", "_total", blueprint="pipeline") == 5, "completed 5")
    check(sample("cerebelum_executions_failed", "_total", blueprint="pipeline") == 0, "failed 0")
    check(sample("cerebelum_steps", "_total", status="completed") == 15,
          "steps completed %r" % sample("cerebelum_steps", "_total", status="completed"))
    check(sample("cerebelum_steps", "_total", status="failed") == 0, "steps failed 0")
    check(sample("cerebelum_steps", "_total", status="scheduled") == 15, "steps scheduled 15")
    dec = sample("cerebelum_decisions", "_total")
    com = sample("cerebelum_commits", "_total")
    check(dec is not None and dec >= 5 * 4, "decisions %r" % dec)
    check(com is not None and 1 <= com <= dec, "commits %r of %r decisions" % (com, dec))
    check(sample("cerebelum_commit_batch_size", "_count") == com, "batch count = commits")
    check(sample("cerebelum_commit_batch_size", "_sum") == dec, "batch sum = decisions")
    check(sample("cerebelum_commit_batch_size", "_bucket", le="+Inf") == com, "batch +Inf bucket")
    check(sample("cerebelum_commit_duration_seconds", "_count") == com, "commit duration count")
    check((sample("cerebelum_commit_duration_seconds", "_sum") or 0) > 0, "commit duration sum > 0")
    check(fams["cerebelum_commit_duration_seconds"].type == "histogram", "commit duration is a histogram")
    check(fams["cerebelum_timer_lateness_seconds"].type == "histogram", "lateness is a histogram")
    check(sample("cerebelum_timers_pending") == 0, "timers pending 0")
    check(sample("cerebelum_executions_hibernated") == 0, "hibernated 0")
    check(sample("cerebelum_executions_in_memory") is not None, "in memory present")
    check(sample("cerebelum_workers", alive="true") == 1, "1 alive worker: %r" % sample("cerebelum_workers", alive="true"))
    check(sample("cerebelum_leases_expired", "_total") == 0, "leases expired 0")
    check("cerebelum_task_queue_depth" in fams and "cerebelum_task_queue_oldest_age_seconds" in fams, "queue gauges")
    check((sample("process_resident_memory_bytes") or 0) > 1 << 20, "rss")
    # no LLM step ran: the counters exist and are 0 (tests/unit/test_metrics.c counts usage)
    check(sample("cerebelum_llm_calls", "_total") == 0, "llm calls 0")
    check(sample("cerebelum_llm_tokens", "_total", kind="prompt") == 0, "llm prompt tokens 0")

    # ---- executions: list, get, history
    j = api.expect("list", 200, "GET", "/api/v1/executions?blueprint=pipeline&limit=2")
    page1 = [x["execution_id"] for x in j["executions"]]
    check(len(page1) == 2 and j["next_after"] == page1[-1], "list page 1 %r" % j)
    seen = list(page1)
    after = j["next_after"]
    while after:
        j = api.expect("list page", 200, "GET", "/api/v1/executions?blueprint=pipeline&limit=2&after=" + after)
        seen += [x["execution_id"] for x in j["executions"]]
        after = j["next_after"]
    check(sorted(seen) == sorted(ids) and len(set(seen)) == 5, "keyset pages cover the 5: %r" % seen)
    j = api.expect("list completed", 200, "GET", "/api/v1/executions?status=completed")
    check(j and len(j["executions"]) == 5 and all(x["status"] == "completed" for x in j["executions"]),
          "status filter")
    api.expect("list bad status", 400, "GET", "/api/v1/executions?status=bogus")
    api.expect("list bad limit", 400, "GET", "/api/v1/executions?limit=0")
    api.expect("list bad cursor", 400, "GET", "/api/v1/executions?after=xyz")
    api.expect("list no token", 401, "GET", "/api/v1/executions", token=None)
    api.expect("list 405", 405, "PUT", "/api/v1/executions")
    api.expect("list too big", 413, "GET", "/api/v1/executions", raw=big)

    api.expect("start no blueprint", 400, "POST", "/api/v1/executions", {"inputs": {}})
    api.expect("start inputs not object", 400, "POST", "/api/v1/executions", {"blueprint": "pipeline", "inputs": [1]})
    api.expect("start not json", 400, "POST", "/api/v1/executions", raw=b"[1,")
    api.expect("start unknown blueprint", 404, "POST", "/api/v1/executions", {"blueprint": "nope"})
    api.expect("start no token", 401, "POST", "/api/v1/executions", {"blueprint": "pipeline"}, token=None)
    api.expect("start too big", 413, "POST", "/api/v1/executions", raw=big)
    api.expect("batch empty", 400, "POST", "/api/v1/executions/batch", {"items": []})
    api.expect("batch no token", 401, "POST", "/api/v1/executions/batch", {"items": []}, token=None)
    api.expect("batch too big", 413, "POST", "/api/v1/executions/batch", raw=big)
    api.expect("batch 405", 405, "GET", "/api/v1/executions/batch")

    j = api.expect("get", 200, "GET", "/api/v1/executions/" + ids[0])
    check(j and j["execution"]["status"] == "completed" and j["execution"]["inputs"] == {"url": "http://example/0"}
          and j["execution"]["idempotency_key"] == "k0" and set(j["state"]["steps"]) == {"fetch", "infer", "publish"},
          "get %r" % j)
    api.expect("get unknown", 404, "GET", "/api/v1/executions/" + unknown)
    api.expect("get not an id", 404, "GET", "/api/v1/executions/not-an-id")
    api.expect("get no token", 401, "GET", "/api/v1/executions/" + ids[0], token=None)
    api.expect("get too big", 413, "GET", "/api/v1/executions/" + ids[0], raw=big)
    j = api.expect("history", 200, "GET", "/api/v1/executions/%s/history?after_seq=1&limit=2" % ids[0])
    check(j and [e["seq"] for e in j["events"]] == [2, 3] and j["more"] is True, "history page %r" % j)
    api.expect("history bad limit", 400, "GET", "/api/v1/executions/%s/history?limit=x" % ids[0])
    api.expect("history unknown", 404, "GET", "/api/v1/executions/%s/history" % unknown)
    api.expect("history no token", 401, "GET", "/api/v1/executions/%s/history" % ids[0], token=None)
    api.expect("history too big", 413, "GET", "/api/v1/executions/%s/history" % ids[0], raw=big)

    # ---- decisions: approval, signal, cancel
    gate = {"name": "gate", "steps": [{"name": "ask", "kind": "approval"},
                                      {"name": "wait", "kind": "signal", "signal": "go", "depends_on": ["ask"]},
                                      {"name": "after", "handler": "echo", "depends_on": ["wait"]}]}
    api.expect("register gate", 201, "POST", "/api/v1/blueprints", gate)
    a = api.expect("start gate", 201, "POST", "/api/v1/executions", {"blueprint": "gate"})["execution_id"]
    b = api.expect("start gate", 201, "POST", "/api/v1/executions", {"blueprint": "gate"})["execution_id"]
    c = api.expect("start gate", 201, "POST", "/api/v1/executions", {"blueprint": "gate"})["execution_id"]
    for x in (a, b, c):
        check(wait_status(api, x, ("awaiting_approval",)) == "awaiting_approval", "gate waits for approval")
    # the list stream shows them
    evs = sse_events(hport, "/api/v1/stream/executions?blueprint=gate", until_end=False, max_s=10, max_events=3)
    check(sorted(d["execution_id"] for _, _, d in evs) == sorted([a, b, c]), "list stream %r" % evs)
    api.expect("list stream bad status", 400, "GET", "/api/v1/stream/executions?status=nope")
    api.expect("list stream no token", 401, "GET", "/api/v1/stream/executions", token=None)
    api.expect("list stream too big", 413, "GET", "/api/v1/stream/executions", raw=big)
    api.expect("stream unknown", 404, "GET", "/api/v1/stream/executions/" + unknown)
    api.expect("stream bad seq", 400, "GET", "/api/v1/stream/executions/%s?after_seq=x" % a)
    api.expect("stream no token", 401, "GET", "/api/v1/stream/executions/" + a, token=None)
    api.expect("stream too big", 413, "GET", "/api/v1/stream/executions/" + a, raw=big)

    api.expect("approve bad body", 400, "POST", "/api/v1/executions/%s/approve" % a, raw=b"[]")
    api.expect("approve bad step", 400, "POST", "/api/v1/executions/%s/approve" % a, {"step": 5})
    api.expect("approve unknown", 404, "POST", "/api/v1/executions/%s/approve" % unknown, {})
    api.expect("approve no token", 401, "POST", "/api/v1/executions/%s/approve" % a, {}, token=None)
    api.expect("approve too big", 413, "POST", "/api/v1/executions/%s/approve" % a, raw=big)
    api.expect("approve 405", 405, "GET", "/api/v1/executions/%s/approve" % a)
    j = api.expect("approve", 200, "POST", "/api/v1/executions/%s/approve" % a,
                   {"response": {"ok": True}, "actor": "tester"})
    check(j and isinstance(j.get("seq"), int) and j["seq"] > 0, "approve seq %r" % j)
    api.expect("approve twice", 409, "POST", "/api/v1/executions/%s/approve" % a, {})
    check(wait_status(api, a, ("awaiting_signal",)) == "awaiting_signal", "a waits for the signal")
    api.expect("signal no name", 400, "POST", "/api/v1/executions/%s/signal" % a, {"data": 1})
    api.expect("signal unknown", 404, "POST", "/api/v1/executions/%s/signal" % unknown, {"name": "go"})
    api.expect("signal no token", 401, "POST", "/api/v1/executions/%s/signal" % a, {"name": "go"}, token=None)
    api.expect("signal too big", 413, "POST", "/api/v1/executions/%s/signal" % a, raw=big)
    j = api.expect("signal", 200, "POST", "/api/v1/executions/%s/signal" % a, {"name": "go", "data": {"n": 7}})
    check(j and j.get("seq", 0) > 0, "signal seq %r" % j)
    check(wait_status(api, a, ("completed", "failed")) == "completed", "a completed after approve + signal")
    j = api.expect("get a", 200, "GET", "/api/v1/executions/" + a)
    check(j["state"]["steps"]["ask"].get("result") == {"ok": True} and j["state"]["steps"]["wait"].get("result") == {"n": 7},
          "approval and signal results %r" % j["state"])

    api.expect("reject bad reason", 400, "POST", "/api/v1/executions/%s/reject" % b, {"reason": 1})
    api.expect("reject unknown", 404, "POST", "/api/v1/executions/%s/reject" % unknown, {})
    api.expect("reject no token", 401, "POST", "/api/v1/executions/%s/reject" % b, {}, token=None)
    api.expect("reject too big", 413, "POST", "/api/v1/executions/%s/reject" % b, raw=big)
    j = api.expect("reject", 200, "POST", "/api/v1/executions/%s/reject" % b, {"step": "ask", "reason": "no"})
    check(j and j.get("seq", 0) > 0, "reject seq %r" % j)
    check(wait_status(api, b, ("completed", "failed")) == "failed", "b failed after reject")

    api.expect("cancel bad reason", 400, "POST", "/api/v1/executions/%s/cancel" % c, {"reason": []})
    api.expect("cancel unknown", 404, "POST", "/api/v1/executions/%s/cancel" % unknown, {})
    api.expect("cancel no token", 401, "POST", "/api/v1/executions/%s/cancel" % c, {}, token=None)
    api.expect("cancel too big", 413, "POST", "/api/v1/executions/%s/cancel" % c, raw=big)
    j = api.expect("cancel", 200, "POST", "/api/v1/executions/%s/cancel" % c, {"reason": "test"})
    check(j and j.get("seq", 0) > 0, "cancel seq %r" % j)
    check(wait_status(api, c, ("cancelled",)) == "cancelled", "c cancelled")
    api.expect("cancel completed", 409, "POST", "/api/v1/executions/%s/cancel" % ids[0], {})

    # ---- workers, councils, triggers
    j = api.expect("workers", 200, "GET", "/api/v1/workers")
    w = (j or {}).get("workers", [])
    check(len(w) == 1 and w[0]["worker_id"] == "w-http" and w[0]["queues"] == ["default", "gpu"]
          and w[0]["capabilities"] == {"gpu": "true"} and w[0]["alive"] is True, "workers %r" % w)
    j = api.expect("workers of a queue", 200, "GET", "/api/v1/workers?queue=none")
    check(j == {"workers": []}, "workers of queue none %r" % j)
    api.expect("workers no token", 401, "GET", "/api/v1/workers", token=None)
    api.expect("workers too big", 413, "GET", "/api/v1/workers", raw=big)
    api.expect("workers 405", 405, "POST", "/api/v1/workers", {})

    council = open(os.path.join(ROOT, "examples", "deliberation", "councils", "qa.json")).read()
    cname = json.loads(council)["name"]
    j = api.expect("council put", 201, "POST", "/api/v1/councils", raw=council.encode())
    check(j and j["name"] == cname and j["created"] is True, "council put %r" % j)
    api.expect("council put again", 200, "POST", "/api/v1/councils", raw=council.encode())
    api.expect("council invalid", 400, "POST", "/api/v1/councils", {"name": "x", "role": 5})
    api.expect("council no token", 401, "POST", "/api/v1/councils", raw=council.encode(), token=None)
    api.expect("council too big", 413, "POST", "/api/v1/councils", raw=big)
    j = api.expect("councils", 200, "GET", "/api/v1/councils")
    check(j and [x["name"] for x in j["councils"]] == [cname], "councils %r" % j)
    j = api.expect("council get", 200, "GET", "/api/v1/councils/" + urllib.parse.quote(cname))
    check(j and isinstance(j.get("council"), dict) and j["council"]["name"] == cname, "council get %r" % j)
    api.expect("council get unknown", 404, "GET", "/api/v1/councils/nope")
    api.expect("council delete", 200, "DELETE", "/api/v1/councils/" + urllib.parse.quote(cname))
    api.expect("council delete again", 404, "DELETE", "/api/v1/councils/" + urllib.parse.quote(cname))
    api.expect("council 405", 405, "PUT", "/api/v1/councils/x")

    j = api.expect("triggers", 200, "GET", "/api/v1/triggers")
    check(j == {"triggers": []}, "triggers %r" % j)
    api.expect("triggers no token", 401, "GET", "/api/v1/triggers", token=None)
    api.expect("triggers too big", 413, "GET", "/api/v1/triggers", raw=big)
    api.expect("unknown route", 404, "GET", "/api/v1/nothing")
    api.expect("outside the api", 404, "GET", "/nothing", token=None)
    api.expect("healthz 405", 405, "POST", "/healthz", token=None)

    # ---- the console's files (served without the token; the page asks for it)
    st, _, text, r = api.req("GET", "/", token=None)
    check(st == 200 and r.getheader("Content-Type", "").startswith("text/html") and '/console/app.js' in text
          and "default-src 'self'" in (r.getheader("Content-Security-Policy") or ""), "console index: %d" % st)
    for name, ctype in (("app.js", "text/javascript"), ("style.css", "text/css"), ("index.html", "text/html")):
        st, _, text, r = api.req("GET", "/console/" + name, token=None)
        src = open(os.path.join(ROOT, "server", "console", name), encoding="utf-8").read()
        check(st == 200 and r.getheader("Content-Type", "").startswith(ctype) and text == src,
              "console %s served as embedded (%d, %s)" % (name, st, r.getheader("Content-Type")))
    api.expect("console unknown file", 404, "GET", "/console/nope.js", token=None)
    api.expect("console 405", 405, "POST", "/console/app.js", {}, token=None)

    # ---- timers: a sleep's lateness is observed, nothing stays pending
    def scrape():
        st, _, text, _ = api.req("GET", "/metrics", token=None)
        check(st == 200, "metrics: %d" % st)
        out = {}
        for f in text_string_to_metric_families(text):
            for s in f.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out
    m0 = scrape()
    api.expect("register nap", 201, "POST", "/api/v1/blueprints",
               {"name": "nap", "steps": [{"name": "z", "kind": "sleep", "duration_ms": 300},
                                         {"name": "after", "handler": "echo", "depends_on": ["z"]}]})
    n = api.expect("start nap", 201, "POST", "/api/v1/executions", {"blueprint": "nap"})["execution_id"]
    check(wait_status(api, n, ("completed", "failed")) == "completed", "nap completed")
    m1 = scrape()
    fired = m1.get(("cerebelum_timers_fired_total", ())) - m0.get(("cerebelum_timers_fired_total", ()))
    late = m1.get(("cerebelum_timer_lateness_seconds_count", ())) - m0.get(("cerebelum_timer_lateness_seconds_count", ()))
    check(fired == 1 and late == 1, "one timer fired (%r) and one lateness observed (%r)" % (fired, late))
    check(m1.get(("cerebelum_timer_lateness_seconds_sum", ())) >= 0, "lateness sum >= 0")
    check(m1.get(("cerebelum_timers_pending", ())) == 0, "no timer pending after the nap")
    check(m1.get(("cerebelum_executions_started_total", (("blueprint", "nap"),))) == 1, "nap started 1")

    # ---- /readyz follows PostgreSQL
    pgdata, pgbin = os.environ.get("CEREBELUM_TEST_PGDATA"), os.environ.get("CEREBELUM_TEST_PGBIN")
    if not check(pgdata and pgbin, "the harness's CEREBELUM_TEST_PGDATA/PGBIN are set"):
        return
    as_pg = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
    subprocess.run(as_pg + [pgbin + "/pg_ctl", "-D", pgdata, "-m", "fast", "-w", "stop"], check=True,
                   stdout=subprocess.DEVNULL)
    try:
        st, j, text, _ = api.req("GET", "/readyz", token=None)
        check(st == 503 and j and j["status"] == "not_ready" and j["reason"].startswith("store:")
              and j["checks"]["engine_loop"] == "ok", "readyz with PostgreSQL stopped: %d %s" % (st, text))
        api.expect("healthz while the store is down", 200, "GET", "/healthz", token=None)
        api.expect("metrics while the store is down", 503, "GET", "/metrics", token=None)
    finally:
        # as tests/harness/with-postgres.sh starts it
        opts = "-p %s -k %s -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=128MB" % (
            os.environ["CEREBELUM_TEST_PGPORT"], os.environ["CEREBELUM_TEST_PGSOCKDIR"])
        subprocess.run(as_pg + [pgbin + "/pg_ctl", "-D", pgdata, "-l", os.path.dirname(pgdata) + "/server.log",
                                "-w", "-t", "60", "-o", opts, "start"], check=True, stdout=subprocess.DEVNULL)
    st = None
    for _ in range(300):
        st, j, text, _ = api.req("GET", "/readyz", token=None)
        if st == 200:
            break
        time.sleep(0.1)
    check(st == 200 and j["status"] == "ready", "readyz after PostgreSQL returned: %s %s" % (st, text))


if __name__ == "__main__":
    main()
    if fails:
        print("%d check(s) failed" % len(fails), file=sys.stderr)
        sys.exit(1)
    print("ok: %d checks" % ran[0])

#!/usr/bin/env bash
# cli_test.sh CEREBELUM CLIENT_PROBE - the `cerebelum` program end to end.
#
# Starts real `cerebelum serve --demo-handlers` processes (loopback TCP on a
# port the kernel picks, and a unix socket in a private temp dir) on a fresh
# database of the test PostgreSQL, runs every client command against them
# and checks exit codes, stdout and stderr precisely, including the failure
# paths: unknown ids, bad JSON, a server that is down or never answers, a
# missing token, and shutdown by SIGTERM/SIGINT. Servers are always stopped
# and the database dropped, on failure too. Skips (77) without
# CEREBELUM_TEST_DATABASE_URL (tests/harness/with-postgres.sh sets it).
# CLIENT_PROBE (client_probe.c) makes the client library calls that no
# command makes.
set -u
exe=$1
probe_exe=$2
. "$(dirname "$0")/lib.sh"

cat >"$tmp/demo.json" <<'EOF'
{"name": "demo", "steps": [
  {"name": "a", "handler": "echo"},
  {"name": "b", "handler": "echo", "depends_on": ["a"]}]}
EOF
echo '{"name": "boom", "steps": [{"name": "explode", "handler": "fail"}]}' >"$tmp/boom.json"
echo '{"name": "orphan", "steps": [{"name": "lonely", "handler": "nobody"}]}' >"$tmp/orphan.json"
echo '{"name": "bad", "steps": [{"name": "a", "depends_on": ["ghost"]}]}' >"$tmp/invalid.json"
echo '{"name": "demo", "steps": [' >"$tmp/broken.json"

# ---- usage errors (no server needed) -----------------------------------------
check 2 "no command"
match err '^cerebelum: no command given' "no command"
check 2 "unknown command" frobnicate
exactly err $'cerebelum: unknown command \'frobnicate\'\nTry \'cerebelum --help\'.' "unknown command"
check 2 "missing argument" show
match err "'show' takes 1 argument, got 0" "missing argument"
check 2 "extra argument" show a b
check 2 "option of another command" list --reason x
match err "option --reason does not apply to 'list'" "option of another command"
check 2 "unknown option" list --frobnicate
match err "unknown option '--frobnicate'" "unknown option"
check 2 "option without value" start demo --input
match err "option '--input' needs a value" "option without value"
check 2 "bad --limit" list --limit zero
match err "--limit wants a whole number" "bad --limit"
check 2 "bad --status" list --status sleepy
match err "unknown --status 'sleepy'" "bad --status"
check 2 "blueprint without subcommand" blueprint
check 0 "--help" --help
match out '^Usage: cerebelum COMMAND' "--help"
check 0 "command --help" start --help
match out '^Usage: cerebelum start BLUEPRINT' "command --help"
check 0 "--version" --version
match out '^cerebelum [0-9]+\.[0-9]+\.[0-9]+$' "--version"
check 2 "serve: unknown option" serve --bogus

# ---- the main server, TCP on a kernel-chosen port -------------------------------
start_server main --listen 127.0.0.1:0 || exit 1
main_pid=$pid
main_addr=$addr
export CEREBELUM_SERVER=$addr
match addr '^127\.0\.0\.1:[0-9]+$' "serving line"

# blueprint register
check 0 "register" blueprint register "$tmp/demo.json" &&
  match out '^registered demo version [0-9a-f]{64}$' "register output"
version=${out##* }
check 0 "register again (same version)" blueprint register "$tmp/demo.json" --json &&
  py "register --json" "j == {'name': 'demo', 'version': '$version', 'created': False}"
check 0 "register again, human" blueprint register "$tmp/demo.json" &&
  exactly out "already registered demo version $version" "register again output"
check 0 "register boom" blueprint register "$tmp/boom.json"
check 0 "register orphan" blueprint register "$tmp/orphan.json"
check 1 "register invalid blueprint" blueprint register "$tmp/invalid.json" &&
  exactly err "cerebelum: $tmp/invalid.json: step 'a': depends_on names unknown step 'ghost'" "invalid blueprint message"
check 1 "register bad JSON" blueprint register "$tmp/broken.json" &&
  match err "^cerebelum: $tmp/broken.json: malformed JSON" "bad JSON message"
check 2 "register missing file" blueprint register "$tmp/nope.json" &&
  exactly err "cerebelum: cannot read $tmp/nope.json: No such file or directory" "missing file message"

# start, show, history of a completed execution
check 0 "start" start demo --input '{"x": 1}' && match out "$uuid_re" "start prints the id"
id1=$out
check 0 "start --json" start demo --json && py "start --json" "len(j['execution_id']) == 36 and j['created'] is True and j['version'] == '$version'"
id2=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["execution_id"])' <<<"$out")
wait_status "$id1" completed
wait_status "$id2" completed

check 0 "show" show "$id1"
match out "^id: +$id1\$" "show: id"
match out '^blueprint: +demo$' "show: blueprint"
match out "^version: +$version\$" "show: version"
match out '^status: +completed$' "show: status"
match out '^current: +-$' "show: nothing current"
match out '^inputs: +\{"x":1\}$' "show: inputs"
match out '^result: +\{"b":' "show: result"
match out '^  a +completed +attempt 1 ' "show: step a"
match out '^  b +completed +attempt 1 ' "show: step b"
check 0 "show --json" show "$id1" --json &&
  py "show --json" "j['id'] == '$id1' and j['status'] == 'completed' and j['blueprint'] == 'demo' and j['version'] == '$version' and j['inputs'] == {'x': 1} and j['result']['b']['inputs'] == {'x': 1} and j['error'] is None and j['last_seq'] == 6 and j['state']['steps']['a']['status'] == 'completed' and j['state']['steps']['b']['result']['deps']['a']['inputs'] == {'x': 1}"

check 0 "history" history "$id1"
types=$(awk '{print $3}' <<<"$out")
exactly types "$(printf '%s\n' ExecutionStarted StepScheduled StepCompleted StepScheduled StepCompleted ExecutionCompleted)" "history: event types"
seqs=$(awk '{print $1}' <<<"$out" | tr '\n' ' ')
exactly seqs "1 2 3 4 5 6 " "history: seqs"
match out '^ +1  [0-9-]{10}T[0-9:.]{12}Z  ExecutionStarted +blueprint=demo version=[0-9a-f]{64} inputs=\{"x":1\}$' "history: first line"
match out '^ +3  .*StepCompleted +step=a attempt=1 result=\{"inputs":\{"x":1\},"deps":\{\}\}$' "history: step a result"
check 0 "history --json" history "$id1" --json &&
  py "history --json" "[e['type'] for e in j] == ['ExecutionStarted','StepScheduled','StepCompleted','StepScheduled','StepCompleted','ExecutionCompleted'] and [e['seq'] for e in j] == [1,2,3,4,5,6] and j[2]['payload'] == {'step': 'a', 'attempt': 1, 'result': {'inputs': {'x': 1}, 'deps': {}}} and all(e['recorded_at_ms'] > 0 for e in j)"

# a failing step
check 0 "start boom" start boom
idf=$out
wait_status "$idf" failed
check 0 "show failed" show "$idf"
match out '^status: +failed$' "show failed: status"
match out '^error: +\{.*"kind":"demo"' "show failed: error"
match out '^  explode +failed +attempt 1 ' "show failed: step"
check 0 "show failed --json" show "$idf" --json &&
  py "show failed --json" "j['error'] == {'step': 'explode', 'kind': 'demo', 'message': \"the demo handler 'fail' always fails\"} and j['result'] is None"

# list, filters, paging: newest first
check 0 "list" list
match out '^ID +STATUS +BLUEPRINT +STARTED +UPDATED$' "list: header"
match out "^$id1  completed +demo " "list: id1"
match out "^$idf  failed +boom " "list: boom"
[ "$(wc -l <<<"$out")" = 4 ] || fail "list: want a header and 3 rows:"$'\n'"$out"
check 0 "list --json" list --json &&
  py "list --json" "[x['id'] for x in j] == ['$idf', '$id2', '$id1']"
check 0 "list --status failed" list --status failed --json &&
  py "list --status" "[x['id'] for x in j] == ['$idf']"
check 0 "list --blueprint demo" list --blueprint demo --json &&
  py "list --blueprint" "[x['id'] for x in j] == ['$id2', '$id1']"
check 0 "list --limit 1" list --limit 1 --json && py "list --limit" "[x['id'] for x in j] == ['$idf']"
check 0 "list --after" list --after "$idf" --limit 1 --json &&
  py "list --after" "[x['id'] for x in j] == ['$id2']"
check 0 "list past the end" list --after "$id1" --json && py "list past the end" "j == []"
check 0 "list no match" list --blueprint nothing-here && [ "$(wc -l <<<"$out")" = 1 ] ||
  fail "list no match: want only the header: $out"

# refusals: exit 1 with the server's message
check 1 "show unknown id" show 00000000-0000-0000-0000-000000000000 &&
  exactly err "cerebelum: execution 00000000-0000-0000-0000-000000000000 not found" "show unknown id message"
check 1 "show non-uuid id" show not-an-id &&
  exactly err "cerebelum: execution not-an-id not found" "show non-uuid message"
check 1 "history unknown id" history 00000000-0000-0000-0000-000000000000 &&
  exactly err "cerebelum: execution 00000000-0000-0000-0000-000000000000 not found" "history unknown id message"
check 1 "list unknown cursor" list --after 00000000-0000-0000-0000-000000000000 &&
  match err "list cursor: execution 00000000-0000-0000-0000-000000000000 not found" "list cursor message"
check 1 "start unknown blueprint" start nosuch &&
  exactly err "cerebelum: no blueprint named 'nosuch'" "unknown blueprint message"
check 1 "start without handler" start orphan &&
  exactly err "cerebelum: blueprint 'orphan', step 'lonely': no handler registered as 'nobody'" "no handler message"
check 1 "start an unknown version" start demo --version 0000 &&
  exactly err "cerebelum: blueprint 'demo' has no version 0000" "unknown version message"
check 2 "start --version without a value" start demo --version &&
  match err "option '--version' needs a value" "--version without a value"
check 2 "start with an empty key" start demo --id '' &&
  exactly err "cerebelum: --id must not be empty" "empty key message"
# bad JSON on the command line: a usage error, nothing sent
check 2 "start bad --input" start demo --input '{"x": ' &&
  exactly err "cerebelum: --input is not valid JSON: {\"x\": " "bad --input message"
check 2 "start non-object --input" start demo --input '[1, 2]' &&
  exactly err "cerebelum: --input must be a JSON object, not [1, 2]" "non-object --input message"
check 0 "no execution was started by the refused starts" list --json && py "refused starts" "len(j) == 3"

# ---- token: a second server on a unix socket, configured by environment ------
sock="unix:$tmp/cbm.sock"
CEREBELUM_LISTEN=$sock CEREBELUM_TOKEN=s3cret start_server tok || exit 1
tok_pid=$pid
exactly addr "$sock" "unix serving line"
grep -q '(token required)' "$tmp/tok.err" || fail "token server does not say a token is required"
check 1 "no token" list --server "$sock" &&
  exactly err "cerebelum: UNAUTHENTICATED: missing or wrong bearer token (authorization metadata)" "no token message"
check 1 "wrong token" list --server "$sock" --token nope && match err "UNAUTHENTICATED" "wrong token"
check 0 "right token" list --server "$sock" --token s3cret --json && py "right token" "len(j) == 3"
CEREBELUM_TOKEN=s3cret check 0 "token from the environment" show "$id1" --server "$sock"
stop_server "$tok_pid" INT tok

# ---- decisions: approve, reject, signal, cancel ----------------------------------
cat >"$tmp/gate.json" <<'EOF'
{"name": "gate", "steps": [
  {"name": "ok", "kind": "approval"},
  {"name": "after", "handler": "echo", "depends_on": ["ok"]}]}
EOF
cat >"$tmp/wait.json" <<'EOF'
{"name": "wait", "steps": [
  {"name": "ping", "kind": "signal", "signal": "go"},
  {"name": "after", "handler": "echo", "depends_on": ["ping"]}]}
EOF
check 0 "register gate" blueprint register "$tmp/gate.json"
check 0 "register wait" blueprint register "$tmp/wait.json"
check 0 "start gate 1" start gate && ga=$out
check 0 "start gate 2" start gate && gr=$out
check 0 "start gate 3" start gate && gc=$out
check 0 "start wait" start wait && ws=$out
wait_status "$ga" awaiting_approval
wait_status "$gr" awaiting_approval
wait_status "$gc" awaiting_approval
# A parent whose sub-workflow step waits for its child (gate waits for a
# person): awaiting_child, in show and as a list filter.
echo '{"name": "parent", "steps": [{"name": "kid", "kind": "subworkflow", "blueprint": "gate"}]}' \
  >"$tmp/parent.json"
check 0 "register parent" blueprint register "$tmp/parent.json"
check 0 "start parent" start parent && pa=$out
wait_status "$pa" awaiting_child
check 0 "list --status awaiting_child" list --status awaiting_child --json &&
  py "list awaiting_child" "[x['id'] for x in j] == ['$pa']"
check 0 "cancel parent" cancel "$pa"
wait_status "$pa" cancelled
wait_status "$ws" awaiting_signal
check 0 "show awaiting approval" show "$ga" && match out '^current: +ok \(approval_requested\)$' "show: current approval"

check 2 "approve bad --response" approve "$ga" ok --response '{"yes":' &&
  exactly err 'cerebelum: --response is not valid JSON: {"yes":' "approve bad JSON message"
check 1 "approve unknown step" approve "$ga" nostep &&
  exactly err "cerebelum: execution $ga has no step 'nostep'" "approve unknown step message"
check 1 "approve a step that does not wait" approve "$ga" after &&
  exactly err "cerebelum: step 'after' of execution $ga is not waiting for an approval" "approve wrong step message"
check 1 "approve unknown execution" approve 00000000-0000-0000-0000-000000000000 ok &&
  exactly err "cerebelum: no execution 00000000-0000-0000-0000-000000000000" "approve unknown execution message"
check 0 "approve" approve "$ga" ok --response '{"yes": true}' --who alice &&
  exactly out "approved step ok of $ga" "approve output"
wait_status "$ga" completed
check 0 "show approved" show "$ga" --json &&
  py "show approved" "j['result'] == {'after': {'inputs': {}, 'deps': {'ok': {'yes': True}}}} and j['state']['steps']['ok'] == {'status': 'completed', 'attempt': 1, 'result': {'yes': True}}"
check 0 "history approved" history "$ga" && match out 'ApprovalGranted +step=ok response=\{"yes":true\} by=alice$' "history: approval"
check 1 "approve twice" approve "$ga" ok && exactly err "cerebelum: execution $ga is already completed" "approve twice message"

check 2 "reject without --reason" reject "$gr" ok &&
  match err "reject needs --reason" "reject without reason"
check 0 "reject" reject "$gr" ok --reason "not today" --who bob --json &&
  py "reject --json" "j == {'execution_id': '$gr', 'step': 'ok', 'done': 'rejected'}"
wait_status "$gr" failed
check 0 "show rejected" show "$gr" --json &&
  py "show rejected" "j['error'] == {'step': 'ok', 'kind': 'approval_rejected', 'message': 'not today'}"

check 2 "signal bad --payload" signal "$ws" go --payload 'nope' &&
  exactly err "cerebelum: --payload is not valid JSON: nope" "signal bad JSON message"
check 0 "signal" signal "$ws" go --payload '{"n": 1}' && exactly out "sent signal go to $ws" "signal output"
wait_status "$ws" completed
check 0 "show signalled" show "$ws" --json &&
  py "show signalled" "j['result'] == {'after': {'inputs': {}, 'deps': {'ping': {'n': 1}}}}"
check 1 "signal a finished execution" signal "$ws" go &&
  exactly err "cerebelum: execution $ws is already completed" "signal finished message"

check 0 "cancel" cancel "$gc" --reason "changed my mind" && exactly out "cancelled $gc" "cancel output"
wait_status "$gc" cancelled
check 0 "cancel again" cancel "$gc"
check 0 "history cancelled" history "$gc" --json &&
  py "history cancelled" "[e['type'] for e in j][-2:] == ['CancelRequested', 'ExecutionCancelled'] and j[-1]['payload'] == {'reason': 'changed my mind'}"
check 0 "show cancelled" show "$gc" && match out '^current: +-$' "show cancelled: nothing current"
check 1 "cancel a completed execution" cancel "$id1" &&
  exactly err "cerebelum: execution $id1 is already completed" "cancel completed message"
check 1 "cancel unknown execution" cancel not-an-id &&
  exactly err "cerebelum: execution not-an-id not found" "cancel unknown message"

# The client library's own calls that no command makes (client_probe.c).
echo '{"name": "two", "steps": [{"name": "x", "kind": "approval"}, {"name": "y", "kind": "approval"}]}' >"$tmp/two.json"
check 0 "register two" blueprint register "$tmp/two.json"
check 0 "start gate 4" start gate && g4=$out
check 0 "start two" start two && t2=$out
wait_status "$g4" awaiting_approval
wait_status "$t2" awaiting_approval
probe approve-only "$g4"
exactly out "rc=CBM_OK " "approve with no step named"
wait_status "$g4" completed
probe approve-only "$t2"
exactly out "rc=CBM_ESTATE 2 steps wait for an approval (x, y): name one" "approve with no step, two waiting"
probe approve-only "$ga"
exactly out "rc=CBM_ESTATE no step of the execution waits for an approval" "approve with no step, none waiting"
probe history "$ga" 3
exactly out "$(printf '%s\n' '3 ApprovalGranted' '4 StepScheduled' '5 StepCompleted' '6 ExecutionCompleted' 'rc=CBM_OK ')" "history from seq 3"
probe null-args
exactly out "rc=CBM_OK " "NULL arguments"

# ---- idempotent starts and versions ------------------------------------------
check 0 "start with a key" start demo --id key-1 --input '{"x": 7}' && match out "$uuid_re" "keyed start prints the id"
k1=$out
exactly err "cerebelum: created execution $k1 (key 'key-1')" "keyed start: created"
check 0 "start with the same key" start demo --id key-1 --input '{"x": 8}'
exactly out "$k1" "same key, same execution"
exactly err "cerebelum: existing execution $k1 (key 'key-1'): not started again" "same key: existing"
check 0 "same key, --json" start demo --id key-1 --json &&
  py "same key --json" "j == {'execution_id': '$k1', 'created': False, 'version': '$version'}"
check 0 "another key" start demo --id key-2 --json &&
  py "another key" "j['execution_id'] != '$k1' and j['created'] is True"
wait_status "$k1" completed
check 0 "show keyed" show "$k1" --json && py "show keyed" "j['inputs'] == {'x': 7}"
# a second version of demo; the first is still startable by name
sed 's/"b", "handler": "echo"/"b2", "handler": "echo"/' "$tmp/demo.json" >"$tmp/demo2.json"
check 0 "register demo v2" blueprint register "$tmp/demo2.json" --json &&
  py "register v2" "j['created'] is True and j['version'] != '$version'"
version2=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])' <<<"$out")
check 0 "start latest (v2)" start demo --json && py "start latest" "j['version'] == '$version2'"
v2id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["execution_id"])' <<<"$out")
check 0 "start --version v1" start demo --version "$version" --json &&
  py "start v1" "j['version'] == '$version' and j['created'] is True"
v1id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["execution_id"])' <<<"$out")
check 0 "--version before the blueprint" start --version "$version" demo
wait_status "$v1id" completed
wait_status "$v2id" completed
check 0 "show v1 run" show "$v1id" --json &&
  py "v1 run" "j['version'] == '$version' and 'b' in j['result'] and 'b2' not in j['result']"
check 0 "show v2 run" show "$v2id" --json &&
  py "v2 run" "j['version'] == '$version2' and 'b2' in j['result']"

# ---- TLS, and the message cap: a third server, on the same database ---------
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/key.pem" -out "$tmp/cert.pem" \
  -days 1 -subj /CN=localhost -addext subjectAltName=DNS:localhost >/dev/null 2>&1 ||
  fail "openssl could not make a test certificate"
check 2 "serve: certificate without key" serve --tls-cert "$tmp/cert.pem" &&
  match err "TLS needs both --tls-cert and --tls-key" "certificate without key"
check 2 "serve: unreadable certificate" serve --tls-cert "$tmp/none.pem" --tls-key "$tmp/key.pem" &&
  exactly err "cerebelum: cannot read --tls-cert $tmp/none.pem: No such file or directory" "unreadable certificate"
start_server tls --listen 127.0.0.1:0 --tls-cert "$tmp/cert.pem" --tls-key "$tmp/key.pem" \
  --max-message-bytes 4096 || exit 1
tls_pid=$pid
tls_addr=$addr
grep -q '(TLS)' "$tmp/tls.err" || fail "TLS server does not say TLS"
check 0 "TLS" show "$id1" --server "$tls_addr" --tls-ca "$tmp/cert.pem" --tls-server-name localhost
match out '^status: +completed$' "TLS: show"
check 3 "plaintext client, TLS server" show "$id1" --server "$tls_addr" --timeout-ms 3000
[ "$ms" -lt 3500 ] || fail "plaintext client, TLS server: took $ms ms"
check 2 "unreadable --tls-ca" show "$id1" --server "$tls_addr" --tls-ca "$tmp/none.pem" &&
  exactly err "cerebelum: cannot read --tls-ca $tmp/none.pem: No such file or directory" "unreadable --tls-ca"
python3 -c '
import json
steps = [{"name": "s%04d" % i, "handler": "echo"} for i in range(200)]
print(json.dumps({"name": "huge", "steps": steps}))' >"$tmp/huge.json"
check 1 "request over the message cap" blueprint register "$tmp/huge.json" --server "$tls_addr" \
  --tls-ca "$tmp/cert.pem" --tls-server-name localhost &&
  match err "^cerebelum: $tmp/huge.json: RESOURCE_EXHAUSTED: .*larger than max" "message cap message"
# A host name in --server (resolved through gRPC's c-ares: the sanitizer
# build must exit 0 with no leak report).
check 0 "host name in --server" show "$id1" --server "localhost:${tls_addr##*:}" \
  --tls-ca "$tmp/cert.pem" --tls-server-name localhost
stop_server "$tls_pid" TERM tls

# ---- mTLS: a server that requires client certificates -----------------------------
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/ca.key" -out "$tmp/ca.pem" -days 1 \
  -subj /CN=test-client-ca >/dev/null 2>&1 &&
  openssl req -newkey rsa:2048 -nodes -keyout "$tmp/client.key" -out "$tmp/client.csr" \
    -subj /CN=client >/dev/null 2>&1 &&
  openssl x509 -req -in "$tmp/client.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
    -CAcreateserial -out "$tmp/client.pem" -days 1 >/dev/null 2>&1 ||
  fail "openssl could not make a client certificate"
start_server mtls --listen 127.0.0.1:0 --tls-cert "$tmp/cert.pem" --tls-key "$tmp/key.pem" \
  --tls-client-ca "$tmp/ca.pem" || exit 1
mtls_pid=$pid
mtls_addr=$addr
check 0 "mTLS with a client certificate" show "$id1" --server "$mtls_addr" --tls-ca "$tmp/cert.pem" \
  --tls-server-name localhost --tls-client-cert "$tmp/client.pem" --tls-client-key "$tmp/client.key"
match out '^status: +completed$' "mTLS: show"
CEREBELUM_TLS_CLIENT_CERT="$tmp/client.pem" CEREBELUM_TLS_CLIENT_KEY="$tmp/client.key" \
  check 0 "mTLS, certificate from the environment" show "$id1" --server "$mtls_addr" \
  --tls-ca "$tmp/cert.pem" --tls-server-name localhost
check 3 "mTLS without a client certificate" show "$id1" --server "$mtls_addr" \
  --tls-ca "$tmp/cert.pem" --tls-server-name localhost --timeout-ms 3000
check 2 "client certificate without key" show "$id1" --server "$mtls_addr" \
  --tls-ca "$tmp/cert.pem" --tls-client-cert "$tmp/client.pem" &&
  match err "go together" "client certificate without key"
stop_server "$mtls_pid" TERM mtls

# ---- errors are one line, and do not echo a whole input --------------------------
check 2 "serve --token= (empty)" serve --token= &&
  match err "token is empty" "empty token"
big=$(python3 -c 'print("{" * 100000)')
check 2 "huge bad --input" start demo --input "$big"
[ "${#err}" -lt 600 ] || fail "huge bad --input: the error is ${#err} bytes long"
[ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "huge bad --input: the error is not one line"

# ---- batch starts (StartExecutions, through the client library) -----------------
# line I of the probe's output: "I code=... created=... id=... version=... msg=..."
item() { sed -n "$(($1 + 1))p" <<<"$out"; }
item_id() { item "$1" | sed -n 's/.* id=\([^ ]*\) .*/\1/p'; }
probe start-items "demo;;batch-k1"
match out "^0 code=CBM_OK created=1 id=[0-9a-f-]{36} version=[0-9a-f]{64} msg=$" "batch: first start of a key"
kb1=$(item_id 0)
bv=$(item 0 | sed -n 's/.* version=\([0-9a-f]*\) .*/\1/p')
match bv '^[0-9a-f]{64}$' "batch: the version of a started item"
# mixed: an existing key, a new key, plain items, and three bad items, each
# with its own error while the others start
probe start-items "demo;;batch-k1" 'demo;{"x":2};batch-k2' "demo;;" "nosuch;;" "demo;[1];" 'demo;{"y":5}' "" "demo;;;0000"
[ "$rc" = 0 ] || fail "batch: probe exit $rc: $out $err"
match out "^0 code=CBM_OK created=0 id=$kb1 version=$bv msg=$" "batch: existing key answers its execution"
match out "^1 code=CBM_OK created=1 id=[0-9a-f-]{36} version=$bv msg=$" "batch: new key"
match out "^2 code=CBM_OK created=1 id=[0-9a-f-]{36} version=$bv msg=$" "batch: plain item"
match out "^3 code=CBM_ENOTFOUND created=0 id= version= msg=no blueprint named 'nosuch'$" "batch: unknown blueprint"
match out "^4 code=CBM_EINVAL created=0 id= version= msg=.+" "batch: inputs not an object"
match out "^5 code=CBM_OK created=1 id=[0-9a-f-]{36} version=$bv msg=$" "batch: plain item after a bad one"
match out "^6 code=CBM_EINVAL created=0 id= version= msg=blueprint is required$" "batch: no blueprint"
match out "^7 code=CBM_ENOTFOUND created=0 id= version= msg=blueprint 'demo' has no version 0000$" "batch: unknown version"
[ "$(wc -l <<<"$out")" = 9 ] || fail "batch: want 8 item lines and the rc line:"$'\n'"$out"
kb2=$(item_id 1); pb=$(item_id 2); pb5=$(item_id 5)
for x in "$kb2" "$pb" "$pb5"; do [ -n "$x" ] && wait_status "$x" completed; done
check 0 "batch: inputs of item 5" show "$pb5" --json && py "batch: item 5 inputs" "j['inputs'] == {'y': 5}"
probe start-items "demo;;batch-k2"
match out "^0 code=CBM_OK created=0 id=$kb2 " "batch: a key started in a batch is found again"
# a batch of plain items goes in one start per blueprint
probe start-items "demo;;" "boom;;" 'demo;{"z":1}'
match out "^0 code=CBM_OK created=1 " "batch group: demo"
match out "^1 code=CBM_OK created=1 " "batch group: boom"
match out "^2 code=CBM_OK created=1 " "batch group: demo again"
wait_status "$(item_id 2)" completed
# the whole call's limits
probe start-many 1001 demo
[ "$rc" = 1 ] || fail "oversized batch: probe exit $rc"
exactly out "rc=CBM_EINVAL RESOURCE_EXHAUSTED: 1001 items: at most 1000 per StartExecutions call" "oversized batch refused"
probe start-many 0 demo
exactly out "rc=CBM_EINVAL items is empty" "empty batch refused"
probe start-many 1000 orphan
[ "$rc" = 0 ] || fail "batch of the maximum: probe exit $rc: $(tail -1 <<<"$out")"
[ "$(grep -c ' code=CBM_ESTATE ' <<<"$out")" = 1000 ] ||
  fail "batch of the maximum of a blueprint without handlers: want 1000 CBM_ESTATE items: $(head -2 <<<"$out")"

# ---- start --from-file: JSON lines in batches ----------------------------------------
check 2 "from-file with a blueprint too" start demo --from-file "$tmp/none.jsonl" &&
  match err "^cerebelum: 'start' takes 0 arguments, got 1" "from-file with a blueprint: message"
check 2 "from-file with --input" start --from-file "$tmp/none.jsonl" --input '{}' &&
  exactly err "cerebelum: --from-file takes no BLUEPRINT, --input, --id or --version: each line says its own" "from-file with --input: message"
check 2 "from-file missing" start --from-file "$tmp/none.jsonl" &&
  exactly err "cerebelum: cannot read $tmp/none.jsonl: No such file or directory" "from-file missing: message"
printf '{"blueprint": "demo"}\n{"blueprint": "demo", "input": {}}\n' >"$tmp/typo.jsonl"
check 2 "from-file unknown field" start --from-file "$tmp/typo.jsonl" &&
  exactly err "cerebelum: $tmp/typo.jsonl:2: unknown field \"input\" (blueprint, inputs, idempotency_key, version)" "from-file unknown field: message"
printf '{"blueprint": "demo"}\n\n{"blueprint": \n' >"$tmp/broken.jsonl"
check 2 "from-file bad JSON" start --from-file "$tmp/broken.jsonl" &&
  match err "^cerebelum: $tmp/broken.jsonl:3: not valid JSON" "from-file bad JSON: message"
printf '{"inputs": {}}\n' >"$tmp/nobp.jsonl"
check 2 "from-file without blueprint" start --from-file "$tmp/nobp.jsonl" &&
  exactly err "cerebelum: $tmp/nobp.jsonl:1: \"blueprint\" is required" "from-file without blueprint: message"
printf '\n\n' >"$tmp/empty.jsonl"
check 2 "from-file without items" start --from-file "$tmp/empty.jsonl" &&
  exactly err "cerebelum: $tmp/empty.jsonl holds no items" "from-file without items: message"
cat >"$tmp/batch.jsonl" <<'EOF'
{"blueprint": "demo", "idempotency_key": "batch-k1"}
{"blueprint": "demo", "inputs": {"from": "file"}, "idempotency_key": "file-k1"}

{"blueprint": "nosuch"}
{"blueprint": "demo", "inputs": {"n": 4}}
EOF
check 1 "from-file, one item fails" start --from-file "$tmp/batch.jsonl"
exactly err "cerebelum: 1 of 4 items failed" "from-file: failure summary"
[ "$(wc -l <<<"$out")" = 4 ] || fail "from-file: want 4 lines:"$'\n'"$out"
match out "^$kb1 existing\$" "from-file: existing key"
match out "^[0-9a-f-]{36} created\$" "from-file: created"
match out "^- line 4 NOT_FOUND: no blueprint named 'nosuch'\$" "from-file: failed item"
fk1=$(sed -n '2s/ created$//p' <<<"$out")
wait_status "$fk1" completed
check 0 "from-file item inputs" show "$fk1" --json && py "from-file item inputs" "j['inputs'] == {'from': 'file'}"
"$exe" start --from-file - --json <"$tmp/batch.jsonl" >"$tmp/out" 2>"$tmp/err"
rc=$?; out=$(cat "$tmp/out")
[ "$rc" = 1 ] || fail "from-file stdin --json: exit $rc, want 1"
[ "$(wc -l <<<"$out")" = 4 ] || fail "from-file --json: want 4 lines:"$'\n'"$out"
python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin]
assert [r["line"] for r in rows] == [1, 2, 4, 5], rows
assert rows[0]["execution_id"] == sys.argv[1] and rows[0]["created"] is False, rows[0]
assert rows[1]["execution_id"] == sys.argv[2] and rows[1]["created"] is False, rows[1]
assert rows[2]["error"] == {"status": "NOT_FOUND", "message": "no blueprint named '"'nosuch'"'"}, rows[2]
assert rows[3]["created"] is True and len(rows[3]["version"]) == 64, rows[3]
' "$kb1" "$fk1" <<<"$out" || fail "from-file --json rows:"$'\n'"$out"
# more lines than one call may carry: two calls, every item answered, in
# order (1000 that the server refuses, cheaply, then one that starts)
python3 -c '
for i in range(1000): print("{\"blueprint\": \"orphan\"}")
print("{\"blueprint\": \"demo\", \"idempotency_key\": \"many-last\"}")
' >"$tmp/many.jsonl"
check 1 "from-file, two batches" start --from-file "$tmp/many.jsonl"
[ "$(grep -c '^- line [0-9]* FAILED_PRECONDITION: ' <<<"$out")" = 1000 ] ||
  fail "from-file two batches: want 1000 refused: $(head -3 <<<"$out")"
[ "$(sed -n '1000p' <<<"$out" | cut -d' ' -f1-3)" = "- line 1000" ] || fail "from-file two batches: line 1000 out of order"
match out "^[0-9a-f-]{36} created\$" "from-file two batches: the last item, in the second call"
[ "$(tail -1 <<<"$out" | cut -d' ' -f2)" = created ] || fail "from-file two batches: the last line is not the started item"
exactly err "cerebelum: 1000 of 1001 items failed" "from-file two batches: summary"

# ---- shutdown, then the server is down ------------------------------------------
stop_server "$main_pid" TERM main
check 3 "server down" show "$id1" --timeout-ms 3000 &&
  match err "^cerebelum: cannot reach server $main_addr \(is it running\?\): " "server down message"
[ "$ms" -lt 3000 ] || fail "server down: took $ms ms, want well under the 3000 ms deadline"
check 3 "server down (unix socket)" list --server "$sock" --token s3cret --timeout-ms 3000 &&
  match err "^cerebelum: cannot reach server $sock" "unix server down message"

# A server that accepts connections and never answers: the deadline ends it.
python3 -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(16)
print(s.getsockname()[1], flush=True)
conns = []
while True:
    c, _ = s.accept(); conns.append(c)
' >"$tmp/mute.port" &
mute_pid=$!
pids+=("$mute_pid")
for _ in $(seq 50); do [ -s "$tmp/mute.port" ] && break; sleep 0.1; done
check 3 "mute server" show "$id1" --server "127.0.0.1:$(cat "$tmp/mute.port")" --timeout-ms 1000 &&
  exactly err "cerebelum: no answer from server 127.0.0.1:$(cat "$tmp/mute.port") within 1000 ms" "mute server message"
[ "$ms" -ge 900 ] && [ "$ms" -lt 5000 ] || fail "mute server: took $ms ms for a 1000 ms deadline"
kill "$mute_pid" 2>/dev/null

# serve refuses an address it cannot bind, and says why
start_server hold --listen 127.0.0.1:0 || exit 1
hold_pid=$pid
hold_addr=$addr
run serve --listen "$hold_addr"
[ "$rc" = 1 ] || fail "serve on a taken address: exit $rc, want 1: $err"
match err "^cerebelum: cannot listen on $hold_addr" "serve on a taken address"
stop_server "$hold_pid" TERM hold

if [ "$fails" -gt 0 ]; then
  echo "$fails check(s) failed" >&2
  exit 1
fi
echo "all CLI checks passed"

#!/usr/bin/env bash
# council_test.sh CEREBELUM CLIENT_PROBE - councils end to end: `cerebelum
# council put|list|show|rm` and the client library (client_probe.c) against
# a real `cerebelum serve` over a real socket, on a fresh database of the
# test PostgreSQL. Checks exit codes, stdout and stderr: storing (from a
# file and from stdin, the same content twice), listing, showing the latest
# or a named version, the validation messages, deleting (versions stay
# readable by version), putting back after a delete, and a server restart.
# Skips (77) without CEREBELUM_TEST_DATABASE_URL.
set -u
exe=$1
probe_exe=$2
. "$(dirname "$0")/lib.sh"

# The example of docs/deliberation.md, section 1; dev2 changes one persona.
cat >"$tmp/dev.json" <<'EOF'
{"name": "dev",
 "role": "developer",
 "queue": "gpu",
 "requires": {"gpu": "true"},
 "model": {"name": "qwen2.5-7b-instruct", "temperature": 0.7, "top_p": 1.0, "max_tokens": 1024},
 "system_prompt": "You are {{agent}}, {{persona}}. You work as a {{role}}.",
 "prompts": {
   "generate": "Task:\n{{task}}\n\nContext:\n{{context}}\n\nWrite your proposal.",
   "critique": "Task:\n{{task}}\n\nCritique this proposal:\n{{proposal}}",
   "revise":   "Task:\n{{task}}\n\nYour proposal:\n{{proposal}}\n\nCritiques:\n{{critiques}}\n\nRevise it.",
   "score":    "Task:\n{{task}}\n\nScore this proposal:\n{{proposal}}\n\nRubric:\n{{rubric}}"},
 "rubric": {"correctness": {"weight": 0.6, "description": "it solves the task"},
            "clarity":     {"weight": 0.4, "description": "it is easy to follow"}},
 "judge": {"persona": "an impartial senior reviewer"},
 "agents": [{"id": "dev-1", "persona": "a careful engineer"},
            {"id": "dev-2", "persona": "a pragmatic engineer", "temperature": 0.9},
            {"id": "dev-3", "persona": "a security-minded engineer", "model": "other-model"}]}
EOF
sed 's/a careful engineer/a meticulous engineer/' "$tmp/dev.json" >"$tmp/dev2.json"
python3 - "$tmp" <<'EOF'
import json, sys
d = sys.argv[1]
dev = json.load(open(d + "/dev.json"))
# The same council, keys reversed and pretty-printed: the same version.
json.dump(dict(reversed(list(dev.items()))), open(d + "/dev-reordered.json", "w"), indent=4)
bad = dict(dev, agents=[])
json.dump(bad, open(d + "/bad.json", "w"))
typo = json.loads(json.dumps(dev))
typo["prompts"]["critique"] = "Critique {{tsak}}"
json.dump(typo, open(d + "/typo.json", "w"))
EOF
echo '{"name": "dev", "role":' >"$tmp/broken.json"

# ---- usage errors (no server needed) -----------------------------------------
check 2 "council without subcommand" council &&
  exactly err $'cerebelum: \'council\' wants a subcommand: put, list, show, rm\nTry \'cerebelum --help\'.' "council alone"
check 2 "council frobnicate" council frobnicate
check 0 "council --help" council --help &&
  match out '^Usage: cerebelum council put FILE\|-' "council --help lists the subcommands"
check 2 "council put without a file" council put
check 2 "council show without a value for --version" council show dev --version
match err "option '--version' needs a value" "--version without a value"
check 2 "--version on council list" council list --version x
match err "option --version does not apply to 'council list'" "--version on list"
check 2 "council put of a missing file" council put "$tmp/nope.json"
match err "^cerebelum: cannot read $tmp/nope.json: No such file or directory" "missing file"

# ---- the server ------------------------------------------------------------------
start_server main --listen 127.0.0.1:0 || exit 1
main_pid=$pid
main_addr=$addr
export CEREBELUM_SERVER=$addr
header=$(printf '%-20s  %-16s  %6s  %-24s  %s' NAME ROLE AGENTS CREATED VERSION)

check 0 "list, none yet" council list && exactly out "$header" "empty list"
check 0 "list --json, none yet" council list --json && exactly out "[]" "empty list, JSON"

check 0 "put" council put "$tmp/dev.json" &&
  match out '^stored council dev version [0-9a-f]{64}$' "put output"
v1=${out##* }
check 0 "put again" council put "$tmp/dev.json" --json &&
  py "put again --json" "j == {'name': 'dev', 'version': '$v1', 'created': False}"
check 0 "put reordered, from stdin" council put - <"$tmp/dev-reordered.json" &&
  exactly out "already stored council dev version $v1" "same content, other text"

check 0 "list" council list &&
  match out "^dev +developer +3 +[0-9-]{10}T[0-9:.]{12}Z +$v1\$" "list row"
check 0 "list --json" council list --json &&
  py "list --json" "len(j) == 1 and j[0]['name'] == 'dev' and j[0]['role'] == 'developer' and j[0]['agents'] == 3 and j[0]['version'] == '$v1' and j[0]['created_at_ms'] > 0"
check 0 "show" council show dev &&
  py "show" "j['name'] == 'dev' and j['queue'] == 'gpu' and list(j) == ['name', 'role', 'queue', 'requires', 'model', 'system_prompt', 'prompts', 'rubric', 'judge', 'agents'] and list(j['rubric']) == ['clarity', 'correctness']"
printf '%s\n' "$out" >"$tmp/shown.json"
check 0 "what show prints puts as it is" council put "$tmp/shown.json" &&
  exactly out "already stored council dev version $v1" "show | put"
check 0 "show --json" council show dev --json &&
  py "show --json" "j['name'] == 'dev' and j['version'] == '$v1' and j['definition']['agents'][2]['model'] == 'other-model'"

check 0 "put a second version" council put "$tmp/dev2.json" --json &&
  py "second version" "j['created'] is True and j['version'] != '$v1'"
v2=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])' <<<"$out")
check 0 "show the latest" council show dev &&
  py "latest is v2" "j['agents'][0]['persona'] == 'a meticulous engineer'"
check 0 "show --version" council show dev --version "$v1" &&
  py "v1 by version" "j['agents'][0]['persona'] == 'a careful engineer'"
check 0 "show --version before the name" council show --version "$v1" dev --json &&
  py "v1 by version" "j['version'] == '$v1'"

# ---- refusals ------------------------------------------------------------------------
check 1 "show an unknown council" council show nosuch &&
  exactly err "cerebelum: no council named 'nosuch'" "unknown council"
check 1 "show an unknown version" council show dev --version 0000 &&
  exactly err "cerebelum: council 'dev' has no version 0000" "unknown version"
check 1 "put a council without agents" council put "$tmp/bad.json" &&
  exactly err "cerebelum: $tmp/bad.json: council 'dev': agents must not be empty" "no agents"
check 1 "put a bad template" council put "$tmp/typo.json" &&
  exactly err "cerebelum: $tmp/typo.json: council 'dev': prompts.critique: unknown variable 'tsak' at byte 9" "bad template"
check 1 "put a bad template from stdin" council put - <"$tmp/typo.json" &&
  match err "^cerebelum: stdin: council 'dev': prompts.critique: unknown variable" "bad template, stdin"
check 1 "put text that is not JSON" council put "$tmp/broken.json" &&
  match err "^cerebelum: $tmp/broken.json: malformed JSON at line [0-9]+, column [0-9]+" "not JSON"
check 1 "rm an unknown council" council rm nosuch &&
  exactly err "cerebelum: no council named 'nosuch'" "rm unknown"

# ---- delete, and back ----------------------------------------------------------
check 0 "rm" council rm dev && exactly out "deleted council dev" "rm output"
check 1 "show after rm" council show dev &&
  exactly err "cerebelum: no council named 'dev'" "gone from latest"
check 0 "show a version after rm" council show dev --version "$v2" &&
  py "still readable" "j['agents'][0]['persona'] == 'a meticulous engineer'"
check 0 "list after rm" council list && exactly out "$header" "gone from the list"
check 1 "rm again" council rm dev --json &&
  exactly err "cerebelum: no council named 'dev'" "rm twice"
probe council-get dev
exactly out "rc=CBM_ENOTFOUND no council named 'dev'" "client SDK: unknown council"
probe council-get dev "$v1"
match out "^version=$v1\$" "client SDK: a deleted version by version"
probe null-args
exactly out "rc=CBM_OK " "NULL arguments"

check 0 "put after rm" council put "$tmp/dev.json" &&
  exactly out "stored council dev version $v1" "put back: created"
check 0 "show after put back" council show dev --json &&
  py "v1 is the latest again" "j['version'] == '$v1'"
probe council-list
exactly out "$(printf '%s\n' "dev $v1 developer 3 1" 'rc=CBM_OK ')" "client SDK: list"

# ---- a restart keeps them --------------------------------------------------------------
stop_server "$main_pid" TERM main
start_server again --listen 127.0.0.1:0 || exit 1
again_pid=$pid
check 0 "show after a restart" council show dev --json --server "$addr" &&
  py "after a restart" "j['version'] == '$v1'"
check 0 "rm json" council rm dev --json --server "$addr" &&
  py "rm --json" "j == {'name': 'dev', 'deleted': True}"
stop_server "$again_pid" TERM again

if [ "$fails" -gt 0 ]; then
  echo "$fails check(s) failed" >&2
  exit 1
fi
echo "all council checks passed"

#!/bin/sh
# A Unity plugin in plain shell: publishes this host's load averages with the nats CLI.
#
# Needs sh, /proc/loadavg and `nats` (github.com/nats-io/natscli). Connection settings come from
# the nats CLI's own environment (NATS_URL, NATS_USER, NATS_PASSWORD or NATS_CREDS), never argv.
# Run it from cron or a systemd timer, e.g. every 10 s:  while sleep 10; do ./loadavg.sh; done
set -eu

root="${UNITY_SUBJECT_ROOT:-unity}"
# Subject tokens are [A-Za-z0-9_-]; anything else becomes "_".
host=$(printf '%s' "${UNITY_HOST_NAME:-$(hostname)}" | tr -c 'A-Za-z0-9_-' '_')
plugin="shell-loadavg"

read -r load1 load5 load15 procs _ < /proc/loadavg
running=${procs%/*}
now_ms=$(date +%s%3N)
ts="${now_ms%???}.${now_ms#"${now_ms%???}"}"

payload=$(printf '{"v":1,"host":"%s","plugin":"%s","ts":%s,"seq":%s,"samples":[
{"name":"load1","value":%s,"kind":"gauge"},
{"name":"load5","value":%s,"kind":"gauge"},
{"name":"load15","value":%s,"kind":"gauge"},
{"name":"processes_running","value":%s,"unit":"processes","kind":"gauge"}]}' \
  "$host" "$plugin" "$ts" "$now_ms" "$load1" "$load5" "$load15" "$running")

# `nats req` waits for the stream's PubAck (and fails when no stream takes the subject);
# the Msg-Id lets JetStream drop a retried duplicate.
nats req -H "Nats-Msg-Id:$host:$plugin::$now_ms" "$root.metrics.$host.$plugin" "$payload"

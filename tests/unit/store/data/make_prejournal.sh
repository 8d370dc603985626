#!/bin/bash
# Runs the bridge of b069dcd^ (the last one before the journal) and feeds it real alerts, for prejournal.sql.
set -e
# Usage: git archive b069dcd^ | tar -x -C /tmp/mig-old; copy this file there, and
# prejournal-payments-triggered.json as /tmp/mig-old/payments-triggered.json; run it; then put
# `sqlite3 /tmp/mig-old/pre.db .dump` below the header of prejournal.sql.
cd /tmp/mig-old
rm -f pre.db*
export PYTHONPATH=/tmp/mig-old BRIDGE_DATABASE_URL=sqlite:////tmp/mig-old/pre.db BRIDGE_RULES=/tmp/mig-old/rules \
  BRIDGE_WEBHOOK_TOKEN=hook-token BRIDGE_ADMIN_TOKEN=admin-token BRIDGE_LOG_LEVEL=INFO
unset PAGERDUTY_ROUTING_KEY PAGERDUTY_API_TOKEN
/work/venv/bin/python -m bridge serve --port 18931 --workers 1 > serve.log 2>&1 &
PID=$!
for i in $(seq 60); do curl -sf http://127.0.0.1:18931/healthz >/dev/null && break; sleep 0.5; done
ex=webhooks/datadog/examples
post() { curl -s -X POST -H 'Authorization: Bearer hook-token' -H 'Content-Type: application/json' --data-binary @$1 http://127.0.0.1:18931/webhooks/datadog; echo; }
curl -s -X POST -H 'Authorization: Bearer admin-token' -H 'Content-Type: application/json' \
  -d '{"matchers": ["service=payments-api"], "owner": "alice@example.com", "reason": "payments-api datastore migration", "duration": "30d"}' \
  http://127.0.0.1:18931/api/v1/silences; echo
post $ex/01-checkout-users-triggered.json
post $ex/02-checkout-customers-warn.json
post $ex/04-payments-api-no-data.json
post /tmp/mig-old/payments-triggered.json
post $ex/05-cloud-cost-increase.json
post $ex/06-security-signal.json
sleep 3
post $ex/03-checkout-users-recovered.json
sleep 4
kill -TERM $PID; wait $PID || true

#!/usr/bin/env bash
# Smoke run of an installed agentlog (e.g. a wheel in a fresh virtual environment, run from
# outside the source tree): every main path once, on real homes, daemon and MCP server included.
# Usage: tools/smoke_installed.sh [AGENTLOG_COMMAND]   (default: agentlog on PATH)
set -euo pipefail
A=${1:-agentlog}
work=$(mktemp -d)
SERVE=""
cleanup() { if [ -n "$SERVE" ]; then kill "$SERVE" 2>/dev/null || true; wait "$SERVE" 2>/dev/null || true; fi; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"
step() { echo "smoke: $*"; }

step "version: $("$A" --version)"
PY="$(dirname "$(command -v "$A")")/python"
"$PY" -c 'import agentlog, pathlib; assert (pathlib.Path(agentlog.__file__).parent / "py.typed").is_file(), "no py.typed"'
step "the installed package is marked typed"
"$A" --home laptop init --name laptop >/dev/null
PHONE=$("$A" --home phone init --name phone --join)
TOKEN=$("$A" --home laptop devices add "$PHONE" --name phone)
"$A" --home phone devices join "$TOKEN" >/dev/null
step "two homes, one group"

"$A" --home phone observe ui.theme dark >/dev/null
"$A" --home phone pref get ui.theme | grep -q dark
M=$("$A" --home laptop memory put "Prefers aisle seats on flights" --type preference --tag travel)
"$A" --home laptop memory search "aisle seats" | grep -q "aisle"
step "observe, pref get, memory put and search"

"$A" --home laptop serve --listen 127.0.0.1:0 2>serve.log &
SERVE=$!
PORT=""
for _ in $(seq 100); do
    PORT=$(grep -o '"address": "127.0.0.1:[0-9]*"' serve.log | head -1 | grep -o '[0-9]*"$' | tr -d '"' || true)
    [ -n "$PORT" ] && break
    sleep 0.1
done
[ -n "$PORT" ] || { cat serve.log; echo "smoke: serve did not report its address" >&2; exit 1; }
"$A" --home phone sync "127.0.0.1:$PORT" >/dev/null
"$A" --home phone memory get "$M" | grep -q "aisle"
"$A" --home laptop pref get ui.theme | grep -q dark
step "serve and sync: both homes hold both devices' events"

"$A" --home laptop devices invite --name tablet --no-discovery --json >invite.jsonl &
INVITE=$!
for _ in $(seq 100); do grep -q '"ready"' invite.jsonl && break; sleep 0.1; done
CODE=$(grep -o '"code": "[^"]*"' invite.jsonl | cut -d'"' -f4)
"$A" --home tablet join "$CODE" --to "127.0.0.1:$PORT" >/dev/null
wait "$INVITE"
"$A" --home tablet memory get "$M" | grep -q "aisle"
step "devices invite and join CODE through serve: a third home enrolled and synced"

"$A" --home laptop audit export --out audit.jsonl >/dev/null
"$A" audit verify audit.jsonl >/dev/null
step "audit export and verify"

INIT='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"smoke","version":"0"}}}'
echo "$INIT" | timeout 30 "$A" --home laptop mcp 2>mcp.log | grep -q '"serverInfo"' \
    || { cat mcp.log; echo "smoke: the MCP server did not answer initialize" >&2; exit 1; }
step "mcp answers initialize"
echo "smoke: ok"

#!/usr/bin/env bash
# Records where a subject's CPU time goes, native code and kernel included:
# runs one benchmark measurement with --perf-basic-prof, which names the
# JIT-compiled JavaScript for perf, and attaches `perf record` to the
# subject for 10 s inside the measurement window.
#
#   bench/perf-profile.sh STREAMS SUBJECT OUT_DIR
#
# Writes OUT_DIR/perf.data, OUT_DIR/by-dso.txt, OUT_DIR/by-symbol.txt and
# OUT_DIR/by-part.md (bench/summarize-perf.ts: samples grouped by where the
# code comes from), and the benchmark's own report under OUT_DIR/bench.
set -euo pipefail

usage='usage: bench/perf-profile.sh STREAMS SUBJECT OUT_DIR (SUBJECT: agent, agent-mulaw or relay)'
streams=${1:?$usage}
subject=${2:?$usage}
out=${3:?$usage}
case "$subject" in
  relay) pattern='bench/bare-relay.ts' ;;
  agent | agent-mulaw) pattern='src/cli/main.ts run' ;;
  *) echo "invalid subject $subject; $usage" >&2; exit 64 ;;
esac
if ! command -v perf > /dev/null; then
  echo 'perf not found; install it (Debian: apt-get install linux-perf)' >&2
  exit 69
fi

mkdir -p "$out"
npm run bench -- --streams "$streams" --seconds 30 --runs 1 --subjects "$subject" \
  --subject-node-options=--perf-basic-prof --out "$out/bench" > "$out/bench.log" 2>&1 &
bench=$!
# On a failure below, send the benchmark's npm process SIGTERM rather than leave it running.
trap 'kill "$bench" 2> /dev/null || true' ERR

# The window opens 15 s after the last stream started; streams start at 200 per second.
until grep -q '^measuring' "$out/bench.log"; do
  if ! kill -0 "$bench" 2> /dev/null; then
    echo "the benchmark ended before its measurement started; see $out/bench.log" >&2
    exit 1
  fi
  sleep 1
done
sleep $((streams / 200 + 20))
# The newest matching process is the one this benchmark started.
pid=$(pgrep -n -f "$pattern" || true)
if [ -z "$pid" ]; then
  echo "no process matching \"$pattern\" is running; see $out/bench.log" >&2
  exit 1
fi
perf record -F 999 -g -p "$pid" -o "$out/perf.data" -- sleep 10
wait "$bench"

perf report -i "$out/perf.data" --no-children --sort dso -g none > "$out/by-dso.txt" 2> /dev/null
perf report -i "$out/perf.data" --no-children --sort sym -g none > "$out/by-symbol.txt" 2> /dev/null
{
  echo "# $subject, $streams streams"
  echo
  node --import tsx bench/summarize-perf.ts "$out/perf.data"
} > "$out/by-part.md"
echo "wrote $out/by-dso.txt, $out/by-symbol.txt and $out/by-part.md"

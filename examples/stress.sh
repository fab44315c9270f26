#!/usr/bin/env bash
# stress.sh N [HOST [PORT]]: the original project's stress demo. Opens N
# connections to an SMTP server with nc and holds them, idle, until Ctrl-C,
# then closes them all. Meanwhile, in another terminal, watch the server:
#
#	go run ./cmd/metrics_client watch
#
# It reports how many connections were greeted (220) and how many refused
# (421: over -max-conns, or over -max-conns-per-ip when HOST is not this
# machine). Each connection is one nc process here (ulimit -u) and one open
# file of the server (its ulimit -n): for thousands, raise them first.
set -u

usage() { echo "usage: stress.sh N [HOST [PORT]]" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 3 ] || usage
n=$1 host=${2:-127.0.0.1} port=${3:-2525}
case $n in '' | *[!0-9]*) usage ;; esac
command -v nc >/dev/null || { echo "stress.sh: nc is needed (apt-get install netcat-openbsd)" >&2; exit 2; }

dir=$(mktemp -d)
pids=()
cleanup() {
	# A second Ctrl-C must not cut the cleanup short.
	trap - EXIT
	trap '' INT TERM HUP
	echo "stress.sh: closing ${#pids[@]} connections"
	[ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null
	kill %% 2>/dev/null # the last sleep
	wait 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 0' INT TERM HUP

# Every nc reads the same pipe, which this script holds open and never
# writes to: their input never ends, so they keep their connections open
# and send nothing. Each one's replies go to a file of its own. The script
# is the pipe's only writer (3>&-): however it ends, even killed, their
# input ends with it, and -q 0 makes them quit then.
mkfifo "$dir/quiet"
exec 3<>"$dir/quiet"
for ((i = 1; i <= n; i++)); do
	nc -q 0 "$host" "$port" <"$dir/quiet" >"$dir/$i" 2>&1 3>&- &
	pids+=($!)
done
echo "stress.sh: $n connections opened to $host:$port; holding them (Ctrl-C closes them)"

# Report the count of greetings and refusals whenever it changes.
count() { grep -l "^$1" "$dir"/[0-9]* 2>/dev/null | wc -l; }
last=""
while :; do
	status="$(count 220) greeted (220), $(count 421) refused (421)"
	if [ "$status" != "$last" ]; then
		echo "stress.sh: $status"
		last=$status
	fi
	# A trapped Ctrl-C interrupts wait at once, not sleep.
	sleep 1 &
	wait $!
done

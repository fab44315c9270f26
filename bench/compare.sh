#!/usr/bin/env bash
# compare.sh — run run.sh for every server in servers.conf, ROUNDS times,
# interleaved (round r starts at server r-1, so each server takes each slot),
# then print the median/ratio report.
#   ROUNDS=3 ONLY='gosmtp-fsync ours' WL='e a b c x y d' OUT=results/x.jsonl bench/compare.sh
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
ROUNDS=${ROUNDS:-3}
OUT=${OUT:-$here/results/results-$(date -u +%Y%m%dT%H%M%SZ).jsonl}
CONF=${CONF:-$here/servers.conf}
WL=${WL:-e a b c x y d}
REF=${REF:-gosmtp-fsync}
"$here/build.sh" || exit 1
# Every server's Maildir tree is kept until the end (see run.sh, discard).
export KEEP_ROOTS
KEEP_ROOTS=$(mktemp /tmp/bench-roots.XXXXXX)
trap 'xargs -r rm -rf <"$KEEP_ROOTS"; rm -f "$KEEP_ROOTS"' EXIT
names=() extras=() cmds=()
trim() { sed 's/^[[:space:]]*//; s/[[:space:]]*$//' <<<"$1"; }
while IFS='|' read -r n x c; do
	n=$(trim "$n")
	[[ -z $n || $n == \#* ]] && continue
	if [[ -n ${ONLY:-} && " $ONLY " != *" $n "* ]]; then continue; fi
	names+=("$n")
	extras+=("$(trim "$x")")
	cmds+=("$(trim "$c")")
done <"$CONF"
k=${#names[@]}
(( k > 0 )) || { echo "compare.sh: no servers" >&2; exit 1; }
{
	echo "# compare.sh $(date -u +%FT%TZ) rounds=$ROUNDS servers=${names[*]} workloads=$WL"
	echo "# $(uname -srm); $(nproc) cores; $(free -g | awk '/^Mem:/ {print $2 " GiB"}'); $(go version 2>/dev/null || /usr/local/go/bin/go version)"
} >&2
for ((r = 1; r <= ROUNDS; r++)); do
	for ((i = 0; i < k; i++)); do
		j=$(((i + r - 1) % k))
		"$here/run.sh" -n "${names[j]}" -c "${cmds[j]}" -L "${extras[j]}" -r "$r" -w "$WL" -o "$OUT"
	done
done
echo "compare.sh: results in $OUT" >&2
"$here/bin/smtpload" -report "$OUT" -ref "$REF"

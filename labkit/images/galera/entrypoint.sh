#!/bin/bash
# labkit-galera: start one member of a Galera (MariaDB 10.11 + galera-4) StatefulSet.
#
# Environment (set by labkit.workloads.render.database):
#   GALERA_PEERS   comma-separated DNS names of every member (<pod>.<headless svc>.<ns>.svc)
#   POD_IP         this pod's address (wsrep_node_address: what the other members connect to);
#                  default: the first global IPv4 address of the pod (a downward-API fieldRef to
#                  status.podIP cannot be used: Liqo-style virtual kubelets resolve fieldRefs at
#                  the consumer, before the provider has given the pod an address)
#   GALERA_BOOTSTRAP_WAIT  seconds member 0 looks for a live peer before it bootstraps (5)
#   GALERA_DATADIR, GALERA_RUNDIR  data and socket directories (/var/lib/mysql, /run/mysqld)
#   GALERA_LOG_FILE_SIZE  InnoDB redo log size (16M; 10.11's 96M default would make every
#                  state transfer copy 96 MB of mostly empty log through the tunnels)
# The member's name and ordinal come from the pod's hostname (a StatefulSet pod's hostname is
# its name, also in a Liqo provider, whose ShadowPod keeps spec.hostname).
#
# Bootstrap rule (only one member may ever create the cluster):
#   * a member whose peers serve clients (their MySQL port answers) joins them (SST/IST). A
#     member's mariadbd listens there only once it is in a Primary component with a state
#     (bootstrapped, or its state transfer done), never while it is itself joining: the Galera
#     port (4567) opens as soon as mariadbd starts, and members that joined each other on it
#     before any had bootstrapped once formed a non-Primary group with no state (30 Nov, 80);
#   * member 0 bootstraps a new cluster (--wsrep-new-cluster) only when no peer answers for
#     GALERA_BOOTSTRAP_WAIT seconds AND its grastate.dat allows it (absent, or
#     safe_to_bootstrap: 1); otherwise it keeps looking for peers;
#   * a member whose grastate.dat says safe_to_bootstrap: 1 (the last to leave a cluster
#     cleanly) bootstraps the same way, whatever its ordinal;
#   * every other member waits until some peer answers.
# After a full crash (every member killed) no grastate.dat is safe and every member waits:
# Galera's manual recovery, which labkit automates (labkit.experiments.database.recover), is
# to start the member with the most recent state. Three subcommands serve it, run in a waiting
# member with the same environment and arguments as the entrypoint:
#   labkit-galera --state      prints what the entrypoint does: "waiting-fresh", "waiting-safe",
#                              "waiting-unsafe" (no peer, data dir not safe to bootstrap),
#                              "started" (mariadbd runs) or "starting"
#   labkit-galera --position   prints the member's state, and for a member waiting on an
#                              unsafe data directory its recovered position (mariadbd
#                              --wsrep-recover): "waiting-unsafe <uuid>:<seqno>";
#                              otherwise what --state prints
#   labkit-galera --bootstrap  marks a waiting member's grastate.dat safe_to_bootstrap: 1,
#                              so the waiting entrypoint bootstraps from it
# Extra arguments are passed to mariadbd.
set -euo pipefail

DATADIR=${GALERA_DATADIR:-/var/lib/mysql}
RUNDIR=${GALERA_RUNDIR:-/run/mysqld}
MYSQL_PORT=${GALERA_MYSQL_PORT:-3306}
BOOTSTRAP_WAIT=${GALERA_BOOTSTRAP_WAIT:-5}
LOG_FILE_SIZE=${GALERA_LOG_FILE_SIZE:-16M}
NAME=${GALERA_NAME:-$(hostname)}
ORDINAL=${NAME##*-}

STATE_FILE="$RUNDIR/labkit-galera.state"  # what the entrypoint does now, for --state and --position

log() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) labkit-galera $NAME: $*" >&2; }
die() { log "error: $*"; exit 1; }

# whether grastate.dat says this member was the last to leave its cluster cleanly
marked_safe() { grep -Eq '^safe_to_bootstrap:[[:space:]]*1' "$DATADIR/grastate.dat" 2>/dev/null; }

# --position: this member's state; with an unsafe data dir, the position mariadbd recovers
# from it (InnoDB's last committed transaction, the seqno grastate.dat lost in the crash)
position() {
    local state recovered
    state=$(cat "$STATE_FILE" 2>/dev/null || echo starting)
    if [ "$state" != waiting-unsafe ]; then
        echo "$state"
        return 0
    fi
    rm -f "$RUNDIR/recover.log" "$RUNDIR/recover.out"
    # the cluster address only satisfies the SST method's start-up check: nothing is contacted
    mariadbd --user=mysql --datadir="$DATADIR" --tmpdir="$RUNDIR/tmp" --socket="$RUNDIR/recover.sock" \
        --pid-file="$RUNDIR/recover.pid" --innodb-log-file-size="$LOG_FILE_SIZE" --skip-networking "$@" \
        --wsrep-cluster-address=gcomm:// --wsrep-recover --log-error="$RUNDIR/recover.log" >"$RUNDIR/recover.out" 2>&1 \
        || die "--position: mariadbd --wsrep-recover failed: $(cat "$RUNDIR/recover.out" "$RUNDIR/recover.log" 2>/dev/null | tail -n 3)"
    # mariadbd may end the line without a newline: the next entry's date follows the seqno
    recovered=$(grep -oP 'Recovered position: \K[0-9a-f-]{36}:-?[0-9]+?(?=\d{4}-\d\d-\d\d|\s|$)' \
        "$RUNDIR/recover.log" | tail -n 1 || true)
    [ -n "$recovered" ] || die "--position: mariadbd --wsrep-recover found no position (see $RUNDIR/recover.log)"
    echo "waiting-unsafe $recovered"
}

# --bootstrap: let the waiting entrypoint bootstrap from this member's data dir
allow_bootstrap() {
    [ "$(cat "$STATE_FILE" 2>/dev/null)" = waiting-unsafe ] || die "--bootstrap: member is not waiting on an unsafe data dir"
    sed -i -E 's/^safe_to_bootstrap:[[:space:]]*0/safe_to_bootstrap: 1/' "$DATADIR/grastate.dat"
    marked_safe || die "--bootstrap: could not mark $DATADIR/grastate.dat safe"
    log "marked safe to bootstrap (full-crash recovery)"
}

case "${1:-}" in
    --state) cat "$STATE_FILE" 2>/dev/null || echo starting; exit 0 ;;
    --position) shift; position "$@"; exit 0 ;;
    --bootstrap) allow_bootstrap; exit 0 ;;
esac

[ -n "${GALERA_PEERS:-}" ] || die "GALERA_PEERS is empty: the rendered StatefulSet must list the members"
POD_IP=${POD_IP:-$(ip -4 -o addr show scope global 2>/dev/null | awk 'NR == 1 { sub(/\/.*/, "", $4); print $4 }')}
[ -n "$POD_IP" ] || die "no POD_IP and no global IPv4 address on any interface"
[[ "$ORDINAL" =~ ^[0-9]+$ ]] || die "hostname $NAME does not end in a StatefulSet ordinal"

# resolve NAME -> first IPv4 address (empty when it does not resolve yet)
resolve() { getent ahostsv4 "$1" 2>/dev/null | awk 'NR == 1 { print $1 }'; }

# addresses of the peers (not this member) that serve clients (MySQL port), comma-separated
live_peers() {
    local out=() peer ip
    IFS=, read -ra all <<< "$GALERA_PEERS"
    for peer in "${all[@]}"; do
        [ "${peer%%.*}" = "$NAME" ] && continue
        ip=$(resolve "$peer")
        [ -n "$ip" ] && [ "$ip" != "$POD_IP" ] || continue
        if [ ! -e "$RUNDIR/resolved-${peer%%.*}" ]; then  # once per peer: when discovery sees it
            touch "$RUNDIR/resolved-${peer%%.*}"
            log "peer ${peer%%.*} resolves to $ip"
        fi
        if timeout 1 bash -c ">/dev/tcp/$ip/$MYSQL_PORT" 2>/dev/null; then
            out+=("$ip")
        fi
    done
    local IFS=,
    echo "${out[*]}"
}

# whether this member may bootstrap a new cluster: member 0 on a fresh data dir, or any
# member whose grastate.dat says safe_to_bootstrap: 1
may_bootstrap() {
    if [ -f "$DATADIR/grastate.dat" ]; then marked_safe; else [ "$ORDINAL" = 0 ]; fi
}

# what the member waits on: a fresh data dir, a safe one, or an unsafe one (for --position)
waiting_state() {
    if [ ! -f "$DATADIR/grastate.dat" ]; then echo waiting-fresh
    elif marked_safe; then echo waiting-safe
    else echo waiting-unsafe; fi
}

TMPDIR_DB="$RUNDIR/tmp"  # the server's own temporary directory (not a /tmp shared with anything)
mkdir -p "$DATADIR" "$RUNDIR" "$TMPDIR_DB"
chown mysql:mysql "$DATADIR" "$RUNDIR" "$TMPDIR_DB"
echo starting > "$STATE_FILE"  # not a previous run's state (a run dir kept across restarts)
rm -f "$RUNDIR"/resolved-*

started=$(date +%s)
last_log=0
while :; do
    waiting_state > "$STATE_FILE"
    peers=$(live_peers)
    now=$(date +%s)
    if [ -n "$peers" ]; then
        log "joining the cluster through $peers"
        ARGS=(--wsrep-cluster-address="gcomm://$peers")
        break
    fi
    if [ $((now - started)) -ge "$BOOTSTRAP_WAIT" ] && may_bootstrap; then
        log "no peer answered for ${BOOTSTRAP_WAIT} s: bootstrapping a new cluster"
        ARGS=(--wsrep-new-cluster --wsrep-cluster-address="gcomm://")
        break
    fi
    if [ $((now - last_log)) -ge 10 ]; then
        if [ "$(cat "$STATE_FILE")" = waiting-unsafe ]; then
            log "no peer answers and grastate.dat says safe_to_bootstrap: 0; waiting for a peer"
        else
            log "waiting for a peer serving on port $MYSQL_PORT ($GALERA_PEERS)"
        fi
        last_log=$now
    fi
    sleep 1
done
# An empty data directory is initialised only by the member that bootstraps. A joiner's is
# filled by the state transfer (rsync SST runs before InnoDB starts and overwrites it), so
# mariadb-install-db there would be work thrown away: 5-35 s per joiner on a busy test bed.
if [ ! -d "$DATADIR/mysql" ]; then
    if [ "${ARGS[0]}" = --wsrep-new-cluster ]; then
        log "empty data directory: mariadb-install-db"
        mariadb-install-db --no-defaults --user=mysql --datadir="$DATADIR" --tmpdir="$TMPDIR_DB" --skip-test-db \
            --innodb-log-file-size="$LOG_FILE_SIZE" \
            --auth-root-authentication-method=socket >/dev/null \
            || die "mariadb-install-db failed on $DATADIR (is it writable by user mysql?)"
    else
        log "empty data directory: the state transfer from a peer fills it"
    fi
fi
echo started > "$STATE_FILE"

exec mariadbd --user=mysql --datadir="$DATADIR" --socket="$RUNDIR/mysqld.sock" \
    --pid-file="$RUNDIR/mysqld.pid" --tmpdir="$TMPDIR_DB" --innodb-log-file-size="$LOG_FILE_SIZE" \
    --bind-address=0.0.0.0 \
    --wsrep-node-address="$POD_IP" --wsrep-node-name="$NAME" "${ARGS[@]}" "$@"

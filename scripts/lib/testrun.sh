# shellcheck shell=bash
# What scripts/test needs to leave nothing behind, whatever happens to a test run.
# Needs lock.sh (pid_alive, lock_owner).
#
# A test run runs in a session of its own (setsid) with TMPDIR set to a directory
# of its own, RUN_DIR/tmp, under which every test keeps its files. Its processes
# are found by their session, or, when they left the session (pg_ctl starts
# Postgres with setsid; scripts/hosts starts its daemons with setsid), by a
# command line or an environment that names that directory. Only processes found
# that way are stopped, by pid.

# session_pids SID — the processes of session SID, zombies left out.
session_pids() {
    [[ $1 =~ ^[1-9][0-9]*$ ]] || return 0
    { ps -o pid=,stat= --sid "$1" 2>/dev/null || true; } | awk '$2 !~ /^Z/ { print $1 }'
}

# naming_pids DIR — the live processes whose command line or environment names
# DIR (this script excepted).
naming_pids() {
    local found pid
    [[ $1 == /?*/?* ]] || return 0
    # Collected first, so that grep (whose own command line names DIR) has ended.
    found=$(grep -l -s -F -- "$1" /proc/[0-9]*/cmdline /proc/[0-9]*/environ 2>/dev/null |
        sed -n 's#^/proc/\([0-9]*\)/.*#\1#p' | sort -un) || true
    for pid in $found; do
        [[ $pid != "$$" ]] && pid_alive "$pid" && printf '%s\n' "$pid"
    done
    return 0
}

# alive_pids PID... — those of PID... that are alive.
alive_pids() {
    local pid
    for pid; do pid_alive "$pid" && printf '%s\n' "$pid"; done
    return 0
}

# await_none SECONDS LISTER [ARGS...] — until LISTER prints nothing (0), or
# SECONDS have passed (1).
await_none() {
    local deadline=$((SECONDS + $1))
    shift
    while [[ -n $("$@") ]]; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# describe PIDS... — one line per process: pid and command line, for the log.
describe() {
    local IFS=,
    ps -o pid=,args= -p "$*" 2>/dev/null | cut -c1-160 | sed 's/^/    /' >&2 || true
}

# stop_listed WHAT SECONDS LISTER [ARGS...] — SIGTERM to the processes LISTER
# prints, up to SECONDS for all it lists to be gone (they may stop what they
# started first, as scripts/hosts does), then SIGKILL to what is left.
stop_listed() {
    local what="$1" seconds="$2" pids deadline
    shift 2
    pids=$("$@")
    [[ -n $pids ]] || return 0
    echo "scripts/test: stopping what is left of $what (SIGTERM):" >&2
    # shellcheck disable=SC2086  # a list of pids
    describe $pids
    # shellcheck disable=SC2086
    kill -s TERM $pids 2>/dev/null || true
    deadline=$((SECONDS + seconds))
    while pids=$("$@") && [[ -n $pids ]] && ((SECONDS < deadline)); do
        sleep 0.2
    done
    [[ -n $pids ]] || return 0
    echo "scripts/test: still running after ${seconds}s (SIGKILL):" >&2
    # shellcheck disable=SC2086
    describe $pids
    # shellcheck disable=SC2086
    kill -s KILL $pids 2>/dev/null || true
    await_none 5 "$@" || true
}

# sweep_hosts_leftovers — the network namespaces, veths, bridge and lock file of
# every scripts/hosts run of the tests (prefix t<n>: tests/multihost.rs; k<n>: its
# lock test) whose script has ended without cleaning up (killed). A run whose
# lock is held by a live process is left alone: it is someone's running test.
sweep_hosts_leftovers() {
    ((EUID == 0)) && command -v ip >/dev/null 2>&1 || return 0
    local lock_dir=/run/lock prefixes prefix lock owner
    [[ -d $lock_dir ]] || lock_dir=/run
    prefixes=$(
        {
            ip netns list 2>/dev/null | awk '{ print $1 }'
            ip -o link show 2>/dev/null | awk -F': ' '{ print $2 }' | cut -d@ -f1
            find "$lock_dir" -maxdepth 1 -name 'storefront-hosts-*.lock' -printf '%f\n' 2>/dev/null |
                sed -n 's/^storefront-hosts-\(.*\)\.lock$/\1-/p'
        } | sed -n 's/^\([tk][0-9]\{1,5\}\)-.*/\1/p' | sort -u
    ) || true
    for prefix in $prefixes; do
        lock="$lock_dir/storefront-hosts-$prefix.lock"
        if [[ -e $lock ]]; then
            owner=$(lock_owner "$lock")
            if [[ -n $owner ]]; then
                pid_alive "$owner" && continue
            elif ! flock -n "$lock" true; then
                continue   # held, and no pid recorded (an older scripts/hosts): running
            fi
        fi
        echo "scripts/test: removing what the scripts/hosts run with prefix $prefix left behind" >&2
        HOSTS_LOCK_WAIT=5 scripts/hosts cleanup --prefix "$prefix" >&2 ||
            echo "scripts/test: scripts/hosts cleanup --prefix $prefix failed" >&2
    done
}

# reap_stale_runs — what earlier runs of scripts/test left when they could not
# clean up (SIGKILL): their run directories (/tmp/storefront-test.*, whose owner
# pid is gone) and the processes that name them.
reap_stale_runs() {
    local dir owner
    for dir in /tmp/storefront-test.*; do
        [[ -d $dir && -f $dir/owner ]] || continue
        owner=$(lock_owner "$dir/owner")
        [[ -n $owner ]] && pid_alive "$owner" && continue
        echo "scripts/test: cleaning up after an earlier run that did not ($dir)" >&2
        stop_listed "$dir" 20 naming_pids "$dir/tmp"
        rm -rf "$dir"
    done
}

# summarise LOG CARGO_STATUS — per-binary failures and the closing line
# "N passed, M failed", over every test binary in LOG (cargo test's output).
# A binary that ended without its "test result" line (crashed, killed) and a
# target that did not build count as one failure each; so does a cargo that
# failed with nothing else to show for it. CARGO_STATUS "interrupted": the
# counts so far. Returns 1 when M > 0.
summarise() {
    awk -v cargo_status="$2" '
        { gsub(/\033\[[0-9;]*[A-Za-z]/, "") }
        /^ +Running / { result = "" }
        /^test result: / { passed += $4; failed += $6; result = $3 }
        /^error: test failed, to rerun pass / {
            target = $0
            sub(/^error: test failed, to rerun pass /, "", target)
            if (result != "FAILED.") {
                crashed++
                crashed_names = crashed_names (crashed_names == "" ? "" : ", ") target
            }
            result = ""
        }
        /^error: could not compile / { build_errors++; print "did not build: " substr($0, 26) }
        END {
            if (crashed) printf "ended without a test result (crashed or killed): %s\n", crashed_names
            failed += crashed + build_errors
            if (cargo_status == "interrupted") {
                print "the run was interrupted: these are the tests that ended before"
            } else if (cargo_status != 0 && failed == 0) {
                printf "cargo test failed (status %s) with no failing test\n", cargo_status
                failed = 1
            }
            printf "%d passed, %d failed\n", passed, failed
            exit failed > 0
        }
    ' "$1"
}

# shellcheck shell=bash
# One run at a time: an exclusive flock(1) on a lock file, held through file
# descriptor 9 for as long as the script runs. Sourced by scripts/hosts and
# scripts/cluster.
#
# - The file holds the pid of the script that holds the lock. A lock that is
#   taken while that pid is gone belongs to a run that has ended: what still holds
#   it is a process the run left behind (a child that inherited fd 9). The lock is
#   then taken over (the stale file is removed and a new one locked) instead of
#   failing, so a new run or `cleanup` after a killed run never dies on it.
# - While the recorded pid lives, the lock is waited for, up to a bound.
# - lock_release removes the file. Whoever took the lock on a file that has been
#   removed (or replaced) meanwhile notices and locks the new file instead.
# - Start every long-lived child with `9>&-`, so it does not hold the lock.

# pid_alive PID — the process exists and is not a zombie.
pid_alive() {
    local stat
    [[ $1 =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != [ZX] ]]
}

# lock_owner FILE — the pid recorded in FILE (empty when none).
lock_owner() {
    local pid=""
    [[ -f $1 ]] && read -r pid <"$1" 2>/dev/null
    [[ $pid =~ ^[0-9]+$ ]] && printf '%s\n' "$pid"
    return 0
}

# lock_acquire FILE SECONDS — takes the lock (fd 9) and records our pid in FILE.
# Returns 0 when it is ours; 1 when a live process still holds it after SECONDS
# (LOCK_HOLDER is then its pid, or empty if the file names none). When the lock
# was taken over from an ended run, LOCK_STALE_OWNER is that run's pid.
# shellcheck disable=SC2034  # LOCK_HOLDER and LOCK_STALE_OWNER are for the caller
lock_acquire() {
    local file="$1" deadline=$((SECONDS + $2)) owner slice=0 tries=0
    LOCK_HOLDER="" LOCK_STALE_OWNER=""
    while ((tries++ < 1000)); do
        exec 9>>"$file"
        if flock -w "$slice" 9; then
            if [[ /dev/fd/9 -ef $file ]]; then
                printf '%s\n' "$$" >"$file"
                return 0
            fi
            exec 9>&-   # the file was removed while we waited: lock the new one
            slice=0
            continue
        fi
        exec 9>&-
        owner=$(lock_owner "$file")
        if [[ -n $owner ]] && ! pid_alive "$owner"; then
            LOCK_STALE_OWNER=$owner
            [[ $(lock_owner "$file") != "$owner" ]] || rm -f "$file"
            slice=0
            continue
        fi
        if ((SECONDS >= deadline)); then
            LOCK_HOLDER=$owner
            return 1
        fi
        slice=0.5   # wait in slices, so an owner that ends meanwhile is noticed
    done
    return 1
}

# lock_release FILE — removes FILE if it is still the one we hold, then unlocks.
lock_release() {
    if [[ -e /dev/fd/9 && /dev/fd/9 -ef $1 ]]; then
        rm -f "$1"
    fi
    exec 9>&- 2>/dev/null || true
}

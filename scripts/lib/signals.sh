# shellcheck shell=bash
# sigint_ignored — true when this shell started with SIGINT ignored. A job started
# in the background by a non-interactive shell (`scripts/x &` in a script, CI,
# nohup from a script) inherits that, and a non-interactive bash cannot trap a
# signal it was started with ignored: Ctrl-C does nothing to it, SIGTERM does.
sigint_ignored() {
    local mask
    mask=$(sed -n 's/^SigIgn:[[:space:]]*//p' "/proc/$$/status" 2>/dev/null) || return 1
    [[ $mask =~ ^[0-9a-fA-F]+$ ]] || return 1
    (((0x$mask >> 1) & 1))   # bit 1 is signal 2, SIGINT
}

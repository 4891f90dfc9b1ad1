# shellcheck shell=bash
# ensure_commands CMD=PACKAGE ... : installs the Debian packages of the commands
# that are missing (apt-get update once, then apt-get install -y). Sourced by the
# project's scripts so a fresh machine needs nothing installed by hand.

ensure_commands() {
    local pair cmd pkg missing=()
    for pair in "$@"; do
        cmd=${pair%%=*}
        pkg=${pair#*=}
        command -v "$cmd" >/dev/null 2>&1 || [[ -x /usr/sbin/$cmd ]] || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    command -v apt-get >/dev/null 2>&1 || {
        echo "missing: ${missing[*]} (no apt-get here; please install them)" >&2
        return 1
    }
    local sudo=()
    ((EUID == 0)) || sudo=(sudo)
    echo "installing ${missing[*]} from the distribution's packages" >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -q >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
        install -y -q --no-install-recommends "${missing[@]}" >&2
}

# nginx lives in /usr/sbin, which a non-root PATH may lack.
PATH="$PATH:/usr/sbin:/sbin"
export PATH

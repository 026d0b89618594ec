# Shared by scripts/demo, scripts/test and scripts/bench: install what a
# fresh Debian machine lacks. Sourced, not run.

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# What building the workspace needs: GDBM, and OpenSSL (RSA signature
# checks) found through pkg-config.
BUILD_PACKAGES=(libgdbm-dev libssl-dev pkg-config)

# ensure_packages PKG... : apt-get install the Debian packages not yet installed.
ensure_packages() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "==> installing ${missing[*]}"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

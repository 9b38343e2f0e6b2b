# Shared by scripts/test.sh and scripts/quickstart.sh: installs the real components Strata is
# tested and demonstrated with, on a fresh Debian machine. Source it; do not run it.

log() { printf '\n==> %s\n' "$*" >&2; }

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian's `prometheus` package: Prometheus 2.42 and promtool.
install_prometheus() {
    if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
        return 0
    fi
    log "installing Debian package: prometheus (Prometheus 2.42 and promtool)"
    export DEBIAN_FRONTEND=noninteractive
    # Try without refreshing the package lists first; refresh only if that fails.
    if ! sudo_if_needed apt-get install -y -q --no-install-recommends prometheus; then
        sudo_if_needed apt-get update -q
        sudo_if_needed apt-get install -y -q --no-install-recommends prometheus
    fi
    # Where an init system runs, the package starts a Prometheus service; Strata's tests and
    # the quickstart start their own on free ports and do not need it.
}

# Debian's `chromium`: the headless browser the web UI tests drive (crates/strata/tests/ui.rs).
install_chromium() {
    if command -v chromium >/dev/null 2>&1; then return 0; fi
    log "installing Debian package: chromium (headless browser for the web UI tests)"
    export DEBIAN_FRONTEND=noninteractive
    if ! sudo_if_needed apt-get install -y -q --no-install-recommends chromium; then
        sudo_if_needed apt-get update -q
        sudo_if_needed apt-get install -y -q --no-install-recommends chromium
    fi
}

# `moto[server]` from PyPI: an S3-compatible server for the object storage tests.
install_moto() {
    if command -v moto_server >/dev/null 2>&1; then return 0; fi
    log "installing moto[server] (S3-compatible test server) from PyPI"
    python3 -m pip install --quiet 'moto[server]'
    # pip may put scripts outside PATH (user installs).
    command -v moto_server >/dev/null 2>&1 || export PATH="$HOME/.local/bin:$PATH"
    command -v moto_server >/dev/null 2>&1 || {
        echo "moto_server is still not on PATH after pip install" >&2
        return 1
    }
}

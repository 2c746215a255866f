#!/usr/bin/env bash
# Set up everything netboot needs on a fresh Debian 12 machine (as root), then run one job:
#   ./bootstrap.sh serve [netboot serve options]   set up, then `netboot serve` (embedded default)
#   ./bootstrap.sh test  [pytest options]           set up, then the whole test suite
#   ./bootstrap.sh setup                            set up only
set -euo pipefail
cd "$(dirname "$0")"

DEBS=(ipxe squashfs-tools busybox-static qemu-system-x86 ovmf dnsmasq-base iproute2
      tftp-hpa atftp curl udhcpc isc-dhcp-client fdisk e2fsprogs cpio zstd kmod util-linux
      debootstrap arping python3-venv nfs-ganesha nfs-ganesha-vfs udpcast nftables
      chromium chromium-driver debian-installer-12-netboot-amd64 isc-dhcp-relay
      shim-signed grub-efi-amd64-signed grub-common sbsigntool qemu-system-arm qemu-efi-aarch64
      syslinux-common isolinux xorriso ltsp rpcbind smcroute)
VENV=${NETBOOT_VENV:-$PWD/.venv}

need_debs() {
    local missing=()
    for p in "${DEBS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$p")
    done
    if ((${#missing[@]})); then
        echo "bootstrap: installing Debian packages: ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        # nfs-ganesha, rpcbind, ltsp and smcroute are only for tests, run inside their own
        # namespaces: keep the host's services (enabled by the packages on systemd hosts) off
        if [ -d /run/systemd/system ]; then
            systemctl disable --now nfs-ganesha.service rpcbind.socket rpcbind.service \
                ltsp.service smcroute.service >/dev/null 2>&1 || true
        fi
    fi
}

need_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV"
    fi
    if ! "$VENV/bin/python" -c 'import netboot, aiohttp, tftpy, scapy, netifaces, pytest' \
            2>/dev/null || [ pyproject.toml -nt "$VENV/.netboot-installed" ]; then
        echo "bootstrap: installing netboot into $VENV" >&2
        "$VENV/bin/pip" install -q --upgrade pip >/dev/null
        "$VENV/bin/pip" install -q -e ".[test]"
        touch "$VENV/.netboot-installed"
    fi
}

if [ "$(id -u)" != 0 ]; then
    echo "bootstrap: run as root (it installs Debian packages and opens ports 67, 69, 80)" >&2
    exit 2
fi

job=${1:-setup}
shift || true
need_debs
need_venv
case "$job" in
    setup) echo "bootstrap: ready; activate with: . $VENV/bin/activate" ;;
    serve) exec "$VENV/bin/netboot" serve "$@" ;;
    test)  exec "$VENV/bin/python" -m pytest -p no:cacheprovider tests vm-tests "$@" ;;
    *) echo "bootstrap: unknown job '$job' (use serve, test or setup)" >&2; exit 2 ;;
esac

# netboot client library, sourced by the add-on's /scripts/netboot (initramfs-tools) and
# by the standalone /init. Packed as /netboot/lib.sh. Everything after "the kernel is up":
# kernel parameters, modules, network, fetching and checking the squashfs, the overlay
# and the client settings. Only busybox (our own static copy) is relied upon, so it works
# whatever the image's initramfs contains. The caller defines nb_die (one line + shell).
# shellcheck shell=sh

NB_BB=${NB_BB:-/netboot/bin/busybox}
NB_HOME=${NB_HOME:-/netboot}
NB_RUN=/run/netboot
NB_RETRIES=5
NB_STALL=60
NB_NFS_TIMEOUT=30

nb_say() {
	echo "netboot: $*"
}

# Kernel parameters, see docs/design.md; values may be double-quoted on the cmdline.
nb_parse_cmdline() {
	NB_METHOD=http NB_URL= NB_SIZE= NB_SHA256= NB_NFS= NB_PATH= NB_TORAM=0
	NB_SETTINGS= NB_SERVER= NB_IMAGE= NB_VERSION= NB_BOOTIF= NB_IP= NB_INIT= NB_TRANSFER=http
	for nb_arg in $(cat /proc/cmdline); do
		nb_value=${nb_arg#*=}
		nb_value=${nb_value#\"}
		nb_value=${nb_value%\"}
		case $nb_arg in
		netboot.method=*) NB_METHOD=$nb_value ;;
		netboot.url=*) NB_URL=$nb_value ;;
		netboot.transfer=*) NB_TRANSFER=$nb_value ;;
		netboot.size=*) NB_SIZE=$nb_value ;;
		netboot.sha256=*) NB_SHA256=$nb_value ;;
		netboot.nfs=*) NB_NFS=$nb_value ;;
		netboot.path=*) NB_PATH=$nb_value ;;
		netboot.toram=*) NB_TORAM=$nb_value ;;
		netboot.settings=*) NB_SETTINGS=$nb_value ;;
		netboot.server=*) NB_SERVER=$nb_value ;;
		netboot.image=*) NB_IMAGE=$nb_value ;;
		netboot.version=*) NB_VERSION=$nb_value ;;
		BOOTIF=*) NB_BOOTIF=$nb_value ;;
		ip=*) NB_IP=$nb_value ;;
		init=*) NB_INIT=$nb_value ;;
		esac
	done
	case $NB_METHOD in
	http | nfs) ;;
	*) nb_die "unknown netboot.method=$NB_METHOD (expected http or nfs)" ;;
	esac
	case $NB_SIZE in
	*[!0-9]*) nb_die "netboot.size=$NB_SIZE is not a number" ;;
	esac
	$NB_BB mkdir -p "$NB_RUN"
}

# Load the modules listed in /netboot/modules/$(uname -r)/order (paths, in dependency
# order), and for netboot.method=nfs those in nfs-order (the kernel's NFS client; the add-on
# carries them, initramfs-tools' MODULES=dep would leave them out). The image's own
# modprobe wins when it knows the module; our copy is the fallback.
nb_load_modules() {
	nb_kver=$($NB_BB uname -r)
	nb_dir=/netboot/modules/$nb_kver
	if [ ! -f "$nb_dir/order" ]; then
		nb_say "no bundled modules for kernel $nb_kver, relying on the initramfs"
	else
		nb_load_list "$nb_dir" order
	fi
	[ "$NB_METHOD" = nfs ] || return 0
	if [ -f "$nb_dir/nfs-order" ]; then
		nb_load_list "$nb_dir" nfs-order
	elif command -v modprobe >/dev/null 2>&1; then
		modprobe -q nfsv4 2>/dev/null
		modprobe -q nfsv3 2>/dev/null
	fi
	return 0
}

# nb_load_list DIR LIST: the modules named (as paths) in DIR/LIST, in that order.
nb_load_list() {
	while read -r nb_mod; do
		[ -n "$nb_mod" ] || continue
		nb_name=${nb_mod##*/}
		nb_name=${nb_name%%.ko*}
		nb_name=$(echo "$nb_name" | $NB_BB tr - _)
		[ -d "/sys/module/$nb_name" ] && continue
		if command -v modprobe >/dev/null 2>&1 && modprobe -q "$nb_name" 2>/dev/null; then
			continue
		fi
		$NB_BB insmod "$1/$nb_mod" 2>/dev/null || [ -d "/sys/module/$nb_name" ] ||
			nb_say "warning: could not load module $nb_name"
	done <"$1/$2"
}

# The interface to use: the BOOTIF MAC (01-aa-bb-...) if given, else the first Ethernet
# device that is not loopback. Waits for the driver to create it.
nb_find_netdev() {
	nb_mac=
	if [ -n "$NB_BOOTIF" ]; then
		nb_mac=$(echo "${NB_BOOTIF#??-}" | $NB_BB tr - : | $NB_BB tr A-F a-f)
	fi
	nb_tries=0
	while [ "$nb_tries" -lt 30 ]; do
		for nb_dev in /sys/class/net/*; do
			[ -e "$nb_dev/address" ] || continue
			[ "${nb_dev##*/}" = lo ] && continue
			if [ -n "$nb_mac" ]; then
				[ "$(cat "$nb_dev/address")" = "$nb_mac" ] || continue
			else
				[ "$(cat "$nb_dev/type" 2>/dev/null)" = 1 ] || continue
			fi
			NB_NETDEV=${nb_dev##*/}
			return 0
		done
		nb_tries=$((nb_tries + 1))
		$NB_BB sleep 1
	done
	return 1
}

# 255.255.254.0 -> 23 (a prefix length is passed through).
nb_mask_bits() {
	case $1 in *.*) ;; *) echo "$1" && return ;; esac
	nb_bits=0
	nb_old_ifs=$IFS
	IFS=.
	for nb_octet in $1; do
		case $nb_octet in
		255) nb_bits=$((nb_bits + 8)) ;; 254) nb_bits=$((nb_bits + 7)) ;;
		252) nb_bits=$((nb_bits + 6)) ;; 248) nb_bits=$((nb_bits + 5)) ;;
		240) nb_bits=$((nb_bits + 4)) ;; 224) nb_bits=$((nb_bits + 3)) ;;
		192) nb_bits=$((nb_bits + 2)) ;; 128) nb_bits=$((nb_bits + 1)) ;;
		esac
	done
	IFS=$nb_old_ifs
	echo "$nb_bits"
}

# ip=CLIENT:SERVER:GATEWAY:NETMASK:HOSTNAME:DEVICE:AUTOCONF with a client address: static.
nb_static_ip() {
	nb_old_ifs=$IFS
	IFS=:
	# shellcheck disable=SC2086
	set -- $NB_IP
	IFS=$nb_old_ifs
	[ -n "$1" ] || return 1
	[ -z "$6" ] || NB_NETDEV=$6
	$NB_BB ip link set "$NB_NETDEV" up || return 1
	$NB_BB ip addr add "$1/$(nb_mask_bits "${4:-255.255.255.0}")" dev "$NB_NETDEV" || return 1
	[ -z "$3" ] || $NB_BB ip route add default via "$3" dev "$NB_NETDEV" || return 1
	nb_say "static address $1 on $NB_NETDEV"
}

# Busybox udhcpc with our own event script (there is no /usr/share/udhcpc here).
nb_udhcpc() {
	$NB_BB ip link set "$NB_NETDEV" up
	nb_say "DHCP on $NB_NETDEV"
	$NB_BB udhcpc -i "$NB_NETDEV" -n -q -f -t 6 -T 3 -A 3 -s /netboot/udhcpc.script \
		-O hostname 2>&1 | while read -r nb_line; do nb_say "$nb_line"; done
	[ -s "$NB_RUN/net.conf" ]
}

# Configure the network unless an earlier stage (initramfs-tools' ipconfig) already did.
nb_network_up() {
	if [ -s "$NB_RUN/net.conf" ]; then
		return 0
	fi
	nb_find_netdev || nb_die "no network interface found${nb_mac:+ with MAC $nb_mac}"
	$NB_BB ip link set lo up 2>/dev/null
	case $NB_IP in
	*:*)
		nb_static_ip || nb_die "could not configure ip=$NB_IP on $NB_NETDEV"
		echo "NETDEV=$NB_NETDEV" >"$NB_RUN/net.conf"
		return 0
		;;
	esac
	nb_tries=0
	until nb_udhcpc; do
		nb_tries=$((nb_tries + 1))
		[ "$nb_tries" -ge 3 ] && nb_die "no DHCP answer on $NB_NETDEV"
	done
	# shellcheck disable=SC1091
	. "$NB_RUN/net.conf"
	nb_say "network up: $NETDEV $IPADDR/$PREFIX${ROUTER:+ via $ROUTER}"
}

# 1048576 -> "1 MiB", smaller sizes in bytes
nb_human() {
	if [ "$1" -ge 1048576 ]; then echo "$(($1 / 1048576)) MiB"; else echo "$1 bytes"; fi
}

nb_filesize() {
	$NB_BB stat -c %s "$1" 2>/dev/null || echo 0
}

# Run a copy/download in the background and print one progress line every 5 seconds.
# A transfer whose file stops growing for NB_STALL seconds is killed (and fails): busybox
# wget's own -T timeout crashes in Debian's busybox-static 1.35.
nb_with_progress() {
	nb_what=$1 nb_file=$2 nb_total=$3
	shift 3
	"$@" &
	nb_pid=$!
	nb_tick=0 nb_last=-1 nb_still=0
	while kill -0 "$nb_pid" 2>/dev/null; do
		$NB_BB sleep 1
		nb_tick=$((nb_tick + 1))
		nb_now=$(nb_filesize "$nb_file")
		if [ "$nb_now" = "$nb_last" ]; then
			nb_still=$((nb_still + 1))
			if [ "$nb_still" -ge "$NB_STALL" ]; then
				nb_say "$nb_what: no progress for ${NB_STALL}s, giving up on this try"
				kill "$nb_pid" 2>/dev/null
			fi
		else
			nb_still=0 nb_last=$nb_now
		fi
		if [ $((nb_tick % 5)) -eq 0 ]; then
			if [ -n "$nb_total" ] && [ "$nb_total" -gt 0 ]; then
				nb_say "$nb_what: $((nb_now / 1048576)) of $((nb_total / 1048576)) MiB"
			else
				nb_say "$nb_what: $((nb_now / 1048576)) MiB"
			fi
		fi
	done
	wait "$nb_pid"
}

# nb_fetch URL FILE SIZE TRIES: download with retries and backoff; resumes partial downloads.
nb_fetch() {
	nb_url=$1 nb_out=$2 nb_expect=$3 nb_max=${4:-$NB_RETRIES}
	nb_try=1
	nb_delay=2
	while :; do
		if nb_with_progress "fetching" "$nb_out" "$nb_expect" \
			$NB_BB wget -q -c -O "$nb_out" "$nb_url"; then
			return 0
		fi
		[ "$nb_try" -ge "$nb_max" ] && return 1
		nb_say "download of $nb_url failed (try $nb_try of $nb_max), retrying in ${nb_delay}s"
		$NB_BB sleep "$nb_delay"
		nb_try=$((nb_try + 1))
		nb_delay=$((nb_delay * 2))
	done
}

# A tmpfs for the image and the overlay's writable layer: /run itself is small under
# initramfs-tools (10% of RAM), so the image gets its own mount, sized to fit it plus
# half the RAM for writes. Nested under /run, it moves with /run into the booted system.
nb_ram_mount() {
	$NB_BB grep -q " $NB_RUN/ram " /proc/mounts && return 0
	$NB_BB mkdir -p "$NB_RUN/ram"
	nb_mem_kb=$($NB_BB awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
	nb_size_kb=$((nb_mem_kb / 2 + ${NB_SIZE:-0} / 1024 + 1024))
	[ "$nb_size_kb" -gt $((nb_mem_kb * 9 / 10)) ] && nb_size_kb=$((nb_mem_kb * 9 / 10))
	$NB_BB mount -t tmpfs -o "mode=0755,size=${nb_size_kb}k" netboot "$NB_RUN/ram" ||
		nb_die "cannot mount a tmpfs on $NB_RUN/ram"
}

# nb_image_problem FILE WITH_SHA256: why FILE is not netboot.size / netboot.sha256 (when
# given) on stdout, nothing when it is.
nb_image_problem() {
	if [ -n "$NB_SIZE" ]; then
		nb_have=$(nb_filesize "$1")
		[ "$nb_have" = "$NB_SIZE" ] || {
			echo "size mismatch for $1: expected $NB_SIZE bytes, got $nb_have"
			return
		}
	fi
	if [ -n "$NB_SHA256" ] && [ "$2" = 1 ]; then
		nb_have=$($NB_BB sha256sum "$1" | $NB_BB cut -d' ' -f1)
		[ "$nb_have" = "$(echo "$NB_SHA256" | $NB_BB tr A-F a-f)" ] ||
			echo "sha256 mismatch for ${NB_URL:-$1}: expected $NB_SHA256, got $nb_have"
	fi
}

# nb_check_image FILE WITH_SHA256: the same, fatal.
nb_check_image() {
	[ -z "$NB_SHA256" ] || [ "$2" != 1 ] || nb_say "checking sha256"
	nb_problem=$(nb_image_problem "$1" "$2")
	[ -z "$nb_problem" ] || nb_die "$nb_problem"
}

# nb_udp_receiver ARGS: the add-on's udp-receiver through its own loader and libraries
# (never the image's glibc, never a PT_INTERP path the image may lack).
nb_udp_receiver() {
	"$NB_HOME/lib/ld.so" --library-path "$NB_HOME/lib" "$NB_HOME/bin/udp-receiver" "$@"
}

# nb_get_multicast FILE: join the server's udpcast session for this image version and
# check the result. Fails (returning 1 with NB_MC_WHY set) on anything unusual: the caller
# falls back to HTTP.
nb_get_multicast() {
	NB_MC_WHY=
	[ -x "$NB_HOME/bin/udp-receiver" ] && [ -x "$NB_HOME/lib/ld.so" ] || {
		NB_MC_WHY="no udp-receiver in the add-on initrd"
		return 1
	}
	[ -n "$NB_SERVER" ] && [ -n "$NB_IMAGE" ] && [ -n "$NB_VERSION" ] || {
		NB_MC_WHY="netboot.server/image/version missing"
		return 1
	}
	NB_MC_PORTBASE= NB_MC_TTL=32 NB_MC_TIMEOUT=15 NB_MC_REASON= NB_MC_RDV=
	$NB_BB wget -q -O "$NB_RUN/multicast" "$NB_SERVER/multicast/$NB_IMAGE/$NB_VERSION" || {
		NB_MC_WHY="no answer from $NB_SERVER/multicast/"
		return 1
	}
	if $NB_BB grep -qvE "^NB_MC_[A-Z]+='[^']*'$" "$NB_RUN/multicast"; then
		NB_MC_WHY="unexpected answer from the server"
		return 1
	fi
	# shellcheck disable=SC1091
	. "$NB_RUN/multicast"
	case $NB_MC_PORTBASE,$NB_MC_TTL,$NB_MC_TIMEOUT in
	,* | *,,* | *, | *[!0-9,]*)
		NB_MC_WHY="server declined: ${NB_MC_REASON:-no port}"
		return 1
		;;
	esac
	# a routed rendez-vous group (boot.multicast_rdv_address): a dotted quad or nothing
	[ -z "$NB_MC_RDV" ] || echo "$NB_MC_RDV" | $NB_BB grep -qxE '([0-9]{1,3}\.){3}[0-9]{1,3}' || {
		NB_MC_WHY="unexpected rendez-vous address from the server"
		return 1
	}
	nb_dev=${NB_NETDEV:-$(nb_net_value NETDEV)}
	[ -n "$nb_dev" ] || nb_dev=$($NB_BB ip -o route get 224.0.0.1 2>/dev/null |
		$NB_BB sed -n 's/.* dev \([^ ]*\).*/\1/p')
	# without any route a multicast send fails with ENETUNREACH
	$NB_BB ip route add 224.0.0.0/4 dev "$nb_dev" 2>/dev/null
	nb_say "joining the multicast session on ports $NB_MC_PORTBASE-$((NB_MC_PORTBASE + 1))${NB_MC_RDV:+ (rendez-vous $NB_MC_RDV)}"
	nb_udp_receiver --file "$1" --interface "$nb_dev" --portbase "$NB_MC_PORTBASE" \
		--ttl "$NB_MC_TTL" ${NB_MC_RDV:+--mcast-rdv-address "$NB_MC_RDV"} --nokbd \
		--start-timeout "$NB_MC_TIMEOUT" --receive-timeout 5 \
		</dev/null >"$NB_RUN/udp-receiver.log" 2>&1 || {
		NB_MC_WHY="udp-receiver failed ($($NB_BB tail -n 1 "$NB_RUN/udp-receiver.log"))"
		return 1
	}
	nb_problem=$(nb_image_problem "$1" 1)
	[ -z "$nb_problem" ] || {
		NB_MC_WHY=$nb_problem
		return 1
	}
}

# HTTP method: the squashfs into RAM, checked. Sets NB_SQUASHFS.
nb_get_http() {
	[ -n "$NB_URL" ] || nb_die "netboot.url= is missing from the kernel command line"
	nb_ram_mount
	NB_SQUASHFS=$NB_RUN/ram/root.squashfs
	if [ "$NB_TRANSFER" = multicast ]; then
		if nb_get_multicast "$NB_SQUASHFS"; then
			nb_say "image received by multicast and verified"
			return 0
		fi
		nb_say "multicast failed, using HTTP: $NB_MC_WHY"
		$NB_BB rm -f "$NB_SQUASHFS"
	fi
	nb_say "fetching $NB_URL${NB_SIZE:+ ($(nb_human "$NB_SIZE"))}"
	nb_fetch "$NB_URL" "$NB_SQUASHFS" "$NB_SIZE" "$NB_RETRIES" ||
		nb_die "could not download $NB_URL after $NB_RETRIES tries"
	nb_check_image "$NB_SQUASHFS" 1
	nb_say "image fetched and verified"
}

# nb_bounded SECS COMMAND...: run COMMAND (a function too), killed (SIGKILL) after SECS
# seconds. busybox timeout would not do: it cannot run a shell function.
nb_bounded() {
	nb_secs=$1 nb_limit=$1
	shift
	"$@" &
	nb_cmd=$!
	(
		while [ "$nb_secs" -gt 0 ] && kill -0 "$nb_cmd" 2>/dev/null; do
			$NB_BB sleep 1
			nb_secs=$((nb_secs - 1))
		done
		kill -9 "$nb_cmd" 2>/dev/null && nb_say "gave up on $1 after ${nb_limit}s"
	) &
	nb_dog=$!
	wait "$nb_cmd"
	nb_rc=$?
	kill "$nb_dog" 2>/dev/null
	return "$nb_rc"
}

# nb_mount_nfs4 SERVER:/EXPORT DIR ADDR: NFSv4, one TCP connection to port 2049 (no
# portmapper, no mountd: what nfs-ganesha and firewalled servers offer). busybox has no NFS
# helper of its own, so its mount hands the options to the kernel, which wants the server
# as addr= (and clientaddr= for NFSv4.0 callbacks). Bounded: a server that drops port 2049
# must not hang the boot before NFSv3 is tried.
nb_mount_nfs4() {
	nb_bounded "$NB_NFS_TIMEOUT" $NB_BB mount -t nfs4 \
		-o "ro,addr=$3${IPADDR:+,clientaddr=$IPADDR}" "$1" "$2"
}

# nb_mount_nfs3 SERVER:/EXPORT DIR ADDR: NFSv3 as LTSP mounts it, with the initramfs's klibc
# nfsmount (which asks the server's portmapper, and keeps asking one that is not there:
# bounded too), else through busybox mount (the kernel asks the portmapper itself; it needs
# the address, so not for a host name).
nb_mount_nfs3() {
	if command -v nfsmount >/dev/null 2>&1; then
		nb_bounded "$NB_NFS_TIMEOUT" nfsmount -o ro,nolock "$1" "$2"
	elif [ -n "$3" ]; then
		nb_bounded "$NB_NFS_TIMEOUT" $NB_BB mount -t nfs -o "ro,nolock,vers=3,addr=$3" "$1" "$2"
	else
		return 1
	fi
}

# nb_net_value KEY: a value from net.conf (KEY='value'), whichever stage wrote it.
nb_net_value() {
	[ -s "$NB_RUN/net.conf" ] && $NB_BB sed -n "s/^$1='\(.*\)'$/\1/p" "$NB_RUN/net.conf"
}

# NFSv4.1 and later name a client to the server by its host name, which is "(none)" in
# every initramfs: clients booting together would take over each other's client ID (and
# state) or be refused. The NIC's MAC makes the name unique (nfs4_unique_id).
nb_nfs_client_id() {
	nb_id_file=/sys/module/nfs/parameters/nfs4_unique_id
	[ -w "$nb_id_file" ] && [ -z "$(cat "$nb_id_file" 2>/dev/null)" ] || return 0
	nb_dev=$(nb_net_value NETDEV)
	[ -n "$nb_dev" ] && [ -r "/sys/class/net/$nb_dev/address" ] || return 0
	echo "netboot-$(cat "/sys/class/net/$nb_dev/address")" >"$nb_id_file"
}

# Mount netboot.nfs read-only at $1: NFSv4 first when the server is an IPv4 address, then
# NFSv3.
nb_mount_nfs() {
	nb_host=${NB_NFS%%:*}
	nb_addr=
	case $nb_host in
	"" | *[!0-9.]*) ;;
	*) nb_addr=$nb_host ;;
	esac
	[ -n "$IPADDR" ] || IPADDR=$(nb_net_value IPADDR)
	nb_nfs_client_id
	if [ -n "$nb_addr" ]; then
		if nb_mount_nfs4 "$NB_NFS" "$1" "$nb_addr"; then
			nb_say "mounted $NB_NFS over NFSv4"
			return 0
		fi
		nb_say "NFSv4 mount of $NB_NFS failed, trying NFSv3"
	fi
	nb_mount_nfs3 "$NB_NFS" "$1" "$nb_addr" || return 1
	nb_say "mounted $NB_NFS over NFSv3"
}

# NFS method (LTSP's chain): mount the export read-only, then use the squashfs in place or
# copy it to RAM first (netboot.toram=1). Sets NB_SQUASHFS.
nb_get_nfs() {
	[ -n "$NB_NFS" ] || nb_die "netboot.nfs=SERVER:/export is missing from the kernel command line"
	[ -n "$NB_PATH" ] || nb_die "netboot.path= is missing from the kernel command line"
	$NB_BB mkdir -p "$NB_RUN/nfs"
	nb_say "mounting $NB_NFS"
	nb_mount_nfs "$NB_RUN/nfs" ||
		nb_die "could not mount NFS export $NB_NFS (tried NFSv4 and NFSv3)"
	NB_SQUASHFS=$NB_RUN/nfs/${NB_PATH#/}
	[ -f "$NB_SQUASHFS" ] || nb_die "$NB_PATH not found in NFS export $NB_NFS"
	if [ "$NB_TORAM" = 1 ]; then
		nb_ram_mount
		[ -n "$NB_SIZE" ] || NB_SIZE=$(nb_filesize "$NB_SQUASHFS")
		nb_say "copying $NB_PATH to RAM ($(nb_human "$NB_SIZE"))"
		nb_with_progress "copying" "$NB_RUN/ram/root.squashfs" "$NB_SIZE" \
			$NB_BB cp "$NB_SQUASHFS" "$NB_RUN/ram/root.squashfs" ||
			nb_die "could not copy $NB_PATH to RAM"
		$NB_BB umount "$NB_RUN/nfs"
		NB_SQUASHFS=$NB_RUN/ram/root.squashfs
		nb_check_image "$NB_SQUASHFS" 1
	else
		# no sha256 here: it would read the whole image over the network once more
		nb_check_image "$NB_SQUASHFS" 0
	fi
}

# Loop-mount the squashfs read-only and put a tmpfs overlay on top at $1.
nb_mount_overlay() {
	nb_target=$1
	nb_ram_mount
	$NB_BB mkdir -p "$NB_RUN/ro" "$NB_RUN/ram/upper" "$NB_RUN/ram/work" "$nb_target"
	nb_loop=$($NB_BB losetup -f) || nb_die "no free loop device (is the loop module loaded?)"
	$NB_BB losetup -r "$nb_loop" "$NB_SQUASHFS" || nb_die "losetup $nb_loop $NB_SQUASHFS failed"
	$NB_BB mount -t squashfs -o ro "$nb_loop" "$NB_RUN/ro" ||
		nb_die "could not mount the squashfs (is the squashfs module available?)"
	$NB_BB mount -t overlay -o \
		"lowerdir=$NB_RUN/ro,upperdir=$NB_RUN/ram/upper,workdir=$NB_RUN/ram/work" \
		overlay "$nb_target" || nb_die "could not mount the overlay (is the overlay module available?)"
	nb_say "root is the image with a tmpfs overlay"
}

# The kernel's hostname, for an init that does not read /etc/hostname itself.
nb_set_hostname() {
	$NB_BB hostname "$1"
}

# Client settings: a shell fragment of NETBOOT_*='...' assignments from netboot.settings.
# A missing or broken fragment is a warning, not a failure: the image still boots.
nb_apply_settings() {
	nb_root=$1
	[ -n "$NB_SETTINGS" ] || return 0
	nb_settings=$NB_RUN/settings
	nb_fetch "$NB_SETTINGS" "$nb_settings.tmp" "" 2 || {
		nb_say "warning: could not fetch settings from $NB_SETTINGS"
		return 0
	}
	if $NB_BB grep -qvE "^(NETBOOT_[A-Z0-9_]+=.*|#.*|)$" "$nb_settings.tmp" ||
		! $NB_BB sh -n "$nb_settings.tmp"; then
		nb_say "warning: ignoring settings from $NB_SETTINGS: not a NETBOOT_* shell fragment"
		return 0
	fi
	$NB_BB mv "$nb_settings.tmp" "$nb_settings"
	# shellcheck disable=SC1090
	. "$nb_settings"
	$NB_BB mkdir -p "$nb_root/etc/netboot"
	$NB_BB cp "$nb_settings" "$nb_root/etc/netboot/settings"
	if [ -n "$NETBOOT_HOSTNAME" ]; then
		echo "$NETBOOT_HOSTNAME" >"$nb_root/etc/hostname"
		if [ -f "$nb_root/etc/hosts" ]; then
			$NB_BB sed -i '/^127\.0\.1\.1[[:space:]]/d' "$nb_root/etc/hosts"
		fi
		printf '127.0.1.1\t%s\n' "$NETBOOT_HOSTNAME" >>"$nb_root/etc/hosts"
		nb_set_hostname "$NETBOOT_HOSTNAME"
		nb_say "hostname $NETBOOT_HOSTNAME"
	fi
	if [ -n "$NETBOOT_ROOT_PASSWORD_HASH" ] && [ -f "$nb_root/etc/shadow" ]; then
		NB_HASH=$NETBOOT_ROOT_PASSWORD_HASH $NB_BB awk -F: -v OFS=: \
			'$1 == "root" { $2 = ENVIRON["NB_HASH"] } { print }' \
			"$nb_root/etc/shadow" >"$NB_RUN/shadow" &&
			cat "$NB_RUN/shadow" >"$nb_root/etc/shadow" &&
			nb_say "root password set"
		$NB_BB rm -f "$NB_RUN/shadow"
	fi
}

# Everything between "network is up" and "root is mounted at $1".
nb_mount_root() {
	nb_target=$1
	case $NB_METHOD in
	http) nb_get_http ;;
	nfs) nb_get_nfs ;;
	esac
	nb_mount_overlay "$nb_target"
	nb_apply_settings "$nb_target"
}

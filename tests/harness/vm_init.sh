#!/bin/bash
# PID 1 of a Linux test VM. tests/harness/fakevm.py starts it as
#   ip netns exec clave-vmN unshare --mount --uts --pid --fork --kill-child=SIGTERM \
#       --mount-proc --propagation private vm_init.sh STATE_DIR NAME IP ADMIN_UID
# so everything mounted here is private to the VM, and when this script exits the kernel
# kills every process left in the VM (nohup, setsid and double forks included).
#
# Inside, the VM looks like a provisioned Tart guest: user admin/admin with passwordless
# sudo, sshd on the VM address, nginx + php-fpm serving /srv/project/public, and the
# virtio-fs shares listed in STATE_DIR/shares.tsv (TAG<TAB>NAME|.<TAB>HOST_PATH) NOT mounted:
# like on Tart, `sudo mount -t virtiofs TAG DIR` mounts one (through the mount.virtiofs
# stand-in installed below) and an unknown tag fails as the real kernel makes it fail.
# An unnamed share is the root of its tag's mount; named shares (Tart's multiple-directory
# share) appear as DIR/NAME.
# Host files are never modified: /etc, /var and /usr are overlays whose upper dirs live
# in STATE_DIR; /run, /tmp, /home, /root and /srv are per-VM tmpfs.
set -euo pipefail

STATE=$1 NAME=$2 IP=$3 ADMIN_UID=$4
META=/run/clave-fakevm           # the VM's own bookkeeping (shares, fake kernel log)

log() { printf '[vm_init %s] %s\n' "$(date +%T.%3N)" "$*"; }

# Guest shutdown (`kill -TERM 1`, the shutdown/poweroff stand-ins, or the host's SIGTERM):
# ask every process to stop, give them a moment, then exit; the kernel SIGKILLs the rest.
shutdown_vm() {
    log "shutdown requested"
    trap - TERM INT HUP
    kill -TERM -1 2>/dev/null || true
    for _ in {1..40}; do
        others_running || break
        sleep 0.05
    done
    log "power off"
    exit 0
}
# any live (non-zombie) process in the VM besides PID 1; builtins only, so no fork counts
others_running() {
    local p line
    for p in /proc/[0-9]*; do
        [ "${p#/proc/}" != 1 ] || continue
        read -r line <"$p/stat" 2>/dev/null || continue
        line=${line##*) }
        [ "${line%% *}" = Z ] || return 0
    done
    return 1
}
trap shutdown_vm TERM INT HUP

# ---- 1. filesystem. /run first (nothing we need lives under the host's /run), then the
#         shares and overlays, whose host paths the /tmp, /home and /root tmpfs will hide.
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p "$META/virtiofs" /run/lock /run/sshd /run/php
: >"$META/virtiofs.tsv"
while IFS=$'\t' read -r tag name path; do
    root="$META/virtiofs/$tag"
    [ -d "$root" ] || printf '%s\t%s\n' "$tag" "$root" >>"$META/virtiofs.tsv"
    mkdir -p "$root/$name"
    mount --bind "$path" "$root/$name"
done <"$STATE/shares.tsv"
for d in etc var usr; do
    mkdir -p "$STATE/$d.upper" "$STATE/$d.work"
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=$STATE/$d.upper,workdir=$STATE/$d.work" "/$d"
done
mount -t tmpfs -o mode=755 tmpfs /srv
mkdir /srv/project                       # the provisioned image's empty mount point
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=755 tmpfs /home
mount -t tmpfs -o mode=700 tmpfs /root
hostname "$NAME"
date +%s.%N >"$META/booted"
printf '[    0.000000] Linux version 6.8.0-clave-fakevm (Linux test VM: namespaces, not a kernel)\n' >"$META/dmesg"
log "filesystem ready"

# ---- 2. provisioning, in this VM's overlays only
# admin gets the uid that owns the project files (gotcha: a host user with that uid is
# deleted in this VM's /etc only, or `id` would print the wrong name)
other=$(getent passwd "$ADMIN_UID" | cut -d: -f1 || true)
[ -z "$other" ] || userdel "$other"
useradd -m -u "$ADMIN_UID" -U -G sudo -s /bin/bash admin
echo 'admin:admin' | chpasswd
install -d -o admin -g admin /home/admin/.local /home/admin/.local/bin
echo 'admin ALL=(ALL) NOPASSWD:ALL' >/etc/sudoers.d/admin
chmod 440 /etc/sudoers.d/admin
echo "$NAME" >/etc/hostname
printf '127.0.0.1 localhost\n%s %s\n' "$IP" "$NAME" >/etc/hosts

# Ubuntu's PATH for every login (Debian's leaves /usr/sbin out for users)
echo 'PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/games:/usr/local/games:/snap/bin"' >/etc/environment

# stand-ins for the kernel's virtio-fs, its log and power-off (the host's shutdown, poweroff
# and halt are symlinks to systemctl: replace the links, never write through them)
rm -f /usr/sbin/mount.virtiofs /usr/bin/dmesg /usr/sbin/shutdown /usr/sbin/poweroff /usr/sbin/halt
cat >/usr/sbin/mount.virtiofs <<'EOF'
#!/bin/sh
# Stand-in for the virtio-fs driver: mount(8) runs `mount.virtiofs TAG DIR [-o OPTS]`.
# A known tag becomes a bind mount of the host directory shared under it; an unknown one
# fails like the kernel (EINVAL + "virtio-fs: tag <TAG> not found" in the kernel log).
tag=$1 dir=$2 ro=
shift 2
while [ $# -gt 0 ]; do
    case $1 in -o) case ",$2," in *,ro,*) ro=-r ;; esac; shift 2 ;; *) shift ;; esac
done
src=$(awk -F '\t' -v t="$tag" '$1 == t { print $2; exit }' /run/clave-fakevm/virtiofs.tsv)
if [ -z "$src" ]; then
    now=$(date +%s.%N)
    awk -v b="$(cat /run/clave-fakevm/booted)" -v n="$now" -v t="$tag" \
        'BEGIN { printf "[%12.6f] virtio-fs: tag <%s> not found\n", n - b, t }' \
        >>/run/clave-fakevm/dmesg
    echo "mount: $dir: wrong fs type, bad option, bad superblock on $tag, missing codepage or helper program, or other error." >&2
    echo "       dmesg(1) may have more information after failed mount system call." >&2
    exit 32
fi
if mountpoint -q "$dir"; then
    echo "mount: $dir: $tag already mounted on $dir." >&2
    exit 32
fi
exec mount --rbind $ro "$src" "$dir"
EOF
cat >/usr/bin/dmesg <<'EOF'
#!/bin/sh
# Stand-in for dmesg: this VM has no kernel of its own, only the lines its stand-ins log.
# Like Ubuntu (kernel.dmesg_restrict=1), reading it needs root.
if [ "$(id -u)" != 0 ]; then
    echo "dmesg: read kernel buffer failed: Operation not permitted" >&2
    exit 1
fi
cat /run/clave-fakevm/dmesg
EOF
cat >/usr/sbin/shutdown <<'EOF'
#!/bin/sh
# Stand-in for shutdown/poweroff/halt: a guest power-off is PID 1 exiting on SIGTERM.
if [ "$(id -u)" != 0 ]; then
    echo "Call to PowerOff failed: Access denied" >&2
    exit 1
fi
for arg in "$@"; do
    case $arg in -r | --reboot) echo "reboot is not supported in the Linux test VM" >&2; exit 1 ;; esac
done
kill -TERM 1
EOF
chmod 755 /usr/sbin/mount.virtiofs /usr/bin/dmesg /usr/sbin/shutdown
ln -s shutdown /usr/sbin/poweroff
ln -s shutdown /usr/sbin/halt

# sshd: password login on the VM address with a host key of its own (ephemeral VMs get
# new keys); AcceptEnv stays as Debian ships it (LANG LC_*)
rm -f /etc/ssh/ssh_host_*
ssh-keygen -q -t ed25519 -N '' -C "root@$NAME" -f /etc/ssh/ssh_host_ed25519_key
cat >/etc/ssh/sshd_config.d/clave-fakevm.conf <<EOF
ListenAddress $IP
HostKey /etc/ssh/ssh_host_ed25519_key
PasswordAuthentication yes
KbdInteractiveAuthentication yes
AllowTcpForwarding yes
UseDNS no
EOF

cat >/etc/nginx/sites-available/default <<'EOF'
server {
    listen 80 default_server;
    root /srv/project/public;
    index index.php index.html;
    server_name _;
    location / {
        try_files $uri $uri/ /index.php?$query_string;
    }
    location ~ \.php$ {
        include snippets/fastcgi-php.conf;
        fastcgi_pass unix:/run/php/php8.2-fpm.sock;
    }
}
EOF
log "provisioned"

# ---- 3. services in the foreground, children of this PID 1 (`service X restart` also
#         works: the init scripts' daemons re-parent to us and die with the VM).
#         php-fpm and nginx come up before sshd, so once SSH answers the web stack does
#         too and tests need not poll both.
/usr/sbin/php-fpm8.2 --nodaemonize --fpm-config /etc/php/8.2/fpm/php-fpm.conf </dev/null &
for _ in {1..500}; do
    [ -S /run/php/php8.2-fpm.sock ] && break
    sleep 0.01
done
/usr/sbin/nginx -g 'daemon off;' </dev/null &
for _ in {1..500}; do
    [ -s /run/nginx.pid ] && break
    sleep 0.01
done
/usr/sbin/sshd -D -e </dev/null &
log "services started"

# ---- 4. PID 1's duty: stay up and reap orphans (bash's SIGCHLD handler reaps any child)
while :; do
    sleep 3600 &
    wait $! || true
done

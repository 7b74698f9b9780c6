#!/usr/bin/env bash
# Builds the NovaCron guest image: Debian's kernel + a busybox initramfs running the
# nc-workload program, plus an empty qcow2 data disk. See images/README.md.
#
# Usage: images/build.sh [--out DIR] [--force]
#   --out DIR  where images go (default: <repo>/.cache/images); the image lands in
#              DIR/guest-<first 16 hex of the inputs hash>/
#   --force    rebuild even when that directory already holds a complete image
#
# Progress goes to stderr; the last line of stdout is the absolute path of manifest.json.
# Exit codes: 0 ok, 1 build failure, 2 a required host package is missing (the message
# names the apt-get command), 64 bad usage.
set -euo pipefail
export LC_ALL=C
umask 022

# Everything but the final manifest path goes to stderr.
exec 3>&1 1>&2

log() { printf 'images/build.sh: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
usage() {
  sed -n '5,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(cd "$script_dir/.." && pwd)
guest_dir="$script_dir/guest"
out_dir="$repo_dir/.cache/images"
force=0

while [ $# -gt 0 ]; do
  case "$1" in
    --out)
      [ $# -ge 2 ] || {
        usage
        exit 64
      }
      out_dir=$2
      shift 2
      ;;
    --out=*)
      out_dir=${1#--out=}
      shift
      ;;
    --force)
      force=1
      shift
      ;;
    -h | --help)
      usage >&3
      exit 0
      ;;
    *)
      log "unknown argument: $1"
      usage
      exit 64
      ;;
  esac
done

# Guest modules we need (dependencies are added automatically; built-ins are skipped):
# virtio-blk-pci for /dev/vda, ACPI power button + evdev for graceful shutdown.
WANT_MODULES=(virtio_pci virtio_blk button evdev)
BUSYBOX_APPLETS=(sh mount cat echo sleep insmod ls dmesg mkdir kill poweroff)
DISK_SIZE=64M
CMDLINE="console=ttyS0 loglevel=3 quiet panic=-1"
MIN_MEMORY_MIB=128

# ------------------------------------------------------------------ host tools ----------
missing_pkgs=()
need_cmd() { # command package
  command -v "$1" >/dev/null 2>&1 || missing_pkgs+=("$2")
}
pkg_installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}
need_cmd dpkg-query dpkg
need_cmd sha256sum coreutils
need_cmd gzip gzip
need_cmd modinfo kmod
need_cmd flock util-linux
need_cmd qemu-img qemu-utils
need_cmd cpio cpio
need_cmd gcc gcc
if ! pkg_installed busybox-static || [ ! -x /bin/busybox ]; then
  missing_pkgs+=(busybox-static)
fi
kver=""
if pkg_installed linux-image-amd64; then
  kpkg=$(dpkg-query -W -f='${Depends}' linux-image-amd64 | grep -o 'linux-image-[^ ,(]*' | head -n1 || true)
  kver=${kpkg#linux-image-}
  kver=${kver%-unsigned}
fi
if [ -z "$kver" ] || [ ! -r "/boot/vmlinuz-$kver" ] || [ ! -d "/lib/modules/$kver" ]; then
  missing_pkgs+=(linux-image-amd64)
fi
if command -v gcc >/dev/null 2>&1 && [ "$(gcc -print-file-name=libc.a)" = libc.a ]; then
  missing_pkgs+=(libc6-dev)
fi
if [ ${#missing_pkgs[@]} -gt 0 ]; then
  log "missing host packages: ${missing_pkgs[*]}"
  log "install them with: apt-get install -y ${missing_pkgs[*]}"
  exit 2
fi

# ------------------------------------------------------------------ inputs hash ---------
pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo none; }
inputs() {
  echo "novacron-guest inputs v1"
  echo "file build.sh $(sha256sum <"$script_dir/build.sh" | cut -d' ' -f1)"
  local f
  while IFS= read -r -d '' f; do
    echo "file guest/${f#"$guest_dir"/} $(sha256sum <"$f" | cut -d' ' -f1)"
  done < <(find "$guest_dir" -type f -print0 | sort -z)
  echo "kernel $kver $(pkg_version "linux-image-$kver") meta $(pkg_version linux-image-amd64)"
  echo "busybox-static $(pkg_version busybox-static)"
  echo "gcc $(gcc --version | sed -n 1p) libc6-dev $(pkg_version libc6-dev)"
  echo "cpio $(pkg_version cpio) gzip $(pkg_version gzip) qemu-utils $(pkg_version qemu-utils)"
}
inputs_hash=$(inputs | sha256sum | cut -d' ' -f1)
name="guest-${inputs_hash:0:16}"

mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)
final="$out_dir/$name"
manifest="$final/manifest.json"

image_complete() { # dir
  [ -s "$1/manifest.json" ] &&
    grep -q "\"inputsHash\": \"$inputs_hash\"" "$1/manifest.json" &&
    [ -s "$1/vmlinuz" ] && [ -s "$1/initrd.img" ] && [ -s "$1/disk.qcow2" ]
}

if [ "$force" = 0 ] && image_complete "$final"; then
  log "cache hit: $final"
  echo "$manifest" >&3
  exit 0
fi

# One builder at a time per output dir; a concurrent caller waits, then usually hits.
exec 9>"$out_dir/.build.lock"
flock 9
if [ "$force" = 0 ] && image_complete "$final"; then
  log "cache hit (built concurrently): $final"
  echo "$manifest" >&3
  exit 0
fi
# We hold the lock, so any temp dir left here is from a killed build.
# (|| true: an orphaned child of a killed build may still be writing into one.)
rm -rf "$out_dir"/.tmp-guest-* "$out_dir"/.old-guest-* 2>/dev/null || true

tmp=$(mktemp -d "$out_dir/.tmp-$name-XXXXXX")
chmod 0755 "$tmp"
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT
start=$(date +%s.%N)
log "building $name (kernel $kver) in $tmp"
stage="$tmp/root"
mkdir -p "$stage"/{bin,dev,proc,sys,run,etc,lib/modules,tmp}

# busybox (static) and the applets /init uses
install -m 0755 /bin/busybox "$stage/bin/busybox"
for applet in "${BUSYBOX_APPLETS[@]}"; do
  ln -s busybox "$stage/bin/$applet"
done

# the workload: static, stripped, built from a relative path so no build path leaks in
log "compiling workload.c"
(
  cd "$guest_dir"
  gcc -static -O2 -pthread -Wall -Wextra -s -fno-ident -ffile-prefix-map="$guest_dir"=. \
    -o "$stage/bin/nc-workload" workload.c
)

# kernel modules, dependencies first (modinfo -F depends), decompressed for busybox insmod
declare -A mod_seen=()
mod_order=()
add_module() { # name
  local m=$1 file deps d
  [ -z "${mod_seen[$m]:-}" ] || return 0
  mod_seen[$m]=1
  file=$(modinfo -k "$kver" -n "$m" 2>/dev/null) || die "kernel $kver has no module $m"
  if [ "$file" = "(builtin)" ]; then
    log "module $m is built in"
    return 0
  fi
  deps=$(modinfo -k "$kver" -F depends "$m")
  for d in ${deps//,/ }; do
    add_module "$d"
  done
  case "$file" in
    *.ko) cp "$file" "$stage/lib/modules/$m.ko" ;;
    *.ko.xz) xz -dc "$file" >"$stage/lib/modules/$m.ko" ;;
    *.ko.zst) zstd -qdc "$file" >"$stage/lib/modules/$m.ko" ;;
    *.ko.gz) gzip -dc "$file" >"$stage/lib/modules/$m.ko" ;;
    *) die "unexpected module file $file" ;;
  esac
  mod_order+=("$m")
}
for m in "${WANT_MODULES[@]}"; do
  add_module "$m"
done
printf '%s\n' "${mod_order[@]}" >"$stage/etc/nc-modules"
log "modules: ${mod_order[*]}"

install -m 0755 "$guest_dir/init" "$stage/init"

# normalise metadata, then pack: sorted names, uid/gid 0, mtime 0, renumbered inodes
find "$stage" -type d -exec chmod 0755 {} +
find "$stage" -type f ! -perm -u+x -exec chmod 0644 {} +
find "$stage" -type f -perm -u+x -exec chmod 0755 {} +
chmod 1777 "$stage/tmp"
find "$stage" -exec touch -h -d @0 {} +
log "packing initrd"
(
  cd "$stage"
  find . -mindepth 1 -printf '%P\0' | sort -z |
    cpio --null --create --format=newc --reproducible --owner=0:0 --quiet
) | gzip -n -9 >"$tmp/initrd.img"

# The kernel: Debian's bzImage decompresses itself, which takes ~2.5 s under TCG. We
# extract the uncompressed ELF vmlinux instead; QEMU boots it directly through the PVH
# entry point (CONFIG_PVH) with the same -kernel/-initrd/-append options. Falls back to
# the bzImage when anything about the extraction looks wrong.
le_u() { # file offset bytes -> unsigned little-endian integer
  od -An -tu"$3" -j "$2" -N "$3" "$1" | tr -d ' \n'
}
bytes_at() { # file offset count -> raw bytes (dd: no SIGPIPE under pipefail)
  dd if="$1" iflag=skip_bytes,count_bytes skip="$2" count="$3" bs=1M status=none
}
extract_pvh_vmlinux() { # bzImage out
  local bz=$1 out=$2 proto setup_sects poff plen start size magic
  [ "$(od -An -c -j $((0x202)) -N4 "$bz" | tr -d ' \n')" = HdrS ] || return 1
  proto=$(le_u "$bz" $((0x206)) 2)
  [ "$proto" -ge $((0x208)) ] || return 1
  setup_sects=$(le_u "$bz" $((0x1f1)) 1)
  poff=$(le_u "$bz" $((0x248)) 4)
  plen=$(le_u "$bz" $((0x24c)) 4)
  start=$(((setup_sects + 1) * 512 + poff))
  # payload = compressed stream + le32 uncompressed size (the kernel's size_append)
  size=$(le_u "$bz" $((start + plen - 4)) 4)
  magic=$(bytes_at "$bz" "$start" 4 | od -An -tx1 | tr -d ' \n')
  local -a dec
  case "$magic" in
    fd377a58) dec=(xz -dc) ;;
    28b52ffd) dec=(zstd -qdc) ;;
    1f8b*) dec=(gzip -dc) ;;
    *) return 1 ;;
  esac
  command -v "${dec[0]}" >/dev/null 2>&1 || return 1
  bytes_at "$bz" "$start" $((plen - 4)) | "${dec[@]}" >"$out" || return 1
  [ "$(stat -c %s "$out")" = "$size" ] || return 1
  [ "$(bytes_at "$out" 0 4 | od -An -tx1 | tr -d ' \n')" = 7f454c46 ] || return 1
  # XEN_ELFNOTE_PHYS32_ENTRY (18) marks a PVH-bootable kernel
  command -v readelf >/dev/null 2>&1 || return 1
  local notes
  notes=$(readelf -n "$out") || return 1
  grep -qE 'Xen[[:space:]]+0x[0-9a-f]+[[:space:]]+(Unknown note type: \(0x00000012\)|.*PHYS32)' <<<"$notes"
}
kernel_format=elf-pvh
if ! extract_pvh_vmlinux "/boot/vmlinuz-$kver" "$tmp/vmlinuz"; then
  log "warning: could not extract a PVH vmlinux; shipping the bzImage (slower boot)"
  install -m 0644 "/boot/vmlinuz-$kver" "$tmp/vmlinuz"
  kernel_format=bzimage
fi
chmod 0644 "$tmp/vmlinuz"
qemu-img create -q -f qcow2 "$tmp/disk.qcow2" "$DISK_SIZE" >&2
chmod 0644 "$tmp/disk.qcow2"
rm -rf "$stage"

cat >"$tmp/manifest.json" <<EOF
{
  "name": "novacron-guest",
  "inputsHash": "$inputs_hash",
  "kernel": "vmlinuz",
  "kernelFormat": "$kernel_format",
  "initrd": "initrd.img",
  "disk": "disk.qcow2",
  "diskFormat": "qcow2",
  "cmdline": "$CMDLINE",
  "minMemoryMiB": $MIN_MEMORY_MIB
}
EOF

# publish atomically: a killed build never leaves a half-built guest-* directory
if [ -e "$final" ]; then
  old=$(mktemp -d "$out_dir/.old-$name-XXXXXX")
  mv -T "$final" "$old/x"
  mv -T "$tmp" "$final"
  rm -rf "$old"
else
  mv -T "$tmp" "$final"
fi
trap - EXIT
log "built $final in $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s"
echo "$manifest" >&3

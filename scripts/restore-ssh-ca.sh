#!/usr/bin/env bash
# Restore Watchgrid's SSH CA keys from a backup made by scripts/backup-ssh-ca.sh.
# The integrity tag is checked BEFORE anything is decrypted or written: a tampered, truncated
# or wrong-passphrase backup is refused and the CA directory is left as it was.
# See docs/ssh-ca.md#backup--restore.
#
# Usage: restore-ssh-ca.sh [--force] BACKUP_FILE
#   --force  replace ca_* files that exist and differ from the backup (by default the restore
#            refuses, naming them, so a newer key is never overwritten by accident)
#
# Environment: WATCHGRID_SSH_CA_DIR (default /etc/watchgrid) and
# WATCHGRID_SSH_CA_BACKUP_PASSPHRASE_FILE (default /etc/watchgrid-backup/passphrase), as for
# the backup. The running server picks the restored files up by itself (its `ssh_ca` health
# check turns `ok`); no restart is needed.
set -euo pipefail
umask 077

die() { printf 'restore-ssh-ca.sh: %s\n' "$*" >&2; exit 1; }

force=0
if [ "${1:-}" = "--force" ]; then force=1; shift; fi
[ $# -eq 1 ] || { printf 'usage: restore-ssh-ca.sh [--force] BACKUP_FILE\n' >&2; exit 2; }
backup=$1
ca_dir=${WATCHGRID_SSH_CA_DIR:-/etc/watchgrid}
pass_file=${WATCHGRID_SSH_CA_BACKUP_PASSPHRASE_FILE:-/etc/watchgrid-backup/passphrase}
script_dir=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/ssh-ca-backup-lib.sh
. "$script_dir/ssh-ca-backup-lib.sh"

[ -f "$backup" ] || die "backup file $backup does not exist"
check_passphrase_file "$pass_file"
mkdir -p "$ca_dir"
chmod 0700 "$ca_dir"
work=$(mktemp -d "$ca_dir/.restore-XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- the header and the integrity tag ------------------------------------------------------------
head -n 4 "$backup" > "$work/head" 2>/dev/null || die "$backup is not a Watchgrid SSH CA backup"
mapfile -t lines < "$work/head"
[ "${lines[0]:-}" = "WATCHGRID-SSH-CA-BACKUP 1" ] || die "$backup is not a Watchgrid SSH CA backup (format 1)"
[[ ${lines[1]:-} =~ ^iter\ ([0-9]+)$ ]] || die "$backup: damaged header (iter)"
iter=${BASH_REMATCH[1]}
(( iter >= 10000 )) || die "$backup: damaged header (iter $iter)"
[[ ${lines[2]:-} =~ ^mac-salt\ ([0-9a-f]{16})$ ]] || die "$backup: damaged header (mac-salt)"
mac_salt=${BASH_REMATCH[1]}
[[ ${lines[3]:-} =~ ^hmac-sha256\ ([0-9a-f]{64})$ ]] || die "$backup: damaged header (hmac-sha256)"
expected=${BASH_REMATCH[1]}
header_len=$(head -n 3 "$backup" | wc -c)
offset=$(head -n 4 "$backup" | wc -c)
mac_key=$(derive_mac_key "$pass_file" "$mac_salt" "$iter")
actual=$({ head -c "$header_len" "$backup"; tail -c +"$((offset + 1))" "$backup"; } | hmac_sha256 "$mac_key")
[ "$actual" = "$expected" ] \
  || die "$backup FAILED its integrity check (tampered, truncated, or another passphrase): nothing was restored"

# --- decrypt and check the contents ---------------------------------------------------------------
tail -c +"$((offset + 1))" "$backup" \
  | openssl enc -d -aes-256-cbc -pbkdf2 -iter "$iter" -pass "file:$pass_file" -out "$work/tar" \
  || die "$backup could not be decrypted: nothing was restored"
listing=$(tar --list --file "$work/tar") || die "$backup holds no readable tarball: nothing was restored"
mapfile -t names <<<"$listing"
for name in "${names[@]}"; do
  [[ $name =~ ^ca_[A-Za-z0-9_.-]+$ ]] || die "$backup holds an unexpected entry ${name@Q}: nothing was restored"
done
mkdir "$work/files"
tar --extract --no-same-owner --file "$work/tar" --directory "$work/files"

# --- refuse to overwrite different keys unless asked ----------------------------------------------
conflicts=()
for name in "${names[@]}"; do
  [ -f "$work/files/$name" ] && [ ! -L "$work/files/$name" ] || die "$name in the backup is not a regular file"
  if [ -e "$ca_dir/$name" ] && ! cmp -s "$ca_dir/$name" "$work/files/$name"; then
    conflicts+=("$name")
  fi
done
if [ ${#conflicts[@]} -gt 0 ] && [ $force -eq 0 ]; then
  die "these files exist and differ from the backup: ${conflicts[*]}; nothing was restored (use --force to replace them)"
fi

# --- move the files into place (rename within the directory: each appears whole) -----------------
for name in "${names[@]}"; do
  case $name in
    *.pub) chmod 0644 "$work/files/$name" ;;
    *) chmod 0600 "$work/files/$name" ;;
  esac
  mv -f "$work/files/$name" "$ca_dir/$name"
done
sync "$ca_dir" 2>/dev/null || true
printf 'restore-ssh-ca.sh: restored %d files into %s: %s\n' "${#names[@]}" "$ca_dir" "${names[*]}" >&2

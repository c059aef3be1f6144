#!/usr/bin/env bash
# Back up Watchgrid's per-tenant SSH CA keys: an AES-256-CBC encrypted tarball of
# $WATCHGRID_SSH_CA_DIR/ca_* (default /etc/watchgrid), with an integrity tag that
# scripts/restore-ssh-ca.sh checks before it decrypts anything. See docs/ssh-ca.md#backup--restore.
#
# Usage: backup-ssh-ca.sh [OUTPUT_DIR]
#
# Environment:
#   WATCHGRID_SSH_CA_DIR                    the CA keys (default /etc/watchgrid)
#   WATCHGRID_SSH_CA_BACKUP_DIR             where backups go unless OUTPUT_DIR is given
#                                           (default /var/backups/watchgrid-ssh-ca)
#   WATCHGRID_SSH_CA_BACKUP_PASSPHRASE_FILE the passphrase, first line of a 0600/0400 file that is
#                                           NOT in the CA directory (default
#                                           /etc/watchgrid-backup/passphrase)
#   WATCHGRID_SSH_CA_BACKUP_ITER            PBKDF2 iterations (default 600000)
#
# The file written is <OUTPUT_DIR>/watchgrid-ssh-ca-<UTC time>.tar.enc, mode 0600:
#   WATCHGRID-SSH-CA-BACKUP 1
#   iter <PBKDF2 iterations>
#   mac-salt <8 random bytes, hex (the PBKDF2 salt size of openssl enc)>
#   hmac-sha256 <HMAC-SHA256 over the three lines above and the ciphertext, hex>
#   <ciphertext: `openssl enc -aes-256-cbc -pbkdf2 -iter N -salt` of the tarball>
# The HMAC key is a separate PBKDF2 derivation from the passphrase (with mac-salt), so the tag
# can be checked before decryption. Nothing secret is ever passed on a command line.
# Backups are never deleted by this script (the runbook keeps them forever).
set -euo pipefail
umask 077

die() { printf 'backup-ssh-ca.sh: %s\n' "$*" >&2; exit 1; }

ca_dir=${WATCHGRID_SSH_CA_DIR:-/etc/watchgrid}
out_dir=${1:-${WATCHGRID_SSH_CA_BACKUP_DIR:-/var/backups/watchgrid-ssh-ca}}
pass_file=${WATCHGRID_SSH_CA_BACKUP_PASSPHRASE_FILE:-/etc/watchgrid-backup/passphrase}
iter=${WATCHGRID_SSH_CA_BACKUP_ITER:-600000}
script_dir=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/ssh-ca-backup-lib.sh
. "$script_dir/ssh-ca-backup-lib.sh"

[[ $iter =~ ^[0-9]+$ ]] && (( iter >= 10000 )) || die "WATCHGRID_SSH_CA_BACKUP_ITER must be a number >= 10000 (got $iter)"
check_passphrase_file "$pass_file"
[ -d "$ca_dir" ] || die "the CA directory $ca_dir does not exist (WATCHGRID_SSH_CA_DIR)"
shopt -s nullglob
cd "$ca_dir"
files=(ca_*)
shopt -u nullglob
# A wiped directory must not produce a backup that looks good and holds nothing.
[ ${#files[@]} -gt 0 ] || die "no ca_* files in $ca_dir: refusing to write an empty backup (is the volume mounted?)"
for f in "${files[@]}"; do
  [ -f "$f" ] && [ ! -L "$f" ] || die "$ca_dir/$f is not a regular file"
done

mkdir -p "$out_dir"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
target="$out_dir/watchgrid-ssh-ca-$stamp.tar.enc"
[ ! -e "$target" ] || die "$target already exists"
work=$(mktemp -d "$out_dir/.backup-XXXXXX")
trap 'rm -rf "$work"' EXIT

tar --create --numeric-owner --file - -- "${files[@]}" \
  | openssl enc -aes-256-cbc -pbkdf2 -iter "$iter" -salt -pass "file:$pass_file" -out "$work/cipher"
mac_salt=$(openssl rand -hex 8)
printf 'WATCHGRID-SSH-CA-BACKUP 1\niter %s\nmac-salt %s\n' "$iter" "$mac_salt" > "$work/header"
mac_key=$(derive_mac_key "$pass_file" "$mac_salt" "$iter")
tag=$(cat "$work/header" "$work/cipher" | hmac_sha256 "$mac_key")
{ cat "$work/header"; printf 'hmac-sha256 %s\n' "$tag"; cat "$work/cipher"; } > "$work/out"
chmod 0600 "$work/out"
sync "$work/out" 2>/dev/null || true
mv "$work/out" "$target"
printf '%s\n' "$target"
printf 'backup-ssh-ca.sh: wrote %s (%d files: %s)\n' "$target" "${#files[@]}" "${files[*]}" >&2

# Shared by backup-ssh-ca.sh and restore-ssh-ca.sh (sourced, not run): the passphrase checks,
# the MAC key derivation and HMAC-SHA256 without any secret on a command line.

# The passphrase file exists, is not empty and is readable by its owner only.
check_passphrase_file() {
  local file=$1 mode
  [ -f "$file" ] || die "passphrase file $file does not exist (WATCHGRID_SSH_CA_BACKUP_PASSPHRASE_FILE)"
  mode=$(stat -c %a "$file")
  case $mode in
    400 | 600) ;;
    *) die "passphrase file $file has mode $mode: make it 0600 or 0400 (chmod 600 $file)" ;;
  esac
  [ -s "$file" ] || die "passphrase file $file is empty"
}

# derive_mac_key PASS_FILE SALT_HEX ITER: a 256-bit key, hex, from PBKDF2-SHA256 of the
# passphrase (openssl's -P prints the derived key without encrypting anything).
derive_mac_key() {
  local key
  key=$(openssl enc -aes-256-cbc -pbkdf2 -iter "$3" -S "$2" -pass "file:$1" -P \
    | sed -n 's/^key *= *//p')
  [[ $key =~ ^[0-9A-Fa-f]{64}$ ]] || die "could not derive the integrity key"
  printf '%s' "$key"
}

# hmac_sha256 KEY_HEX < message: the HMAC-SHA256 tag, hex (RFC 2104 with SHA-256, built from
# `openssl dgst` so that the key never appears in a process's arguments).
hmac_sha256() {
  local key=$1 ipad='' opad='' i byte inner
  while [ ${#key} -lt 128 ]; do key+='0'; done
  for ((i = 0; i < 128; i += 2)); do
    byte=$((16#${key:i:2}))
    ipad+=$(printf '\\x%02x' $((byte ^ 0x36)))
    opad+=$(printf '\\x%02x' $((byte ^ 0x5c)))
  done
  # shellcheck disable=SC2059 # the pads are escape sequences on purpose
  inner=$({ printf "$ipad"; cat; } | openssl dgst -sha256 -r | cut -d' ' -f1)
  # shellcheck disable=SC2059
  { printf "$opad"; printf "$(sed 's/../\\x&/g' <<<"$inner")"; } | openssl dgst -sha256 -r | cut -d' ' -f1
}

# shellcheck shell=bash
# apt_install PKG...: install Debian packages without recommends (the callers name exactly what
# they use), as root or through passwordless sudo. Sourced by hack/samba-dc.sh and the Makefile.
apt_install() {
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    if ! sudo -n true 2>/dev/null; then
      echo "need $* from Debian's packages, but neither root nor passwordless sudo: install them with apt-get" >&2
      return 1
    fi
    sudo="sudo"
  fi
  command -v apt-get >/dev/null || { echo "need $* but apt-get is not available: install them by hand" >&2; return 1; }
  echo "installing $* from Debian's packages" >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq >&2 &&
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >&2
}

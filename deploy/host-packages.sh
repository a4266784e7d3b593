# Sourced by deploy/container-test and deploy/compose-test (bash, root).
#
# install_host_packages PKG...: installs, with apt-get and without
# recommended packages, every Debian package among PKG that is not installed
# yet. Each script lists every package it needs in its own `host_packages`
# array (deploy/README.md says why each is needed; the ctest
# deploy.host_packages checks the lists against that table), so nothing is
# left to what a machine happens to have installed already.
install_host_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  echo "== installing host packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! timeout 900 apt-get update -qq ||
     ! timeout 900 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    echo "cannot install ${missing[*]} with apt-get (see its messages above)" >&2
    exit 2
  fi
}

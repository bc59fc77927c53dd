#!/usr/bin/env bash
# Installs everything the test suite needs on a Debian machine with Node.js 20,
# then runs the whole suite (type check, build, unit and integration tests).
set -euo pipefail
cd "$(dirname "$0")/.."

# System tools the tests use as independent peers. Tests fail, not skip,
# when one of them is missing. build-essential and python3 build naudiodon
# during npm ci; libasound2 is the ALSA library its PortAudio loads, whose
# file plugin provides the test sound devices. systemd provides
# systemd-analyze, which checks the unit files in systemd/.
packages=(ffmpeg build-essential python3 libasound2 systemd)
missing=()
for package in "${packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

npm ci --no-audit --no-fund
npm test

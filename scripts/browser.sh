#!/usr/bin/env bash
# The browser the web client's tests drive: Debian's Chromium (never a browser build that
# Playwright would download), and Japanese, Chinese and Korean fonts so screenshots show
# the client's languages.
# Installs with apt-get only when missing; needs root (as in CI).
set -euo pipefail
missing=()
command -v chromium >/dev/null || missing+=(chromium)
if ! fc-list 2>/dev/null | grep -qiE "noto sans cjk|ipagothic|ipa.?gothic|takao|vl gothic"; then
  missing+=(fonts-ipafont-gothic)
fi
fc-list 2>/dev/null | grep -qi "wenquanyi" || missing+=(fonts-wqy-microhei)
fc-list 2>/dev/null | grep -qi "nanum" || missing+=(fonts-nanum)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "missing ${missing[*]}: install them (apt-get install ${missing[*]}) to run the browser tests" >&2
  exit 0
fi
echo "installing ${missing[*]} for the browser tests" >&2
apt-get update -qq
# both named outright (apt-get leaves an installed one as it is)
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium \
  fonts-ipafont-gothic fonts-wqy-microhei fonts-nanum >/dev/null

#!/usr/bin/env bash
# The browser tests drive Debian's Chromium with Playwright (never `playwright install`).
# Install it when we can (root with apt); otherwise the browser tests skip and say why.
set -u
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser tests..." >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-color-emoji >/dev/null) \
    || echo "could not install chromium: the browser tests will skip" >&2
else
  echo "chromium not found: the browser tests will skip (sudo apt-get install chromium)" >&2
fi
exit 0

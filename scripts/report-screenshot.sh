#!/usr/bin/env bash
# Renders a run's report.html in headless Chromium (Debian's `chromium`) and saves a
# full-page PNG, to check the page as a browser lays it out: nothing fetched, nothing
# scrolling sideways past the page's width.
#
#   scripts/report-screenshot.sh REPORT_DIR [OUT.png] [WIDTH] [HEIGHT]
set -euo pipefail
dir=${1:?usage: $0 REPORT_DIR [OUT.png] [WIDTH]}
out=${2:-$dir/report.png}
width=${3:-1000}
html=$(realpath "$dir/report.html")
command -v chromium >/dev/null || {
  echo "$0: chromium is not installed (Debian: apt-get install chromium)" >&2
  exit 2
}
height=${4:-9000}
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
  --window-size="$width,$height" --screenshot="$out" "file://$html" 2>/dev/null
echo "$out"

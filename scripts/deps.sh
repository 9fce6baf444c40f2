#!/usr/bin/env bash
# Makes sure the tools the build and the test suite need are present.
# Installs missing Debian packages when run as root; otherwise says what to
# install. Later parts of the suite add their servers here.
set -euo pipefail

missing=()
need() { # need <command> <debian package>
	command -v "$1" >/dev/null 2>&1 || missing+=("$2")
}

if ! command -v go >/dev/null 2>&1; then
	echo "deps: Go is not installed; get Go 1.26 or newer from https://go.dev/dl/" >&2
	exit 1
fi
need gcc gcc        # cgo: the SQLite driver (mattn/go-sqlite3) is C
need git git
need curl curl      # the docs harness (cmd/sluice/docs_test.go) runs the docs' curl examples
# A real RabbitMQ node for the hook delivery tests (internal/sink/amqpsink):
# the tests start their own node on free ports in a temp dir.
[[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] || command -v rabbitmq-server >/dev/null 2>&1 || missing+=(rabbitmq-server)
# A real PostgreSQL 15 for the PostgreSQL backends' tests (internal/pgtest):
# the tests run initdb and the server themselves, as user postgres, in a temp
# dir on a free port (the package's own cluster is neither needed nor used).
[[ -x /usr/lib/postgresql/15/bin/initdb ]] || missing+=(postgresql-15)
# A real ClickHouse server for the clickhouse destination's tests
# (internal/sink/clickhousesink; Debian bookworm's is 18.16.1): the tests
# start their own on free ports in a temp dir.
[[ -x /usr/sbin/clickhouse-server ]] || missing+=(clickhouse-server)
# A real headless browser for the console's tests (cmd/sluice, chromedp),
# and the curl they send events with.
need chromium chromium
need curl curl

if ((${#missing[@]})); then
	if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
		echo "deps: installing ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
			{ apt-get update >/dev/null && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
	else
		echo "deps: missing ${missing[*]}; install them (Debian: sudo apt-get install ${missing[*]})" >&2
		exit 1
	fi
fi

#!/bin/sh
# Install cpagent as a systemd service on Debian or Raspberry Pi OS (run as root).
#
#   sudo deploy/install.sh [PACKAGE] [CONFIG]
#
# PACKAGE is what pip installs into /opt/cpagent (default "cpagent"; for example
# "cpagent[serial,nfc]", a wheel file or a source checkout path). CONFIG is copied to
# /etc/cpagent/agent.yaml only when that file does not exist yet (default: the example
# board config next to this script). Running it again upgrades the package and the unit
# and leaves the configuration and the store alone.
set -eu

PACKAGE="${1:-cpagent}"
HERE="$(cd "$(dirname "$0")" && pwd)"
CONFIG="${2:-$HERE/../config/board-example.yaml}"
PREFIX=/opt/cpagent

if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (sudo)" >&2
    exit 1
fi

# The agent in its own virtualenv: upgrades never touch the system's Python packages.
python3 -m venv "$PREFIX"
"$PREFIX/bin/pip" install --upgrade "$PACKAGE"

# A static system user without a login shell; the store lives in its state directory.
if ! id -u cpagent >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/cpagent --no-create-home \
        --shell /usr/sbin/nologin cpagent
fi
# Serial ports and GPIO for real board drivers (groups absent on a plain Debian are skipped).
for group in dialout gpio; do
    if getent group "$group" >/dev/null; then
        usermod -a -G "$group" cpagent
    fi
done

# Configuration readable by the agent, writable only by root (it names the secret files).
install -d -m 0750 -o root -g cpagent /etc/cpagent
fresh_config=no
if [ ! -e /etc/cpagent/agent.yaml ]; then
    install -m 0640 -o root -g cpagent "$CONFIG" /etc/cpagent/agent.yaml
    fresh_config=yes
fi

install -m 0644 "$HERE/cpagent.service" /etc/systemd/system/cpagent.service
systemctl daemon-reload

if [ "$fresh_config" = yes ]; then
    systemctl enable cpagent
    echo "Edit /etc/cpagent/agent.yaml (station id, CSMS url, drivers, store.path under"
    echo "/var/lib/cpagent), check it with: $PREFIX/bin/cpagent check-config /etc/cpagent/agent.yaml"
    echo "then start the agent with: systemctl start cpagent"
else
    "$PREFIX/bin/cpagent" check-config /etc/cpagent/agent.yaml
    systemctl enable cpagent
    systemctl restart cpagent
fi

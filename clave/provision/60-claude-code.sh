# name: claude-code
# description: Claude Code's native installer, run as admin (a root install is unusable by admin)
if [ ! -x /home/admin/.local/bin/claude ]; then
  for attempt in 1 2 3; do
    # pipefail: a failed download must fail the attempt, not feed bash an empty script
    if sudo -H -u admin bash -c 'set -o pipefail; cd; curl -fsSL https://claude.ai/install.sh | bash' \
        && [ -x /home/admin/.local/bin/claude ]; then
      break
    fi
    if [ "$attempt" = 3 ]; then
      echo "the Claude Code installer failed 3 times" >&2
      exit 1
    fi
    sleep 5
  done
fi
if ! grep -qs 'local/bin' /home/admin/.profile; then
  # shellcheck disable=SC2016  # $HOME must expand at login, not now
  echo 'export PATH="$HOME/.local/bin:$PATH"' >> /home/admin/.profile
  chown admin:admin /home/admin/.profile
fi
# its version, for the ~/.claude.json each session seeds (lastOnboardingVersion): read once
# here instead of starting claude at every session
mkdir -p /etc/clave
sudo -H -u admin /home/admin/.local/bin/claude --version | awk '{print $1; exit}' \
  > /etc/clave/claude-version

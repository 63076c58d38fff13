# name: claude-code
# description: Claude Code's native installer, run as admin (a root install is unusable by admin)
if [ ! -x /home/admin/.local/bin/claude ]; then
  for attempt in 1 2 3; do
    if sudo -H -u admin bash -c 'curl -fsSL https://claude.ai/install.sh | bash'; then
      break
    fi
    [ "$attempt" = 3 ] && exit 1
    sleep 5
  done
fi
# shellcheck disable=SC2016  # $HOME must expand at login, not now
grep -qs 'local/bin' /home/admin/.profile \
  || echo 'export PATH="$HOME/.local/bin:$PATH"' >> /home/admin/.profile

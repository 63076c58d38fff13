"""BootstrapLaravel: the app in the VM serves, talks to MySQL/Redis and is migrated."""

from __future__ import annotations

import time

from clave.context import ServicesMode, SessionContext
from clave.errors import ClaveError
from clave.home import Home
from clave.steps.base import Step
from clave.support.dotenv import patch_file
from clave.support.ssh import SshExecutor

# The database and user the `services-vm` provisioning step creates in the VM's MariaDB.
VM_DATABASE = {"DB_DATABASE": "laravel", "DB_USERNAME": "laravel", "DB_PASSWORD": "laravel"}
VENDOR_DIR = "/var/lib/clave/vendor"   # on the VM's own disk: the share is slow (tart.md §6.3)
# A graceful reload drops OPcache and the workers' state; nginx's site never changes.
RELOAD = ("for s in /etc/init.d/php*-fpm; do [ -e \"$s\" ] && sudo service \"${s##*/}\" "
          "reload; done")


def commands(composer: bool, migrate: bool) -> list[tuple[str, str]]:
    """(hint, shell command) in order; every command runs in /srv/project."""
    # -R: sites-enabled/ holds symlinks, which -r skips
    steps = [("checking nginx", "grep -Rqs 'root /srv/project/public' /etc/nginx/sites-enabled/"
              " || { echo 'nginx does not serve /srv/project/public' >&2; exit 1; }")]
    if composer:
        steps.append(("linking vendor/ to the VM's disk",
                      f"sudo mkdir -p {VENDOR_DIR} && sudo chown \"$(id -u):$(id -g)\" "
                      f"{VENDOR_DIR} && mkdir -p vendor && "
                      f"{{ mountpoint -q vendor || sudo mount --bind {VENDOR_DIR} vendor; }}"))
        steps.append(("composer install",
                      "if [ -f composer.json ]; then composer install --no-interaction "
                      "--no-progress --prefer-dist; fi"))
    if migrate:
        steps.append(("php artisan migrate", "php artisan migrate --force --no-interaction"))
    steps.append(("reloading php-fpm", RELOAD))
    return steps


class BootstrapLaravel(Step):
    label = "Bootstrapping Laravel"

    def __init__(self, ssh: SshExecutor, home: Home, settings):
        self.ssh, self.home, self.settings = ssh, home, settings

    def run(self, ctx: SessionContext) -> None:
        services = ctx.services
        values = {
            "APP_URL": ctx.app_url,
            "DB_HOST": services.mysql_host, "DB_PORT": str(services.mysql_port),
            "REDIS_HOST": services.redis_host, "REDIS_PORT": str(services.redis_port),
        }
        if ctx.services_mode is ServicesMode.VM:
            values.update(VM_DATABASE)
        created = patch_file(ctx.clone_path / ".env", values,
                             example=ctx.clone_path / ".env.example")
        if created:
            ctx.info("created .env from .env.example")
        log = self.home.session_dir(ctx.session_id) / "bootstrap.log"
        log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        for hint, command in commands(self.settings.get("bootstrap.composer"),
                                      self.settings.get("bootstrap.migrate")):
            ctx.hint(hint)
            started = time.monotonic()
            result = self.ssh.run(f"cd /srv/project && {command}", timeout=900)
            seconds = time.monotonic() - started
            with log.open("a") as fh:
                fh.write(f"$ {hint}\n{result.stdout}{result.stderr}"
                         f"(exit {result.exited}, {seconds:.3f} s)\n")
            if not result.ok:
                self._failed(ctx, hint, result.tail(), log)
                return

    def _failed(self, ctx: SessionContext, hint: str, tail: str, log) -> None:
        message = f"bootstrap failed at `{hint}`:\n{tail}\n(full log: {log})"
        if self.settings.get("bootstrap.required"):
            raise ClaveError(message + "\nbootstrap.required is set, so the session stops.")
        ctx.bootstrap_failure = message
        ctx.warn(message + "\nClaude Code will start anyway and is told about it.")

    def done(self, ctx: SessionContext) -> bool:
        try:
            return self.ssh.run("cd /srv/project && test -f vendor/autoload.php "
                                "&& mountpoint -q vendor", timeout=10).ok
        except ClaveError:
            return False


# name: php-fpm-pool
# description: a php-fpm pool running as admin, so the app can write to the shared code
install -d -m 0755 /etc/php/8.4/fpm/pool.d
cat > /etc/php/8.4/fpm/pool.d/www.conf <<'POOL'
[www]
user = admin
group = admin
listen = /run/php/php8.4-fpm.sock
listen.owner = www-data
listen.group = www-data
listen.mode = 0660
pm = dynamic
pm.max_children = 10
pm.start_servers = 2
pm.min_spare_servers = 1
pm.max_spare_servers = 4
clear_env = no
POOL

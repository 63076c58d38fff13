# name: nginx
# description: nginx serving /srv/project/public for any Host (Herd proxies by name)
apt-get install -y -q --no-install-recommends nginx
cat > /etc/nginx/sites-available/clave <<'SITE'
server {
    listen 80 default_server;
    listen [::]:80 default_server;
    server_name _;
    root /srv/project/public;
    index index.php index.html;
    client_max_body_size 100m;

    location / {
        try_files $uri $uri/ /index.php?$query_string;
    }

    location ~ \.php$ {
        include snippets/fastcgi-php.conf;
        fastcgi_pass unix:/run/php/php8.4-fpm.sock;
        fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;
    }
}
SITE
ln -sfn /etc/nginx/sites-available/clave /etc/nginx/sites-enabled/clave
rm -f /etc/nginx/sites-enabled/default

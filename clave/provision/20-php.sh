# name: php
# description: PHP 8.4 and the extensions Laravel needs, from the ondrej PPA
# Ubuntu 24.04 ships PHP 8.3; 8.4 comes from the ondrej PPA.
if ! grep -rqs "ondrej/php" /etc/apt/sources.list.d/; then
  add-apt-repository -y ppa:ondrej/php
  apt-get update -q
fi
apt-get install -y -q --no-install-recommends \
  php8.4-cli php8.4-fpm php8.4-curl php8.4-mbstring php8.4-xml php8.4-mysql \
  php8.4-redis php8.4-sqlite3 php8.4-bcmath php8.4-gd php8.4-intl php8.4-zip

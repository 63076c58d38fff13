# name: services-vm
# description: MySQL (MariaDB) and Redis inside the VM, for services.mode "vm"
apt-get install -y -q --no-install-recommends mariadb-server redis-server
service mariadb start || true
mysql -uroot -e "CREATE DATABASE IF NOT EXISTS laravel;
  CREATE USER IF NOT EXISTS 'laravel'@'localhost' IDENTIFIED BY 'laravel';
  GRANT ALL ON laravel.* TO 'laravel'@'localhost';"

# name: project-dir
# description: /srv/project and its virtio-fs fstab line (nofail: boots without the share)
install -d -o admin -g admin /srv/project
install -d -o admin -g admin /var/lib/clave/vendor
if ! grep -qs '[[:space:]]/srv/project[[:space:]]' /etc/fstab; then
  echo 'project /srv/project virtiofs rw,nofail 0 0' >> /etc/fstab
fi

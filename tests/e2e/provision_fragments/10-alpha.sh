# name: alpha
# description: writes the alpha marker (e2e test fragment)
install -d /etc/clave-test
echo "alpha v1" >/etc/clave-test/alpha
echo alpha >>/etc/clave-test/ran
echo "alpha: marker written"

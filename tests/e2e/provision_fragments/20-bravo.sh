# name: bravo
# description: writes the bravo marker (e2e test fragment)
install -d /etc/clave-test
echo "bravo v1" >/etc/clave-test/bravo
echo bravo >>/etc/clave-test/ran
echo "bravo: marker written"

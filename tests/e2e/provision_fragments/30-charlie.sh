# name: charlie
# description: writes the charlie marker; MODE makes it fail or hold (e2e test fragment)
# MODE=ok writes the marker. MODE=fail prints some output and exits 3. MODE=hold announces
# itself with charlie.holding in the directory this script was shared from (the host can
# see it) and waits there until the host creates charlie.release beside it.
MODE=ok
install -d /etc/clave-test
echo charlie >>/etc/clave-test/ran
case $MODE in
fail)
    echo "charlie: about to fail"
    echo "charlie: failing on purpose" >&2
    exit 3
    ;;
hold)
    share=$(dirname "$(readlink -f "$0")")
    touch "$share/charlie.holding"
    until [ -e "$share/charlie.release" ]; do sleep 0.1; done
    ;;
esac
echo "charlie v1" >/etc/clave-test/charlie
echo "charlie: marker written"

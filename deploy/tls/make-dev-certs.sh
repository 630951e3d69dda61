#!/bin/sh
# A development CA, a Mosquitto server certificate and optional client certificates.
#
#   deploy/tls/make-dev-certs.sh [-d DIR] [-n HOSTNAME]... [-c CLIENT]... [-f]
#
#   -d DIR       output folder (default: .pantau/tls)
#   -n HOSTNAME  extra DNS name for the server certificate (repeatable); localhost and
#                127.0.0.1 are always included, so clients can verify the host name
#   -c CLIENT    also issue a client certificate with this common name (repeatable)
#   -f           overwrite an existing CA (otherwise the CA is reused and only leaf
#                certificates are (re)issued, so clients that trust it keep working)
#
# Writes ca.crt ca.key server.crt server.key [CLIENT.crt CLIENT.key]. Keys are EC P-256,
# mode 0600. For development and tests only: the CA key sits unprotected next to the rest.
set -eu

dir=.pantau/tls
names=""
clients=""
force=0
while getopts d:n:c:fh opt; do
    case $opt in
        d) dir=$OPTARG ;;
        n) names="$names $OPTARG" ;;
        c) clients="$clients $OPTARG" ;;
        f) force=1 ;;
        h) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "usage: $0 [-d DIR] [-n HOSTNAME]... [-c CLIENT]... [-f]" >&2; exit 2 ;;
    esac
done
command -v openssl >/dev/null || { echo "openssl is not installed" >&2; exit 1; }
for value in $names $clients; do
    # The values go into openssl config lines and file names: keep them plain.
    case $value in
        *[!A-Za-z0-9._-]*) echo "invalid name: $value (use A-Z a-z 0-9 . _ -)" >&2; exit 2 ;;
    esac
done

mkdir -p "$dir"
umask 077
cd "$dir"
days_ca=3650
days_leaf=825  # the most a TLS client (Apple's, say) accepts for a leaf certificate

if [ "$force" = 1 ] || [ ! -s ca.key ] || [ ! -s ca.crt ]; then
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key
    openssl req -x509 -new -key ca.key -sha256 -days "$days_ca" -out ca.crt \
        -subj "/O=Pantau development/CN=Pantau development CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash"
    echo "created CA $dir/ca.crt"
fi

# issue NAME CN EXTENSIONS: a key and a certificate signed by the CA.
issue() {
    openssl ecparam -name prime256v1 -genkey -noout -out "$1.key"
    openssl req -new -key "$1.key" -subj "/O=Pantau development/CN=$2" -out "$1.csr"
    printf '%s\n' "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 \
        -days "$days_leaf" -extfile "$1.ext" -out "$1.crt" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}

san="DNS:localhost,IP:127.0.0.1,IP:::1"
for name in $names; do
    san="$san,DNS:$name"
done
common="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid"
issue server localhost "$common
extendedKeyUsage=serverAuth
subjectAltName=$san"
echo "created server certificate $dir/server.crt ($san)"
for client in $clients; do
    issue "$client" "$client" "$common
extendedKeyUsage=clientAuth"
    echo "created client certificate $dir/$client.crt"
done
# Certificates are public; keys stay 0600 (umask above).
chmod 644 ca.crt server.crt
for client in $clients; do chmod 644 "$client.crt"; done

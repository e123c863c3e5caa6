#!/usr/bin/env bash
# Make the injector's serving certificate with `sofamesh ca`, for `kubectl apply -k`:
#   certs/ca/            a CA for the webhook only (keep ca-key.pem private, or delete it)
#   certs/tls.crt, .key  the injector's certificate for its Service's DNS names
#   certs/ca-bundle-patch.yaml  the MutatingWebhookConfiguration's caBundle
# usage: make-webhook-cert.sh [DAYS]   (default 365; run again to renew: the injector
#        reloads the Secret's files without a restart)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT="$HERE/certs"
SOFAMESH=${SOFAMESH:-sofamesh}
DAYS=${1:-365}
SVC=sofamesh-injector.sofamesh-system.svc
mkdir -p "$OUT"
[ -f "$OUT/ca/ca-key.pem" ] || $SOFAMESH ca init "$OUT/ca" --trust-domain injector.sofamesh.local
$SOFAMESH ca issue --ca "$OUT/ca" --app sofamesh-injector --workspace sofamesh-system \
  --out "$OUT/issued" --hours $((DAYS * 24)) \
  --dns sofamesh-injector --dns sofamesh-injector.sofamesh-system --dns "$SVC" \
  --dns "$SVC.cluster.local" >/dev/null
cp "$OUT/issued/cert.pem" "$OUT/tls.crt"
cp "$OUT/issued/key.pem" "$OUT/tls.key"
CA_B64=$(base64 -w0 < "$OUT/ca/ca.pem")
cat > "$OUT/ca-bundle-patch.yaml" <<PATCH
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: sofamesh-injector
webhooks:
  - name: inject.sofamesh.io
    clientConfig:
      caBundle: $CA_B64
PATCH
echo "certificate for $SVC in $OUT (valid $DAYS days)"

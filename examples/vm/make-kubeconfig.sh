#!/bin/sh
# Prints a kubeconfig that authenticates as the edsync ServiceAccount, for
# edsync on a VM (--kubeconfig). Run it where kubectl reaches the cluster as
# someone allowed to request tokens for that ServiceAccount:
#
#   examples/vm/make-kubeconfig.sh > kubeconfig
#
# Apply examples/kubernetes/rbac.yaml first (a Role in each namespace
# edsync.env names, a ClusterRole for Nodes). Settings (environment):
#   NAMESPACE        the ServiceAccount's namespace (default: default)
#   SERVICE_ACCOUNT  its name (default: edsync)
#   DURATION         the token's lifetime (default: 720h); the API server may
#                    cap it (--service-account-max-token-expiration). Make a
#                    new kubeconfig and restart edsync before it runs out, or
#                    use a long-lived token Secret (README.md).
#   KUBECTL          the kubectl command (default: kubectl), with its own
#                    KUBECONFIG/--context as usual.
set -eu

ns=${NAMESPACE:-default}
sa=${SERVICE_ACCOUNT:-edsync}
duration=${DURATION:-720h}
kubectl=${KUBECTL:-kubectl}

# The API server and its CA as the current context knows them.
server=$($kubectl config view --minify --raw -o jsonpath='{.clusters[0].cluster.server}')
ca=$($kubectl config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
if [ -z "$ca" ]; then
  ca_file=$($kubectl config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority}')
  if [ -z "$ca_file" ]; then
    echo "make-kubeconfig.sh: the current context has no certificate authority for $server" >&2
    exit 1
  fi
  ca=$(base64 < "$ca_file" | tr -d '\n')
fi
token=$($kubectl --namespace "$ns" create token "$sa" --duration "$duration")

cat <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: cluster
  cluster:
    server: $server
    certificate-authority-data: $ca
users:
- name: $ns-$sa
  user:
    token: $token
contexts:
- name: edsync
  context:
    cluster: cluster
    user: $ns-$sa
current-context: edsync
KUBECONFIG

// Package e2e holds edsync's end-to-end scenarios: edsync runs as a real
// process against a real etcd, kube-apiserver and kube-controller-manager
// started by TestMain (see package harness), and the tests assert on the
// files Envoy would read. Run them with
//
//	cd test/e2e && go test ./...
//
// The first run on a machine builds the Kubernetes binaries (about 7
// minutes, cached; see test/k8s/build.sh). EDSYNC_K8S_BIN points at
// prebuilt ones instead.
package e2e

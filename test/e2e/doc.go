// Package e2e holds edsync's end-to-end scenarios: edsync runs as a real
// process against a real etcd, kube-apiserver and kube-controller-manager
// started by TestMain (see package harness), and the tests assert on the
// files Envoy would read. Run them with
//
//	cd test/e2e && go test ./...
//
// The first run on a machine builds the Kubernetes binaries (7 to 14
// minutes on 2 cores, then cached; see test/k8s/build.sh), which can outlast
// go test's default -timeout of 10 minutes: run test/k8s/build.sh first, or
// pass -timeout 30m. EDSYNC_K8S_BIN points at prebuilt binaries instead.
// EDSYNC_E2E_KEEP=1 keeps the cluster's folder (certificates, kubeconfigs,
// every process's log), which is otherwise removed after a passing run.
package e2e

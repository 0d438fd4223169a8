// Package e2e holds edsync's end-to-end scenarios: edsync runs as a real
// process against a real etcd, kube-apiserver and kube-controller-manager
// started by TestMain (see package harness), and the tests assert on the
// files Envoy would read. Run them from the repository with
//
//	go test -C test/e2e -count=1 -timeout 60m
//
// The first run on a machine builds the Kubernetes binaries (7 to 30
// minutes on 2 cores, then cached; see test/k8s/build.sh) before TestMain
// starts the control plane, so the build counts against -timeout but never
// against the control plane's start deadline. With no package argument go
// test streams the build's progress lines as they come ("./..." would hold
// them back until the end). EDSYNC_K8S_BIN points at prebuilt binaries
// instead.
// EDSYNC_E2E_KEEP=1 keeps the cluster's folder (certificates, kubeconfigs,
// every process's log), which is otherwise removed after a passing run.
package e2e

package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	goruntime "runtime"
	"testing"
	"time"

	"github.com/edsync/edsync/watch"
)

// The Kubernetes client asks for protobuf first, JSON as the fallback, and
// says who it is.
func TestKubeClientAsksForProtobuf(t *testing.T) {
	type request struct{ accept, agent string }
	requests := make(chan request, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case requests <- request{r.Header.Get("Accept"), r.Header.Get("User-Agent")}:
		default:
		}
		http.Error(w, "not here", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	writeFile(t, kubeconfig, fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: %q}}]
users: [{name: test, user: {token: secret}}]
contexts: [{name: test, context: {cluster: test, user: test}}]
current-context: test
`, srv.URL))
	cfg := configForTest(t, "--kubeconfig", kubeconfig, "--dry-run")
	src, _, err := newSource(cfg, nil, watch.NewStore(nil), nil, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- src.Run(t.Context()) }()
	t.Cleanup(func() { <-done })
	select {
	case r := <-requests:
		if want := "application/vnd.kubernetes.protobuf,application/json"; r.accept != want {
			t.Errorf("Accept: %q, want %q", r.accept, want)
		}
		if want := "edsync/" + buildVersion() + " (" + goruntime.GOOS + "/" + goruntime.GOARCH + ")"; r.agent != want {
			t.Errorf("User-Agent: %q, want %q", r.agent, want)
		}
	case <-time.After(time.Minute): // a failure guard, not a timing assertion
		t.Fatal("the source sent no request")
	}
}

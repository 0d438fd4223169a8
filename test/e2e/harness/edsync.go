package harness

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The ServiceAccount edsync runs as.
const (
	EdsyncNamespace      = "default"
	EdsyncServiceAccount = "edsync"
)

// edsyncClusterRole is all the access edsync gets in these tests, so they
// prove that it is enough. Keep it equal to the RBAC that examples/ ships
// (when it ships one, load it from there instead).
var edsyncClusterRole = &rbacv1.ClusterRole{
	ObjectMeta: metav1.ObjectMeta{Name: "edsync"},
	Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{"discovery.k8s.io"},
		Resources: []string{"endpointslices"},
		Verbs:     []string{"list", "watch"},
	}},
}

// EdsyncKubeconfig returns a kubeconfig that authenticates as the edsync
// ServiceAccount with a token from the TokenRequest API. The first call
// creates the ServiceAccount, the ClusterRole and its binding.
func (c *Cluster) EdsyncKubeconfig(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.edsyncSA != "" {
		return c.edsyncSA, nil
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: EdsyncNamespace, Name: EdsyncServiceAccount}}
	if _, err := c.Client.CoreV1().ServiceAccounts(EdsyncNamespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create serviceaccount: %w", err)
	}
	if _, err := c.Client.RbacV1().ClusterRoles().Create(ctx, edsyncClusterRole, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create clusterrole: %w", err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "edsync"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: edsyncClusterRole.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: EdsyncNamespace, Name: EdsyncServiceAccount}},
	}
	if _, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create clusterrolebinding: %w", err)
	}
	// A day: longer than any test run, so edsync never meets an expired token.
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(24 * 3600))}}
	tok, err := c.Client.CoreV1().ServiceAccounts(EdsyncNamespace).CreateToken(ctx, EdsyncServiceAccount, req, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token request: %w", err)
	}
	path := filepath.Join(c.Dir, "edsync.kubeconfig")
	if err := writeKubeconfig(path, c.Server, c.CAPEM, nil, nil, tok.Status.Token); err != nil {
		return "", err
	}
	c.edsyncSA = path
	return path, nil
}

// Edsync is a running edsync process.
type Edsync struct {
	*Proc
	stdout, stderr syncBuffer
}

// StartEdsync runs the edsync binary with --kubeconfig for its
// ServiceAccount, then args. Its stdout and stderr are captured (and
// appended to edsync-N.log in the cluster folder). When the test ends, a
// still-running edsync is stopped, and if the test failed its stderr is
// logged.
func (c *Cluster) StartEdsync(t testing.TB, args ...string) *Edsync {
	t.Helper()
	kubeconfig, err := c.EdsyncKubeconfig(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.nEdsync++
	n := c.nEdsync
	c.mu.Unlock()
	e := &Edsync{}
	e.Proc = &Proc{
		Name:   "edsync",
		Path:   c.Edsync,
		Args:   append([]string{"--kubeconfig", kubeconfig}, args...),
		Log:    filepath.Join(c.Dir, fmt.Sprintf("edsync-%d.log", n)),
		Stdout: &e.stdout,
		Stderr: &e.stderr,
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if e.Running() {
			_ = e.Stop(10 * time.Second)
		}
		if t.Failed() {
			t.Logf("edsync %v stderr:\n%s", e.Args, e.Stderr())
		}
	})
	return e
}

// Stderr is what edsync has written to stderr so far.
func (e *Edsync) Stderr() string { return e.stderr.String() }

// Stdout is what edsync has written to stdout so far.
func (e *Edsync) Stdout() string { return e.stdout.String() }

// syncBuffer is a bytes.Buffer that the process's output copier can write
// while a test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

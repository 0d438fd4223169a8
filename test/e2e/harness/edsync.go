package harness

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	yamlutil "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/edsync/edsync/internal/syncbuf"
)

// The ServiceAccount edsync runs as.
const (
	EdsyncNamespace      = "default"
	EdsyncServiceAccount = "edsync"
)

// RBACFile is the RBAC that examples/ ships for edsync, relative to the
// repository root. EdsyncKubeconfig creates exactly its objects and nothing
// else, so the tests prove that it is enough.
const RBACFile = "examples/kubernetes/rbac.yaml"

// LoadRBAC reads and decodes RBACFile: a ServiceAccount, a ClusterRole and a
// ClusterRoleBinding (one of each, and nothing else). It checks that the
// ServiceAccount is EdsyncNamespace/EdsyncServiceAccount and that the
// binding grants the role to it, so a changed file fails loudly here rather
// than as a puzzling "forbidden" in edsync's log.
func LoadRBAC() (*corev1.ServiceAccount, *rbacv1.ClusterRole, *rbacv1.ClusterRoleBinding, error) {
	repo, err := RepoRoot()
	if err != nil {
		return nil, nil, nil, err
	}
	path := filepath.Join(repo, filepath.FromSlash(RBACFile))
	docs, err := YAMLDocuments(path)
	if err != nil {
		return nil, nil, nil, err
	}
	var (
		sa      *corev1.ServiceAccount
		role    *rbacv1.ClusterRole
		binding *rbacv1.ClusterRoleBinding
	)
	decode := scheme.Codecs.UniversalDeserializer().Decode
	for _, doc := range docs {
		obj, gvk, err := decode(doc, nil, nil)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		dup := false
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			dup, sa = sa != nil, o
		case *rbacv1.ClusterRole:
			dup, role = role != nil, o
		case *rbacv1.ClusterRoleBinding:
			dup, binding = binding != nil, o
		default:
			return nil, nil, nil, fmt.Errorf("%s: unexpected %v; the harness creates only a ServiceAccount, a ClusterRole and a ClusterRoleBinding", path, gvk)
		}
		if dup {
			return nil, nil, nil, fmt.Errorf("%s: more than one %v", path, gvk)
		}
	}
	switch {
	case sa == nil || role == nil || binding == nil:
		return nil, nil, nil, fmt.Errorf("%s: want a ServiceAccount, a ClusterRole and a ClusterRoleBinding", path)
	case sa.Namespace != EdsyncNamespace || sa.Name != EdsyncServiceAccount:
		return nil, nil, nil, fmt.Errorf("%s: ServiceAccount %s/%s, the harness runs edsync as %s/%s", path, sa.Namespace, sa.Name, EdsyncNamespace, EdsyncServiceAccount)
	case binding.RoleRef.Kind != "ClusterRole" || binding.RoleRef.Name != role.Name:
		return nil, nil, nil, fmt.Errorf("%s: ClusterRoleBinding %s refers to %s %s, not ClusterRole %s", path, binding.Name, binding.RoleRef.Kind, binding.RoleRef.Name, role.Name)
	case !slices.ContainsFunc(binding.Subjects, func(s rbacv1.Subject) bool {
		return s.Kind == rbacv1.ServiceAccountKind && s.Namespace == sa.Namespace && s.Name == sa.Name
	}):
		return nil, nil, nil, fmt.Errorf("%s: ClusterRoleBinding %s does not bind ServiceAccount %s/%s", path, binding.Name, sa.Namespace, sa.Name)
	}
	return sa, role, binding, nil
}

// checkForbidden fails the test if the API server refused edsync anything.
// A missing verb does not always show in the files: without `watch`, the
// informer falls back to relisting with backoff and the files still arrive,
// late. Only the log tells.
func checkForbidden(t testing.TB, e *Edsync) {
	t.Helper()
	for line := range strings.Lines(e.Stderr()) {
		if strings.Contains(line, "is forbidden") {
			t.Errorf("the API server refused edsync something: %s does not grant enough:\n%s", RBACFile, line)
			return
		}
	}
}

// YAMLDocuments splits a multi-document YAML file, leaving out the
// documents of comments only.
func YAMLDocuments(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	docs := yamlutil.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := docs.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			out = append(out, doc)
		}
	}
}

// stripComments drops YAML comment lines, to tell a document of comments
// only (nothing to decode) from one with an object.
func stripComments(doc []byte) []byte {
	var out []byte
	for line := range bytes.Lines(doc) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line...)
		}
	}
	return out
}

// EdsyncKubeconfig returns a kubeconfig that authenticates as the edsync
// ServiceAccount with a token from the TokenRequest API. The first call
// creates the ServiceAccount, the ClusterRole and its binding from RBACFile.
func (c *Cluster) EdsyncKubeconfig(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.edsyncSA != "" {
		return c.edsyncSA, nil
	}
	sa, role, binding, err := LoadRBAC()
	if err != nil {
		return "", err
	}
	if _, err := c.Client.CoreV1().ServiceAccounts(sa.Namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create serviceaccount: %w", err)
	}
	if _, err := c.Client.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create clusterrole: %w", err)
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
	stdout, stderr syncbuf.Buffer
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
	return c.startEdsync(t, true, append([]string{"--kubeconfig", kubeconfig}, args...)...)
}

// StartEdsyncArgs runs the edsync binary with args only: for a config
// file that names its sources' kubeconfigs itself.
func (c *Cluster) StartEdsyncArgs(t testing.TB, args ...string) *Edsync {
	t.Helper()
	return c.startEdsync(t, true, args...)
}

// startEdsync runs edsync with args; checkRefusals says whether to fail
// the test if the API server refused edsync anything.
func (c *Cluster) startEdsync(t testing.TB, checkRefusals bool, args ...string) *Edsync {
	t.Helper()
	c.mu.Lock()
	c.nEdsync++
	n := c.nEdsync
	c.mu.Unlock()
	e := &Edsync{}
	e.Proc = &Proc{
		Name: "edsync",
		Path: c.Edsync,
		// A port of its own: edsync's default :9911 would be taken by
		// the first one when several run at once (here or in another
		// checkout on the machine). A test's own --http-addr comes
		// later and wins.
		Args:   append([]string{"--http-addr", "127.0.0.1:0"}, args...),
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
		if checkRefusals {
			checkForbidden(t, e)
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

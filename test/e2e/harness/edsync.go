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

// The RBAC files that examples/ ships for edsync, relative to the
// repository root. The harness creates exactly the objects of one of them
// and nothing else, and runs edsync as its ServiceAccount: the tests prove
// that it is enough.
const (
	// ClusterRBACFile is the node-shared edsync's: a ClusterRole for
	// EndpointSlices, Services and Nodes in every namespace. StartEdsync
	// and EdsyncKubeconfig use it: the scenarios watch every namespace,
	// or namespaces of their own.
	ClusterRBACFile = "examples/kubernetes/node-shared/rbac.yaml"
	// SidecarRBACFile is the sidecar's (examples/vm uses it too): Roles in
	// the namespaces its config names, which must exist before it is
	// created (they hold the Services), and a ClusterRole for Nodes only.
	SidecarRBACFile = "examples/kubernetes/rbac.yaml"
)

// RBAC is the objects of an RBAC file, in the order they are created.
type RBAC struct {
	File                string
	Namespaces          []*corev1.Namespace
	ServiceAccount      *corev1.ServiceAccount
	Roles               []*rbacv1.Role
	ClusterRoles        []*rbacv1.ClusterRole
	RoleBindings        []*rbacv1.RoleBinding
	ClusterRoleBindings []*rbacv1.ClusterRoleBinding
}

// LoadRBAC reads and decodes an RBAC file (relative to the repository
// root, or absolute): one ServiceAccount, and Namespaces, Roles, ClusterRoles and their
// bindings, nothing else. It checks that every binding grants a role of the
// file to that ServiceAccount, so a changed file fails loudly here rather
// than as a puzzling "forbidden" in edsync's log.
func LoadRBAC(file string) (*RBAC, error) {
	repo, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(repo, filepath.FromSlash(file))
	if filepath.IsAbs(file) { // a file a test wrote (rendered from a chart)
		path = file
	}
	docs, err := YAMLDocuments(path)
	if err != nil {
		return nil, err
	}
	r := &RBAC{File: file}
	decode := scheme.Codecs.UniversalDeserializer().Decode
	for _, doc := range docs {
		obj, gvk, err := decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		switch o := obj.(type) {
		case *corev1.Namespace:
			r.Namespaces = append(r.Namespaces, o)
		case *corev1.ServiceAccount:
			if r.ServiceAccount != nil {
				return nil, fmt.Errorf("%s: more than one ServiceAccount", path)
			}
			r.ServiceAccount = o
		case *rbacv1.Role:
			r.Roles = append(r.Roles, o)
		case *rbacv1.ClusterRole:
			r.ClusterRoles = append(r.ClusterRoles, o)
		case *rbacv1.RoleBinding:
			r.RoleBindings = append(r.RoleBindings, o)
		case *rbacv1.ClusterRoleBinding:
			r.ClusterRoleBindings = append(r.ClusterRoleBindings, o)
		default:
			return nil, fmt.Errorf("%s: unexpected %v; the harness creates only Namespaces, a ServiceAccount, Roles, ClusterRoles and their bindings", path, gvk)
		}
	}
	sa := r.ServiceAccount
	if sa == nil || len(r.RoleBindings)+len(r.ClusterRoleBindings) == 0 {
		return nil, fmt.Errorf("%s: want a ServiceAccount and bindings that grant it roles", path)
	}
	bindsSA := func(subjects []rbacv1.Subject) bool {
		return slices.ContainsFunc(subjects, func(s rbacv1.Subject) bool {
			return s.Kind == rbacv1.ServiceAccountKind && s.Namespace == sa.Namespace && s.Name == sa.Name
		})
	}
	hasClusterRole := func(name string) bool {
		return slices.ContainsFunc(r.ClusterRoles, func(cr *rbacv1.ClusterRole) bool { return cr.Name == name })
	}
	for _, b := range r.RoleBindings {
		found := hasClusterRole(b.RoleRef.Name)
		if b.RoleRef.Kind == "Role" {
			found = slices.ContainsFunc(r.Roles, func(ro *rbacv1.Role) bool { return ro.Namespace == b.Namespace && ro.Name == b.RoleRef.Name })
		}
		if !found || !bindsSA(b.Subjects) {
			return nil, fmt.Errorf("%s: RoleBinding %s/%s does not grant %s %s of the file to ServiceAccount %s/%s",
				path, b.Namespace, b.Name, b.RoleRef.Kind, b.RoleRef.Name, sa.Namespace, sa.Name)
		}
	}
	for _, b := range r.ClusterRoleBindings {
		if b.RoleRef.Kind != "ClusterRole" || !hasClusterRole(b.RoleRef.Name) || !bindsSA(b.Subjects) {
			return nil, fmt.Errorf("%s: ClusterRoleBinding %s does not grant ClusterRole %s of the file to ServiceAccount %s/%s",
				path, b.Name, b.RoleRef.Name, sa.Namespace, sa.Name)
		}
	}
	return r, nil
}

// CreateRBAC creates the objects of r, each kind after those it needs
// (one that exists already is left as it is: the same file made it).
// The namespaces of its Roles that r does not create must exist.
func (c *Cluster) CreateRBAC(ctx context.Context, r *RBAC) error {
	check := func(what string, err error) error {
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("%s: create %s: %w", r.File, what, err)
		}
		return nil
	}
	rbac := c.Client.RbacV1()
	var errs []error
	for _, o := range r.Namespaces {
		_, err := c.Client.CoreV1().Namespaces().Create(ctx, o, metav1.CreateOptions{})
		errs = append(errs, check("namespace "+o.Name, err))
	}
	_, err := c.Client.CoreV1().ServiceAccounts(r.ServiceAccount.Namespace).Create(ctx, r.ServiceAccount, metav1.CreateOptions{})
	errs = append(errs, check("serviceaccount", err))
	for _, o := range r.Roles {
		_, err := rbac.Roles(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		errs = append(errs, check("role "+o.Namespace+"/"+o.Name, err))
	}
	for _, o := range r.ClusterRoles {
		_, err := rbac.ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
		errs = append(errs, check("clusterrole "+o.Name, err))
	}
	for _, o := range r.RoleBindings {
		_, err := rbac.RoleBindings(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		errs = append(errs, check("rolebinding "+o.Namespace+"/"+o.Name, err))
	}
	for _, o := range r.ClusterRoleBindings {
		_, err := rbac.ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		errs = append(errs, check("clusterrolebinding "+o.Name, err))
	}
	return errors.Join(errs...)
}

// checkForbidden fails the test if the API server refused edsync anything.
// A missing verb does not always show in the files: without `watch`, the
// informer falls back to relisting with backoff and the files still arrive,
// late. Only the log tells.
func checkForbidden(t testing.TB, e *Edsync) {
	t.Helper()
	if lines := ForbiddenLines(e.Stderr()); len(lines) > 0 {
		t.Errorf("the API server refused edsync something: %s does not grant enough:\n%s", e.rbacFile, strings.Join(lines, "\n"))
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

// EdsyncKubeconfig returns a kubeconfig that authenticates as the
// ServiceAccount of ClusterRBACFile (ServiceAccountKubeconfig).
func (c *Cluster) EdsyncKubeconfig(ctx context.Context) (string, error) {
	return c.ServiceAccountKubeconfig(ctx, ClusterRBACFile)
}

// ServiceAccountKubeconfig returns a kubeconfig that authenticates as the
// ServiceAccount of an RBAC file, with a token from the TokenRequest API.
// The first call for a file creates its objects (CreateRBAC).
func (c *Cluster) ServiceAccountKubeconfig(ctx context.Context, rbacFile string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if path := c.kubeconfigs[rbacFile]; path != "" {
		return path, nil
	}
	r, err := LoadRBAC(rbacFile)
	if err != nil {
		return "", err
	}
	if err := c.CreateRBAC(ctx, r); err != nil {
		return "", err
	}
	// A day: longer than any test run, so edsync never meets an expired token.
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(24 * 3600))}}
	sa := r.ServiceAccount
	tok, err := c.Client.CoreV1().ServiceAccounts(sa.Namespace).CreateToken(ctx, sa.Name, req, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token request for %s/%s: %w", sa.Namespace, sa.Name, err)
	}
	path := filepath.Join(c.Dir, fmt.Sprintf("edsync-sa-%d.kubeconfig", len(c.kubeconfigs)+1))
	if err := writeKubeconfig(path, c.Server, c.CAPEM, nil, nil, tok.Status.Token); err != nil {
		return "", err
	}
	if c.kubeconfigs == nil {
		c.kubeconfigs = map[string]string{}
	}
	c.kubeconfigs[rbacFile] = path
	return path, nil
}

// Edsync is a running edsync process.
type Edsync struct {
	*Proc
	stdout, stderr syncbuf.Buffer
	rbacFile       string // whose ServiceAccount it runs as, for checkForbidden
}

// StartEdsync runs the edsync binary with --kubeconfig for its
// ServiceAccount, then args. Its stdout and stderr are captured (and
// appended to edsync-N.log in the cluster folder). When the test ends, a
// still-running edsync is stopped, and if the test failed its stderr is
// logged.
func (c *Cluster) StartEdsync(t testing.TB, args ...string) *Edsync {
	t.Helper()
	return c.StartEdsyncAs(t, ClusterRBACFile, args...)
}

// StartEdsyncAs is StartEdsync as the ServiceAccount of another RBAC file
// (ServiceAccountKubeconfig).
func (c *Cluster) StartEdsyncAs(t testing.TB, rbacFile string, args ...string) *Edsync {
	t.Helper()
	kubeconfig, err := c.ServiceAccountKubeconfig(t.Context(), rbacFile)
	if err != nil {
		t.Fatal(err)
	}
	return c.startEdsync(t, rbacFile, append([]string{"--kubeconfig", kubeconfig}, args...)...)
}

// StartEdsyncArgs runs the edsync binary with args only: for a config
// file that names its sources' kubeconfigs itself (EdsyncKubeconfig's).
func (c *Cluster) StartEdsyncArgs(t testing.TB, args ...string) *Edsync {
	t.Helper()
	return c.startEdsync(t, ClusterRBACFile, args...)
}

// startEdsync runs edsync with args. Unless rbacFile is "", the test fails
// if the API server refused edsync anything: rbacFile, whose ServiceAccount
// edsync runs as, did not grant enough.
func (c *Cluster) startEdsync(t testing.TB, rbacFile string, args ...string) *Edsync {
	t.Helper()
	c.mu.Lock()
	c.nEdsync++
	n := c.nEdsync
	c.mu.Unlock()
	e := &Edsync{rbacFile: rbacFile}
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
		if rbacFile != "" {
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

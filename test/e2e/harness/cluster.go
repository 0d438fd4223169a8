// Package harness runs a real Kubernetes control plane for edsync's
// end-to-end tests: etcd, kube-apiserver and kube-controller-manager (only its
// EndpointSlice, EndpointSliceMirroring and ServiceAccount controllers), all
// on 127.0.0.1, plus the edsync binary built from this repository.
//
// There is no kubelet. Tests create a Node object and Pods bound to it with
// spec.nodeName, then write each Pod's status (Running, podIP, Ready) through
// the status subresource; the real EndpointSlice controller turns that into
// EndpointSlices, which edsync reads like it would in a cluster.
//
// Start is meant for TestMain: it finds or builds the binaries (see
// test/k8s/build.sh), makes certificates and kubeconfigs in a fresh folder,
// starts the three processes and waits until they are ready. Cluster.Stop
// stops every process it started, by PID. Processes die with the test binary
// even when it panics or is killed (see Proc.Start).
package harness

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Options for Start. The zero value is fine.
type Options struct {
	// Dir is the folder for certificates, kubeconfigs, etcd's data and the
	// logs. Default: a new temporary folder.
	Dir string
	// BinDir holds etcd, kube-apiserver and kube-controller-manager.
	// Default: $EDSYNC_K8S_BIN, else what test/k8s/build.sh prints.
	BinDir string
	// Edsync is the edsync binary. Default: built from the repository into Dir.
	Edsync string
	// MaxEndpointsPerSlice is kube-controller-manager's
	// --max-endpoints-per-slice; 0 keeps its default (100).
	MaxEndpointsPerSlice int
}

// Cluster is a running control plane.
type Cluster struct {
	Dir    string
	Edsync string // the edsync binary

	Etcd, APIServer, ControllerManager *Proc

	Server          string // https://127.0.0.1:PORT of kube-apiserver
	CAPEM           []byte // the CA that signed every certificate here
	AdminKubeconfig string // a system:masters client certificate
	AdminToken      string // also system:masters, in --token-auth-file, for curl
	Config          *rest.Config
	Client          kubernetes.Interface

	binDir  string
	kcmPort int

	mu          sync.Mutex        // scenarios may run in parallel (t.Parallel)
	kubeconfigs map[string]string // RBAC file: a kubeconfig for its ServiceAccount, made once
	nEdsync     int               // edsync processes started, to name their logs
}

// Start starts a control plane. If it fails, whatever it started is stopped.
func Start(ctx context.Context, opts Options) (c *Cluster, err error) {
	repo, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	c = &Cluster{Dir: opts.Dir, binDir: opts.BinDir, Edsync: opts.Edsync}
	if c.binDir == "" {
		if c.binDir, err = FindBinaries(repo); err != nil {
			return nil, err
		}
	}
	if c.Dir == "" {
		if c.Dir, err = os.MkdirTemp("", "edsync-e2e-"); err != nil {
			return nil, err
		}
	}
	if c.Edsync == "" {
		if c.Edsync, err = BuildEdsync(repo, c.Dir); err != nil {
			if opts.Dir == "" {
				os.RemoveAll(c.Dir) // nothing in it worth reading
			}
			return nil, err
		}
	}
	// From here on the folder holds the processes' logs, which the error
	// names: it stays. ("return nil, err" has set c to nil before this runs,
	// hence the copy.)
	started := c
	defer func() {
		if err != nil {
			started.Stop()
		}
	}()

	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	etcdPort, etcdPeerPort, apiPort := ports[0], ports[1], ports[2]
	c.kcmPort = ports[3]
	c.Server = fmt.Sprintf("https://127.0.0.1:%d", apiPort)

	if err := c.writeCredentials(); err != nil {
		return nil, err
	}

	// etcd. The peer URL must be set too: its default port 2380 may be taken.
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPeerPort)
	c.Etcd = &Proc{Name: "etcd", Path: filepath.Join(c.binDir, "etcd"), Log: filepath.Join(c.Dir, "etcd.log"), Args: []string{
		"--name=e2e",
		"--data-dir=" + filepath.Join(c.Dir, "etcd-data"),
		"--listen-client-urls=" + etcdURL,
		"--advertise-client-urls=" + etcdURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=e2e=" + peerURL,
		"--unsafe-no-fsync", // test data: speed over durability
		"--log-level=warn",
	}}
	if err := c.Etcd.Start(); err != nil {
		return nil, err
	}
	if err := waitReady(ctx, c.Etcd, 30*time.Second, func() error {
		return httpOK(http.DefaultClient, etcdURL+"/health")
	}); err != nil {
		return nil, err
	}

	d := c.Dir
	c.APIServer = &Proc{Name: "kube-apiserver", Path: filepath.Join(c.binDir, "kube-apiserver"), Log: filepath.Join(d, "kube-apiserver.log"), Args: []string{
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(apiPort),
		"--etcd-servers=" + etcdURL,
		"--tls-cert-file=" + filepath.Join(d, "apiserver.crt"),
		"--tls-private-key-file=" + filepath.Join(d, "apiserver.key"),
		"--client-ca-file=" + filepath.Join(d, "ca.crt"),
		"--token-auth-file=" + filepath.Join(d, "tokens.csv"),
		"--service-account-key-file=" + filepath.Join(d, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(d, "sa.key"),
		"--service-account-issuer=" + c.Server,
		"--authorization-mode=RBAC",
		// No kubelets and a single API server: nothing should maintain the
		// kubernetes Service's endpoints.
		"--endpoint-reconciler-type=none",
		"--service-cluster-ip-range=10.0.0.0/24",
		"--cert-dir=" + filepath.Join(d, "apiserver-certs"),
		// On SIGTERM, wait at most 2 s for open connections (edsync's and the
		// controller manager's watches) instead of --request-timeout (60 s),
		// so stopping it in a fault scenario takes seconds, not a minute.
		"--shutdown-send-retry-after=true",
	}}
	if err := c.APIServer.Start(); err != nil {
		return nil, err
	}
	if c.Config, err = clientcmd.BuildConfigFromFlags("", c.AdminKubeconfig); err != nil {
		return nil, err
	}
	// client-go's default of 5 requests per second would make creating 150
	// pods take half a minute.
	c.Config.QPS, c.Config.Burst = 1000, 2000
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return nil, err
	}
	if err := c.WaitAPIServer(ctx); err != nil {
		return nil, err
	}

	c.ControllerManager = &Proc{Name: "kube-controller-manager", Path: filepath.Join(c.binDir, "kube-controller-manager"),
		Log: filepath.Join(d, "kube-controller-manager.log"), Args: c.controllerManagerArgs(opts.MaxEndpointsPerSlice)}
	if err := c.ControllerManager.Start(); err != nil {
		return nil, err
	}
	if err := c.waitControllerManager(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Cluster) controllerManagerArgs(maxEndpointsPerSlice int) []string {
	args := []string{
		"--kubeconfig=" + filepath.Join(c.Dir, "controller-manager.kubeconfig"),
		"--controllers=endpointslice,endpointslicemirroring,serviceaccount",
		// Each controller uses its own ServiceAccount's RBAC; without this,
		// RBAC forbids the EndpointSlice controller to write slices.
		"--use-service-account-credentials=true",
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(c.kcmPort),
	}
	if maxEndpointsPerSlice > 0 {
		args = append(args, "--max-endpoints-per-slice="+strconv.Itoa(maxEndpointsPerSlice))
	}
	return args
}

// RestartControllerManager restarts kube-controller-manager with another
// --max-endpoints-per-slice (0: its default) and waits until it is healthy.
// The EndpointSlice controller then resyncs every Service's slices.
func (c *Cluster) RestartControllerManager(ctx context.Context, maxEndpointsPerSlice int) error {
	// Its exit status on SIGTERM does not matter: it is stopped either way.
	_ = c.ControllerManager.Stop(10 * time.Second)
	c.ControllerManager.Args = c.controllerManagerArgs(maxEndpointsPerSlice)
	if err := c.ControllerManager.Start(); err != nil {
		return err
	}
	return c.waitControllerManager(ctx)
}

// WaitAPIServer waits until kube-apiserver answers /readyz with "ok": storage,
// RBAC bootstrap roles and every post-start hook are done. Fault scenarios
// call it after starting the API server again.
func (c *Cluster) WaitAPIServer(ctx context.Context) error {
	return waitReady(ctx, c.APIServer, 60*time.Second, func() error {
		body, err := c.Client.CoreV1().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("%v: %s", err, body)
		}
		return nil
	})
}

// waitControllerManager waits for its /healthz and then for the
// ServiceAccount controller to have made the default ServiceAccount, without
// which Pods cannot be created in the default namespace.
func (c *Cluster) waitControllerManager(ctx context.Context) error {
	// Its serving certificate is self-signed in memory; only the health
	// answer matters here, and /healthz needs no credentials.
	insecure := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	url := fmt.Sprintf("https://127.0.0.1:%d/healthz", c.kcmPort)
	if err := waitReady(ctx, c.ControllerManager, 60*time.Second, func() error {
		return httpOK(insecure, url)
	}); err != nil {
		return err
	}
	return waitReady(ctx, c.ControllerManager, 60*time.Second, func() error {
		_, err := c.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	})
}

// Stop stops kube-controller-manager, kube-apiserver and etcd, in that order
// (each by its PID, SIGTERM then SIGKILL after 10 s), and edsync processes
// started by StartEdsync that are still running.
func (c *Cluster) Stop() {
	c.StopProcesses()
	KillAll()
}

// StopProcesses stops this control plane's processes only: for a second
// one a test starts beside the main one (Stop kills every process the
// harness started).
func (c *Cluster) StopProcesses() {
	for _, p := range []*Proc{c.ControllerManager, c.APIServer, c.Etcd} {
		if p != nil {
			_ = p.Stop(10 * time.Second)
		}
	}
}

// writeCredentials writes the CA, the API server's serving certificate, the
// client certificates and kubeconfigs, the token file and the
// ServiceAccount key pair into c.Dir.
func (c *Cluster) writeCredentials() error {
	d := c.Dir
	ca, err := newCA()
	if err != nil {
		return err
	}
	c.CAPEM = ca.certPEM
	write := func(name string, data []byte) error {
		return os.WriteFile(filepath.Join(d, name), data, 0o600)
	}
	if err := write("ca.crt", ca.certPEM); err != nil {
		return err
	}
	crt, key, err := ca.issue("kube-apiserver", nil, []net.IP{net.IPv4(127, 0, 0, 1)}, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return err
	}
	if err := write("apiserver.crt", crt); err != nil {
		return err
	}
	if err := write("apiserver.key", key); err != nil {
		return err
	}

	crt, key, err = ca.issue("e2e-admin", []string{"system:masters"}, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return err
	}
	c.AdminKubeconfig = filepath.Join(d, "admin.kubeconfig")
	if err := writeKubeconfig(c.AdminKubeconfig, c.Server, ca.certPEM, crt, key, ""); err != nil {
		return err
	}
	// The user name the bootstrap RBAC policy grants the controller manager's
	// rights to.
	crt, key, err = ca.issue("system:kube-controller-manager", nil, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return err
	}
	if err := writeKubeconfig(filepath.Join(d, "controller-manager.kubeconfig"), c.Server, ca.certPEM, crt, key, ""); err != nil {
		return err
	}

	// token,user,uid,"group1,group2"
	c.AdminToken = strconv.FormatInt(time.Now().UnixNano(), 36) + "-e2e-admin"
	if err := write("tokens.csv", []byte(c.AdminToken+`,e2e-token-admin,e2e-token-admin,"system:masters"`+"\n")); err != nil {
		return err
	}
	_, _, err = serviceAccountKeys(d)
	return err
}

// waitReady polls check every 100 ms until it succeeds, the timeout passes,
// or p exits (then the error carries the end of its log).
func waitReady(ctx context.Context, p *Proc, timeout time.Duration, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if last = check(); last == nil {
			return nil
		}
		select {
		case <-p.Exited():
			return fmt.Errorf("%s (pid %d): %w (exit code %d); end of %s:\n%s",
				p.Name, p.PID(), errExited, p.ExitCode(), p.Log, p.LogTail(30))
		case <-ctx.Done():
			return fmt.Errorf("%s (pid %d) not ready (%v; limit %v): %v; end of %s:\n%s",
				p.Name, p.PID(), ctx.Err(), timeout, last, p.Log, p.LogTail(30))
		case <-tick.C:
		}
	}
}

func httpOK(client *http.Client, url string) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// freePorts asks the kernel for n free loopback ports. All listeners stay
// open until the last is chosen, so the n ports differ. Another process could
// take one before our child binds it; on a test machine that is rare enough.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// RepoRoot is the edsync repository: the first folder upwards from the
// working directory that holds test/k8s/build.sh.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "test", "k8s", "build.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no test/k8s/build.sh above the working directory")
		}
		dir = parent
	}
}

// Binaries is FindBinaries for the repository above the working directory.
// It has no deadline: a cold build takes as long as it takes, printing its
// progress on stderr, and the caller starts the control plane's own
// deadline after it.
func Binaries() (string, error) {
	repo, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return FindBinaries(repo)
}

// FindBinaries returns the folder with etcd, kube-apiserver and
// kube-controller-manager: $EDSYNC_K8S_BIN if set, else the last line that
// test/k8s/build.sh prints (it returns at once when its cache is warm and
// builds for 7 to 30 minutes when it is cold; its progress goes to stderr).
func FindBinaries(repo string) (string, error) {
	dir := os.Getenv("EDSYNC_K8S_BIN")
	if dir == "" {
		cmd := exec.Command("bash", filepath.Join(repo, "test", "k8s", "build.sh"))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("test/k8s/build.sh: %w", err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		dir = lines[len(lines)-1]
	}
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return "", fmt.Errorf("binaries: %w", err)
		}
	}
	return dir, nil
}

// BuildEdsync builds the edsync binary from the repository into dir, the way
// a user would build it.
func BuildEdsync(repo, dir string) (string, error) {
	out := filepath.Join(dir, "edsync")
	cmd := exec.Command("go", "build", "-o", out, "github.com/edsync/edsync")
	cmd.Dir = repo
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build edsync: %v\n%s", err, stderr.String())
	}
	return out, nil
}

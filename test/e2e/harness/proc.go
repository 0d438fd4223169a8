package harness

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is one process the harness started: etcd, kube-apiserver,
// kube-controller-manager or edsync. It can be stopped and started again with
// the same arguments (same ports, same data folder), which is what the fault
// scenarios need.
type Proc struct {
	Name string
	Path string
	Args []string
	// Log collects stdout and stderr, appended across restarts.
	Log string
	// Stdout and Stderr, when set, also receive the process's output.
	Stdout, Stderr io.Writer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has been waited for
	err  error         // its exit status, valid after done
}

// Start starts the process. Every process gets its own process group, so that
// stopping it also reaches anything it forked, and Pdeathsig, so that the
// kernel kills it if the test binary dies without running its cleanups (a
// panic in a test, the -timeout alarm, SIGKILL).
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("%s: already running as pid %d", p.Name, p.cmd.Process.Pid)
		}
	}
	logf, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== %s: %s %s\n", time.Now().Format(time.RFC3339Nano), p.Path, strings.Join(p.Args, " "))
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if p.Stdout != nil {
		cmd.Stdout = io.MultiWriter(logf, p.Stdout)
	}
	if p.Stderr != nil {
		cmd.Stderr = io.MultiWriter(logf, p.Stderr)
	}
	// Pdeathsig fires when the thread that forked the child exits. Go only
	// ends a thread when a goroutine locked to it returns, which nothing in
	// these tests does, so in practice it fires when the test binary exits.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	track(p)
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		untrack(p)
		close(done)
	}()
	return nil
}

// PID is the process id of the running process, 0 if it never started.
func (p *Proc) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Exited is closed when the process has exited (nil before the first Start).
func (p *Proc) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// Running reports whether the process has started and not yet exited.
func (p *Proc) Running() bool {
	done := p.Exited()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM to the process group and waits up to grace for the
// process to exit, then sends SIGKILL. It returns the exit status: nil for
// exit code 0, an *exec.ExitError otherwise (etcd, for one, dies of the
// SIGTERM itself: "signal: terminated"). Stopping a process that is not
// running returns its last status. Use Kill for a crash.
func (p *Proc) Stop(grace time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	pgid := cmd.Process.Pid // Setpgid: the group id is the leader's pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-done
	}
	// Also reap anything the process forked that outlived it.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Kill sends SIGKILL to the process group and waits for the process.
func (p *Proc) Kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
}

// ExitCode is the exit code of the last run: -1 while running or when killed
// by a signal.
func (p *Proc) ExitCode() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.ProcessState == nil {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// LogTail is the end of the process's log, for error messages.
func (p *Proc) LogTail(lines int) string {
	b, err := os.ReadFile(p.Log)
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// errExited is returned by waits that gave up because the process died.
var errExited = errors.New("process exited")

// All running processes, so that a signal to the test binary can kill them
// before it exits (a signal does not run deferred functions or cleanups).
var (
	runningMu sync.Mutex
	running   = map[*Proc]bool{}
	onSignal  sync.Once
)

func track(p *Proc) {
	runningMu.Lock()
	defer runningMu.Unlock()
	running[p] = true
	onSignal.Do(func() {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
		go func() {
			s := <-sigs
			fmt.Fprintf(os.Stderr, "harness: %v: killing the processes it started\n", s)
			KillAll()
			os.Exit(2)
		}()
	})
}

func untrack(p *Proc) {
	runningMu.Lock()
	defer runningMu.Unlock()
	delete(running, p)
}

// KillAll kills every process the harness started that is still running.
func KillAll() {
	runningMu.Lock()
	procs := make([]*Proc, 0, len(running))
	for p := range running {
		procs = append(procs, p)
	}
	runningMu.Unlock()
	for _, p := range procs {
		p.Kill()
	}
}

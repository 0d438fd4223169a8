//go:build linux

package envoywatch

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Envoy is another process than edsync: a reader in edsync's own process
// would share its Go scheduler and its processors' time with the code it
// measures. Process runs the event loop in a process of its own, the test
// binary run again with ProcessEnv set, whose TestMain calls Serve.

// ProcessEnv, set in a test binary's environment, makes its TestMain serve
// as the reader (Serve) instead of running tests.
const ProcessEnv = "EDSYNC_ENVOYWATCH_PATHS"

// Process is a reader running in a child process.
type Process struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

// StartProcess starts the test binary exe again as a reader of the files
// at paths and returns once its subscriptions are made. It returns
// ErrLimit if the inotify instances ran out.
func StartProcess(exe string, paths []string) (*Process, error) {
	list, err := os.CreateTemp("", "envoywatch-paths-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(list.Name())
	_, err = io.WriteString(list, strings.Join(paths, "\n"))
	if cerr := list.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), ProcessEnv+"="+list.Name())
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{cmd: cmd, in: in, out: bufio.NewReader(stdout)}
	line, err := p.out.ReadString('\n')
	if err != nil || line != "ready\n" {
		in.Close()
		cmd.Wait()
		if strings.Contains(line, ErrLimit.Error()) {
			return nil, ErrLimit
		}
		return nil, fmt.Errorf("envoywatch process: %q, %v", line, err)
	}
	return p, nil
}

// Stop ends the reader once it has read every event queued by then and
// returns what it read and the CPU time of its event loop's thread.
func (p *Process) Stop() (Counts, time.Duration, error) {
	p.in.Close()
	var c Counts
	var cpu time.Duration
	line, err := p.out.ReadString('\n')
	if err == nil {
		_, err = fmt.Sscanf(line, "%d %d %d %d\n", &c.Woken, &c.Events, &c.Reloads, &cpu)
	}
	if werr := p.cmd.Wait(); err == nil {
		err = werr
	}
	return c, cpu, err
}

// Serve is the child's side: it makes the subscriptions of the paths
// listed (one per line) in the file named by ProcessEnv, says "ready",
// runs the event loop until its standard input closes, then prints what
// it read: woken, events, reloads and the loop's CPU time in nanoseconds.
func Serve(stdin io.Reader, stdout io.Writer) error {
	data, err := os.ReadFile(os.Getenv(ProcessEnv))
	if err != nil {
		return err
	}
	r, err := New(strings.Split(string(data), "\n"))
	if err != nil {
		fmt.Fprintf(stdout, "%v\n", err)
		return err
	}
	defer r.Close()
	l := r.Start()
	fmt.Fprintln(stdout, "ready")
	_, err = io.Copy(io.Discard, stdin)
	if serr := l.Stop(); err == nil {
		err = serr
	}
	c, cpu := l.Read()
	fmt.Fprintf(stdout, "%d %d %d %d\n", c.Woken, c.Events, c.Reloads, int64(cpu))
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return err
}

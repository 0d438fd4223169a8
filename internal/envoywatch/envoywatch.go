//go:build linux

// Package envoywatch stands in, in tests and benchmarks, for what Envoy
// does to read file-based xDS: Envoy cannot run on the development
// machines, and its side of a file update is part of edsync's cost.
//
// It is built as Envoy builds it (envoyproxy/envoy, read 2026-12):
//
//   - every path_config_source subscription makes a watcher of its own
//     (source/extensions/config_subscription/filesystem/
//     filesystem_subscription_impl.cc: dispatcher.createFilesystemWatcher()
//     per subscription), and each watcher is one inotify instance
//     (source/common/filesystem/inotify/watcher_impl.cc:
//     inotify_init1(IN_NONBLOCK); Envoy aborts with a RELEASE_ASSERT when
//     it cannot get one, which is what fs.inotify.max_user_instances
//     limits);
//   - the watch is on the file's folder, never the file:
//     inotify_add_watch(fd, directory, IN_MODIFY | IN_MOVED_TO), and each
//     event is matched against the watched file's name in user space, so a
//     rename of any file in the folder wakes every subscription there;
//   - the instance's descriptor is an edge-triggered read event on the
//     main thread's event loop, and a wake-up reads the descriptor until
//     EAGAIN (a buffer of one event plus NAME_MAX);
//   - only a rename onto the file (IN_MOVED_TO) reloads it: the
//     subscription registers for MovedTo only.
//
// A Reader is N such subscriptions on one event loop (epoll, as libevent
// uses on Linux). It counts what an update costs that loop: subscriptions
// woken, events read, reloads (events naming the subscription's own file),
// and the CPU time of the goroutine's thread that ran the loop.
package envoywatch

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// Envoy's inotify mask (watcher_impl.cc).
const mask = syscall.IN_MODIFY | syscall.IN_MOVED_TO

// Reader is N Envoy file subscriptions and the event loop that reads them.
// It is not safe for concurrent use: one goroutine runs it, as Envoy's
// main thread does.
type Reader struct {
	epfd int
	subs []subscription
	buf  []byte
	evs  []syscall.EpollEvent
}

type subscription struct {
	fd   int
	file string // the base name the subscription reloads on
}

// Counts is what a Reader saw.
type Counts struct {
	Woken   int // subscriptions whose descriptor was ready and read
	Events  int // inotify events read, in every subscription
	Reloads int // events that made a subscription reload its file
}

// Add adds b to c.
func (c *Counts) Add(b Counts) {
	c.Woken += b.Woken
	c.Events += b.Events
	c.Reloads += b.Reloads
}

// ErrLimit is returned by New when the inotify instances run out: what
// fs.inotify.max_user_instances allows for the user on the machine.
var ErrLimit = errors.New("no inotify instance left (fs.inotify.max_user_instances)")

// New makes one subscription per path, as Envoy does for each cluster
// whose EDS (or CDS) config is a path_config_source on that path.
func New(paths []string) (*Reader, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	r := &Reader{
		epfd: epfd,
		buf:  make([]byte, syscall.SizeofInotifyEvent+syscall.NAME_MAX+1),
	}
	for i, path := range paths {
		fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
		if err != nil {
			r.Close()
			if errors.Is(err, syscall.EMFILE) {
				return nil, fmt.Errorf("subscription %d of %d: %w", i+1, len(paths), ErrLimit)
			}
			return nil, fmt.Errorf("inotify_init1: %w", err)
		}
		r.subs = append(r.subs, subscription{fd: fd, file: filepath.Base(path)})
		if _, err := syscall.InotifyAddWatch(fd, filepath.Dir(path), mask); err != nil {
			r.Close()
			return nil, fmt.Errorf("inotify_add_watch %s: %w", filepath.Dir(path), err)
		}
		const epollET = 1 << 31 // EPOLLET, negative in package syscall
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | epollET, Fd: int32(len(r.subs) - 1)}
		if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
			r.Close()
			return nil, fmt.Errorf("epoll_ctl: %w", err)
		}
	}
	// One epoll_wait returns every ready subscription, as libevent's
	// epoll backend grows its array (to 32,000) when a wait fills it.
	r.evs = make([]syscall.EpollEvent, min(len(r.subs)+1, 32000))
	return r, nil
}

// Len is the number of subscriptions.
func (r *Reader) Len() int { return len(r.subs) }

// Close releases every instance.
func (r *Reader) Close() error {
	for _, s := range r.subs {
		syscall.Close(s.fd)
	}
	r.subs = nil
	return syscall.Close(r.epfd)
}

// Poll runs one turn of the event loop: it waits up to timeout (0: not at
// all, negative: until something is ready) and reads every ready
// subscription until EAGAIN. It returns what it read and, for each
// subscription that reloaded, its index, in the order handled.
func (r *Reader) Poll(timeout time.Duration, reloaded []int) (Counts, []int, error) {
	ms := -1
	if timeout >= 0 {
		ms = int(timeout / time.Millisecond)
	}
	var c Counts
	n, err := syscall.EpollWait(r.epfd, r.evs, ms)
	if errors.Is(err, syscall.EINTR) {
		return c, reloaded, nil
	}
	if err != nil {
		return c, reloaded, fmt.Errorf("epoll_wait: %w", err)
	}
	for _, ev := range r.evs[:n] {
		i := int(ev.Fd)
		c.Woken++
		loads, events, err := r.read(r.subs[i])
		if err != nil {
			return c, reloaded, err
		}
		c.Events += events
		c.Reloads += loads
		if loads > 0 {
			reloaded = append(reloaded, i)
		}
	}
	return c, reloaded, nil
}

// read drains one subscription's descriptor, as onInotifyEvent does, and
// returns the events naming its file with IN_MOVED_TO (a reload each) and
// all events read.
func (r *Reader) read(s subscription) (loads, events int, err error) {
	for {
		n, err := syscall.Read(s.fd, r.buf)
		if errors.Is(err, syscall.EAGAIN) {
			return loads, events, nil
		}
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return loads, events, fmt.Errorf("read inotify: %w", err)
		}
		for off := 0; off+syscall.SizeofInotifyEvent <= n; {
			ev := (*syscall.InotifyEvent)(unsafe.Pointer(&r.buf[off]))
			name := r.buf[off+syscall.SizeofInotifyEvent : off+syscall.SizeofInotifyEvent+int(ev.Len)]
			for len(name) > 0 && name[len(name)-1] == 0 {
				name = name[:len(name)-1]
			}
			events++
			if ev.Mask&syscall.IN_MOVED_TO != 0 && string(name) == s.file {
				loads++
			}
			off += syscall.SizeofInotifyEvent + int(ev.Len)
		}
	}
}

// ThreadCPU is the CPU time (user and system) of the calling goroutine's
// thread so far: call it from a goroutine locked to its thread
// (runtime.LockOSThread) to measure what its event loop cost.
func ThreadCPU() time.Duration {
	const rusageThread = 1 // RUSAGE_THREAD
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Loop runs a Reader's event loop on a thread of its own, as Envoy's main
// thread runs its dispatcher, until Stop. Its counts and CPU time may be
// read while it runs.
type Loop struct {
	r    *Reader
	stop atomic.Bool
	done chan error

	mu     sync.Mutex
	counts Counts
	cpu    time.Duration // the loop thread's, since Start
	turns  int           // turns that read something
	wake   chan struct{} // closed and remade at the end of each such turn
}

// pollEvery bounds how long Stop waits for the loop to see it.
const pollEvery = 20 * time.Millisecond

// Start runs the event loop of r until Stop; r must not be used otherwise
// meanwhile.
func (r *Reader) Start() *Loop {
	l := &Loop{r: r, done: make(chan error, 1), wake: make(chan struct{})}
	started := make(chan struct{})
	go func() {
		runtime.LockOSThread() // the thread's CPU time is the loop's
		defer runtime.UnlockOSThread()
		cpu0 := ThreadCPU()
		close(started)
		for {
			stopping := l.stop.Load()
			timeout := pollEvery
			if stopping {
				timeout = 0 // drain what is queued, then end
			}
			c, _, err := r.Poll(timeout, nil)
			l.mu.Lock()
			l.counts.Add(c)
			l.cpu = ThreadCPU() - cpu0
			if c.Woken > 0 {
				l.turns++
				close(l.wake)
				l.wake = make(chan struct{})
			}
			l.mu.Unlock()
			if err != nil || stopping && c.Woken == 0 {
				l.done <- err
				return
			}
		}
	}()
	<-started
	return l
}

// Read returns what the loop has read so far and its thread's CPU time.
func (l *Loop) Read() (Counts, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts, l.cpu
}

// Turns is the number of turns of the loop that read something so far.
func (l *Loop) Turns() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.turns
}

// WaitTurn waits until more than after turns have read something, or
// timeout has passed (a guard: it returns false then). A caller that
// reads Turns, changes a file and waits for a turn past it lets the loop
// handle each change on its own, as at a few changes a second.
func (l *Loop) WaitTurn(after int, timeout time.Duration) bool {
	guard := time.After(timeout)
	for {
		l.mu.Lock()
		turns, wake := l.turns, l.wake
		l.mu.Unlock()
		if turns > after {
			return true
		}
		select {
		case <-wake:
		case <-guard:
			return false
		}
	}
}

// Stop ends the loop once it has read every event queued by then, and
// returns its last error.
func (l *Loop) Stop() error {
	l.stop.Store(true)
	return <-l.done
}

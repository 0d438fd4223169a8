package pipeline

import (
	"time"

	"github.com/edsync/edsync/writer"
)

// Envoy's inotify budget. Each file Envoy reads costs it an inotify
// instance and a watch (writer.InotifyLimits), and Envoy aborts when it
// cannot make an instance: fs.inotify.max_user_instances is 128 by
// default, for every process of Envoy's user on the node. The pipeline
// compares what an Envoy reading every file it publishes needs with the
// limits, and says so once each time the need crosses a limit.

// inotifyBudget is the pipeline's state for it; owned by its goroutine.
type inotifyBudget struct {
	// read reads the limits; nil when there are no files (dry-run).
	read func() (writer.InotifyLimits, error)
	// limits as last read; known says whether a read succeeded.
	limits writer.InotifyLimits
	known  bool
	// readFor is the need when the limits were last read, and readAt
	// when: they are read again only while the need passes them (an
	// operator may raise them), when the need grows or a minute after the
	// last read, so that a flush costs no file read in the steady state.
	readFor int
	readAt  time.Time
	// over names the limit the need passes, as last warned ("" if none).
	over    string
	started bool
}

// inotifyNeed is what an Envoy reading every file needs: an instance (and
// a watch) per cluster file, and one for the CDS file.
func (p *Pipeline) inotifyNeed() int {
	n := p.published.total.Clusters
	if p.cds != nil {
		n++
	}
	return n
}

// checkInotify compares the need with the limits after a flush: at start,
// and while the need passes a limit. It warns once per crossing, and says
// when the need is back within the limits (the limits raised, or fewer
// files).
func (p *Pipeline) checkInotify() {
	b := &p.inotify
	if b.read == nil {
		return
	}
	need, now := p.inotifyNeed(), p.now()
	over := b.known && (need > b.limits.Instances || need > b.limits.Watches)
	if !b.started || over && (need > b.readFor || now.Sub(b.readAt) >= time.Minute) {
		b.started = true
		b.readFor, b.readAt = need, now
		l, err := b.read()
		switch {
		case err != nil && b.known:
			p.log.Debug("inotify limits not read again; keeping the last ones", "error", err)
		case err != nil:
			p.log.Info("inotify limits unknown: Envoy's need is not checked", "error", err)
		default:
			b.limits, b.known = l, true
		}
	}
	p.metrics.InotifyBudget(need, b.limits)
	if !b.known {
		return
	}
	sysctl, limit := "", 0
	switch {
	case need > b.limits.Instances:
		sysctl, limit = "fs.inotify.max_user_instances", b.limits.Instances
	case need > b.limits.Watches:
		sysctl, limit = "fs.inotify.max_user_watches", b.limits.Watches
	}
	if sysctl == b.over {
		return
	}
	b.over = sysctl
	if sysctl == "" {
		p.log.Info("an Envoy reading every file edsync publishes is within the inotify limits again", "needed", need,
			"max_user_instances", b.limits.Instances, "max_user_watches", b.limits.Watches)
		return
	}
	p.log.Warn("an Envoy reading every file edsync publishes needs more than "+sysctl+" allows its user on this node (an inotify instance and a watch per file); "+
		"Envoy aborts when it cannot make them: raise it (sysctl -w "+sysctl+"=N, N at least the need plus what other processes of that user use)",
		"sysctl", sysctl, "limit", limit, "needed", need)
}

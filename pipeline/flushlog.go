package pipeline

import (
	"time"

	"github.com/edsync/edsync/writer"
)

// flushCounts sums up the flushes since the last summary line.
type flushCounts struct {
	flushes, services, written, unchanged, failed int
}

func (c *flushCounts) add(services int, res writer.Result) {
	c.flushes++
	c.services += services
	c.written += res.Written
	c.unchanged += res.Unchanged
	c.failed += res.Failed
}

// worthALine reports whether the flushes changed or failed anything: a run
// of flushes that found every file right stays at Debug.
func (c *flushCounts) worthALine() bool { return c.written > 0 || c.failed > 0 }

// writtenKey names the count of files written in log lines: in a dry run
// they are printed, and "written" would say they are on disk.
func (p *Pipeline) writtenKey() string {
	if p.dryRun {
		return "printed"
	}
	return "written"
}

// summaryDue returns when the next summary line is due, if one is waiting.
// The first after a quiet spell is due at once, so a lone change shows
// without delay; under churn, one line per summaryEvery.
func (p *Pipeline) summaryDue() (time.Time, bool) {
	if !p.summary.worthALine() {
		return time.Time{}, false
	}
	if p.lastSummary.IsZero() {
		return time.Time{}, true // long due
	}
	return p.lastSummary.Add(p.summaryEvery), true
}

// logSummary logs the flushes since the last line at Info if the line is
// due at now (or force, at shutdown), and starts a new count.
func (p *Pipeline) logSummary(now time.Time, force bool) {
	at, ok := p.summaryDue()
	if !ok || (!force && now.Before(at)) {
		return
	}
	c := p.summary
	p.log.Info("flushed", "flushes", c.flushes, "services", c.services,
		p.writtenKey(), c.written, "unchanged", c.unchanged, "failed", c.failed)
	p.summary = flushCounts{}
	p.lastSummary = now
}

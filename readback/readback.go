// Package readback asks Envoy's admin API what Envoy did with the files
// edsync writes. File-based xDS has no ACK or NACK, but Envoy keeps, for
// each subscription, the version_info it last applied (the text readout
// cluster.<name>.version_text; cluster_manager.cds.version_text for the
// CDS file) and counts the files it refused (update_rejected: the file
// parsed but its resource was refused; update_failure: it did not parse).
// edsync's version_info is a hash of the content, so comparing the two
// says, per cluster: applied, pending or rejected (package status).
//
// Cost, on Envoy's side first: every /stats request walks all the stats of
// the types it asks for, whatever its filter (Envoy's admin runs on its
// main thread, the one that also reads the files). Text readouts are few
// (about one per subscription), counters a hundred or more per cluster. So
// a poll asks for the text readouts only; the counters are asked for only
// when a file is not applied yet, and every refreshEvery polls, so that a
// file written later has a count from before its rename to compare with.
// A poll never holds up writing: it runs on its own goroutine and takes
// the status Board's lock only to copy what to look for and to record
// what it saw.
package readback

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/edsync/edsync/status"
)

// Board is what the read-back looks for and tells: a status.Board.
type Board interface {
	Expected(buf []status.Expect) ([]status.Expect, *status.Expect)
	Report(at time.Time, up bool, seen []status.Seen, cds *status.Seen)
}

// Metrics is what the read-back reports; internal/metrics implements it.
type Metrics interface {
	// States is the number of files in each state after a poll.
	States(counts map[status.State]int)
	// Applied is the time from a file's rename to the poll that saw Envoy
	// report its version (its resolution is the poll interval).
	Applied(time.Duration)
	// Rejected counts a version Envoy refused (once per version).
	Rejected()
	// AdminUp says whether Envoy's admin answered the last poll.
	AdminUp(bool)
}

// Options configure a Poller.
type Options struct {
	// Admin is Envoy's admin address, e.g. http://127.0.0.1:9901.
	Admin *url.URL
	// Interval between polls; 0 is 1 s. While the admin does not answer,
	// it doubles up to MaxBackoff (0: 30 s).
	Interval, MaxBackoff time.Duration
	// Timeout bounds one request; 0 is 5 s.
	Timeout time.Duration
	Client  *http.Client // nil: a client of its own
	Board   Board
	Clock   func() time.Time // nil: time.Now
	Logger  *slog.Logger     // nil: discard
	Metrics Metrics          // nil: none
	// OnPoll, if set, is called after each poll with its error (tests
	// wait on it).
	OnPoll func(error)
}

// refreshEvery is how many polls may pass without the counters being
// asked for: the count a later rename is compared with is at most this
// many polls old.
const refreshEvery = 30

// maxBody bounds an admin response: 10,000 clusters' counters are about
// 1.5 MB; an admin that sends more is not Envoy's.
const maxBody = 64 << 20

// Poller reads Envoy back.
type Poller struct {
	opts   Options
	client *http.Client
	log    *slog.Logger
	now    func() time.Time

	up        bool // the last poll got an answer
	downSince time.Time
	polls     int
	// counts holds, per stat name of a cluster (its stat-name form) the
	// last two counts of refusals seen, with when they were read; track
	// holds per cluster what was judged of its current version. Both lose
	// the clusters no longer expected, at each poll.
	counts map[string]*countsSeen
	track  map[string]*tracked
	// Reused from poll to poll: at 10,000 clusters each is sizeable.
	buf      []status.Expect
	seen     []status.Seen
	versions map[string]string
	refusals map[string]uint64
	gen      uint64 // the poll's number, marking what it saw alive
}

// observation is a count of refusals (update_rejected + update_failure)
// read in a request that ended at end; present is false when Envoy had no
// such subscription then.
type observation struct {
	present bool
	value   uint64
	end     time.Time
}

type countsSeen struct {
	last, prev observation
	gen        uint64 // the last poll that expected its cluster
}

// tracked is what was judged of one version of a cluster's file.
type tracked struct {
	version   string
	baseline  uint64 // refusals before its rename
	baseKnown bool
	state     status.State
	logged    bool   // its rejection was logged
	gen       uint64 // the last poll that expected it
}

// New makes a Poller.
func New(opts Options) (*Poller, error) {
	if opts.Admin == nil || (opts.Admin.Scheme != "http" && opts.Admin.Scheme != "https") || opts.Admin.Host == "" {
		return nil, errors.New("readback: want Envoy's admin as http://HOST:PORT")
	}
	if opts.Board == nil {
		return nil, errors.New("readback: no board")
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	p := &Poller{opts: opts, client: opts.Client, log: opts.Logger, now: opts.Clock,
		counts: make(map[string]*countsSeen), track: make(map[string]*tracked),
		versions: make(map[string]string), refusals: make(map[string]uint64)}
	if p.client == nil {
		p.client = &http.Client{}
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = p.log.With("component", "readback")
	if p.now == nil {
		p.now = time.Now
	}
	if p.opts.Metrics == nil {
		p.opts.Metrics = noMetrics{}
	}
	return p, nil
}

// Run polls until ctx ends. The first poll is at once.
func (p *Poller) Run(ctx context.Context) error {
	wait := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		err := p.Poll(ctx)
		if p.opts.OnPoll != nil {
			p.opts.OnPoll(err)
		}
		// Backed off while the admin does not answer.
		if err == nil || wait < p.opts.Interval {
			wait = p.opts.Interval
		} else {
			wait = min(2*wait, p.opts.MaxBackoff)
		}
	}
}

// Poll reads Envoy back once and records what it saw on the Board.
func (p *Poller) Poll(ctx context.Context) error {
	p.polls++
	versions, _, err := p.stats(ctx, "TextReadouts", versionFilter)
	if err != nil {
		p.down(err)
		return err
	}
	// What to look for is read after Envoy's versions: a file renamed in
	// between is judged pending, not against a version read before it.
	exp, cds := p.opts.Board.Expected(p.buf[:0])
	p.buf = exp[:0]
	mismatch := false
	for _, e := range exp {
		if v, ok := versions[statName(e.Cluster)]; ok && v != e.Version {
			mismatch = true
			break
		}
	}
	if cds != nil && versions[cdsKey] != cds.Version {
		mismatch = true
	}
	if mismatch || p.polls%refreshEvery == 1 {
		_, counts, err := p.stats(ctx, "Counters", refusalFilter)
		if err != nil {
			p.down(err)
			return err
		}
		p.observe(counts, p.now())
	}
	p.isUp()
	at := p.now()
	p.gen++
	seen := p.seen[:0]
	tally := map[status.State]int{}
	for _, e := range exp {
		s := p.judge(e, statName(e.Cluster), versions, at)
		seen = append(seen, s)
		tally[s.State]++
	}
	var cdsSeen *status.Seen
	if cds != nil {
		s := p.judge(*cds, cdsKey, versions, at)
		cdsSeen = &s
		tally[s.State]++
	}
	// Nothing kept for a cluster no longer published.
	for name, tr := range p.track {
		if tr.gen != p.gen {
			delete(p.track, name)
		}
	}
	// A count is kept while its cluster is expected, or while the last
	// read of the counters had it: it is what a file written later is
	// judged against (at start, Envoy's subscriptions are read before
	// edsync's first write).
	for key, c := range p.counts {
		if c.gen != p.gen && !c.last.present {
			delete(p.counts, key)
		}
	}
	p.opts.Board.Report(at, true, seen, cdsSeen)
	p.seen = seen[:0]
	p.opts.Metrics.States(tally)
	return nil
}

// judge decides the state of one expected file, whose subscription's
// stats are under key.
func (p *Poller) judge(e status.Expect, key string, versions map[string]string, at time.Time) status.Seen {
	seen := status.Seen{Cluster: e.Cluster, Expected: e.Version}
	v, known := versions[key]
	seen.Version = v
	tr := p.track[e.Cluster]
	if tr == nil || tr.version != e.Version {
		tr = &tracked{version: e.Version, state: status.StateUnknown}
		tr.baseline, tr.baseKnown = p.baselineBefore(key, e.Written)
		p.track[e.Cluster] = tr
	}
	tr.gen = p.gen
	if c := p.counts[key]; c != nil {
		c.gen = p.gen
	}
	switch {
	case !known:
		seen.State = status.StateUnknown
	case v == e.Version:
		if tr.state != status.StateApplied && e.Renamed {
			p.opts.Metrics.Applied(max(at.Sub(e.Written), 0))
		}
		seen.State = status.StateApplied
	default:
		seen.State = status.StatePending
		if c := p.counts[key]; c != nil && c.last.present && tr.baseKnown {
			if c.last.value < tr.baseline {
				// Envoy's counters went back: it restarted, and every
				// file it read since is at least as new as this one.
				tr.baseline = 0
			}
			if c.last.value > tr.baseline {
				seen.State = status.StateRejected
			}
		}
	}
	if seen.State == status.StateRejected && !tr.logged {
		tr.logged = true
		p.opts.Metrics.Rejected()
		p.log.Error("Envoy refused the file; it keeps its previous endpoints (its log says why)",
			"cluster", e.Cluster, "path", e.File, "version", e.Version, "envoy_version", v)
	}
	tr.state = seen.State
	return seen
}

// baselineBefore returns the count of refusals of the subscription key
// read last before t: a count that grows past it was a refusal of a file
// renamed at t or later. A subscription Envoy did not have then counts 0.
func (p *Poller) baselineBefore(key string, t time.Time) (uint64, bool) {
	c := p.counts[key]
	if c == nil {
		return 0, false
	}
	for _, o := range []observation{c.last, c.prev} {
		if !o.end.IsZero() && o.end.Before(t) {
			return o.value, true
		}
	}
	return 0, false
}

// observe records a read of the refusal counts, ended at end; a
// subscription missing from it counts as absent (0) for files renamed
// after it.
func (p *Poller) observe(counts map[string]uint64, end time.Time) {
	restarted := false
	for key, c := range p.counts {
		v, ok := counts[key]
		if ok && c.last.present && v < c.last.value {
			restarted = true
		}
		c.prev, c.last = c.last, observation{present: ok, value: v, end: end}
	}
	for key, v := range counts {
		if p.counts[key] == nil {
			p.counts[key] = &countsSeen{last: observation{present: true, value: v, end: end}}
		}
	}
	if restarted {
		p.log.Info("Envoy's counters went back: it restarted")
	}
}

func (p *Poller) down(err error) {
	if p.up || p.downSince.IsZero() {
		p.log.Info("Envoy's admin does not answer; the files' states are unknown until it does", "admin", p.opts.Admin.Redacted(), "error", err)
		p.downSince = p.now()
	}
	p.up = false
	p.opts.Metrics.AdminUp(false)
	p.opts.Board.Report(p.now(), false, nil, nil)
	tally := map[status.State]int{}
	exp, cds := p.opts.Board.Expected(p.buf[:0])
	p.buf = exp[:0]
	tally[status.StateUnknown] = len(exp)
	if cds != nil {
		tally[status.StateUnknown]++
	}
	p.opts.Metrics.States(tally)
}

func (p *Poller) isUp() {
	if !p.up {
		p.log.Info("Envoy's admin answers", "admin", p.opts.Admin.Redacted())
	}
	p.up, p.downSince = true, time.Time{}
	p.opts.Metrics.AdminUp(true)
}

// The filters of the two requests: RE2, partial match, so anchored. A
// cluster name may hold dots, hence .+ and not [^.]+.
const (
	versionFilter = `^cluster(_manager\.cds|\..+)\.version_text$`
	refusalFilter = `^cluster(_manager\.cds|\..+)\.update_(rejected|failure)$`
	cdsKey        = "cluster_manager.cds"
)

// stats asks /stats for the stats of one type matching filter, and returns
// text readouts (by subscription key: the stat name without "cluster."
// and the suffix) and refusal counts summed per key.
func (p *Poller) stats(ctx context.Context, typ, filter string) (map[string]string, map[string]uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	u := *p.opts.Admin
	u.Path = strings.TrimSuffix(u.Path, "/") + "/stats"
	u.RawQuery = url.Values{"format": {"json"}, "type": {typ}, "filter": {filter}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, nil, fmt.Errorf("GET %s: %s", u.Redacted(), resp.Status)
	}
	var body struct {
		Stats []struct {
			Name  string          `json:"name"`
			Value json.RawMessage `json:"value"`
		} `json:"stats"`
	}
	dec := json.NewDecoder(io.LimitReader(resp.Body, maxBody))
	if err := dec.Decode(&body); err != nil {
		return nil, nil, fmt.Errorf("GET %s: %w", u.Redacted(), err)
	}
	// Only the maps this type fills are cleared: a poll's versions are
	// read before its counters and used after.
	versions, counts := p.versions, p.refusals
	if typ == "TextReadouts" {
		clear(versions)
	} else {
		clear(counts)
	}
	for _, s := range body.Stats {
		key, suffix, ok := splitStat(s.Name)
		if !ok {
			continue // a histogram entry, or another stat
		}
		switch suffix {
		case "version_text":
			var v string
			if json.Unmarshal(s.Value, &v) == nil {
				versions[key] = v
			}
		case "update_rejected", "update_failure":
			// Envoy writes counters as unsigned 64-bit integers.
			if n, err := strconv.ParseUint(string(s.Value), 10, 64); err == nil {
				counts[key] += n
			}
		}
	}
	return versions, counts, nil
}

// splitStat splits cluster.<key>.<suffix> or cluster_manager.cds.<suffix>.
func splitStat(name string) (key, suffix string, ok bool) {
	i := strings.LastIndexByte(name, '.')
	if i < 0 {
		return "", "", false
	}
	prefix, suffix := name[:i], name[i+1:]
	if prefix == cdsKey {
		return cdsKey, suffix, true
	}
	key, ok = strings.CutPrefix(prefix, "cluster.")
	return key, suffix, ok && key != ""
}

// statName is how Envoy writes a cluster's name in its stat names
// (Stats::Utility::sanitizeStatsName): one leading and one trailing dot
// dropped, "://", ":/", ":" and NUL written as "_". Slashes and dots stay.
func statName(cluster string) string {
	s := strings.TrimPrefix(cluster, ".")
	s = strings.TrimSuffix(s, ".")
	if strings.ContainsAny(s, ":\x00") {
		s = strings.NewReplacer("://", "_", ":/", "_", ":", "_", "\x00", "_").Replace(s)
	}
	return s
}

type noMetrics struct{}

func (noMetrics) States(map[status.State]int) {}
func (noMetrics) Applied(time.Duration)       {}
func (noMetrics) Rejected()                   {}
func (noMetrics) AdminUp(bool)                {}

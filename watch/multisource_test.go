package watch

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// testClock is a clock the test moves.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// A source whose API server stops answering keeps its slices for
// StaleAfter, then loses them (the others keep theirs), and gets them back
// when it answers again; each step is in its status.
func TestClustersStaleSource(t *testing.T) {
	clock := &testClock{now: time.Unix(1_700_000_000, 0)}
	n := newNotifications()
	store := NewStore(n.notify)
	kubes := map[string]*Kube{}
	var list []*Kube
	for _, name := range []string{"east", "west"} {
		c := fake.NewClientset(slice("ns", "web-a", "web", "", "10.0.0.1"))
		k, err := NewKube(KubeOptions{API: clientsetAPI{c}, Store: store, Source: name, Clock: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		kubes[name] = k
		list = append(list, k)
	}
	var statusMu sync.Mutex
	var last []SourceStatus
	c := NewClusters(ClustersOptions{Sources: list, StaleAfter: 5 * time.Minute, CheckEvery: time.Hour, Clock: clock.Now,
		OnStatus: func(s []SourceStatus) { statusMu.Lock(); last = s; statusMu.Unlock() }})
	runSource(t, c)
	waitClosed(t, c.Synced(), "Synced")
	web := svc("ns", "web")
	want := func(what string, w ...string) {
		t.Helper()
		n.until(t, what, func() bool { return slices.Equal(sourcesOf(store.Slices(web)), w) })
	}
	check := func() SourceStatus { // west's status after a check
		t.Helper()
		c.check <- struct{}{}
		c.check <- struct{}{} // the first check is done once the second is taken
		statusMu.Lock()
		defer statusMu.Unlock()
		return last[1]
	}
	want("both sources", "east:web-a", "west:web-a")
	// west's API server fails (as its informers' list and watch calls
	// would tell).
	setHealth := func(err error) {
		for _, ks := range kubes["west"].scopes.scopes() {
			ks.health.observe(t.Context(), "list", err)
		}
	}
	setHealth(errors.New("connection refused"))
	if st := check(); st.Up || st.Stale || !st.Synced {
		t.Errorf("west down: %+v", st)
	}
	want("west down, kept", "east:web-a", "west:web-a")

	clock.Add(5 * time.Minute)
	if st := check(); !st.Stale {
		t.Errorf("west down for StaleAfter: %+v", st)
	}
	want("west stale, removed", "east:web-a")

	setHealth(nil)
	if st := check(); !st.Up || st.Stale {
		t.Errorf("west back: %+v", st)
	}
	want("west back", "east:web-a", "west:web-a")
}

// At start, a source that cannot list holds the others back for
// SyncTimeout only.
func TestClustersSyncTimeout(t *testing.T) {
	store := NewStore(nil)
	up := fake.NewClientset(slice("ns", "web-a", "web", "", "10.0.0.1"))
	down := fake.NewClientset()
	down.PrependReactor("list", "endpointslices", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("connection refused")
	})
	var list []*Kube
	for name, c := range map[string]*fake.Clientset{"up": up, "down": down} {
		k, err := NewKube(KubeOptions{API: clientsetAPI{c}, Store: store, Source: name})
		if err != nil {
			t.Fatal(err)
		}
		list = append(list, k)
	}
	c := NewClusters(ClustersOptions{Sources: list, SyncTimeout: 100 * time.Millisecond, CheckEvery: time.Hour})
	runSource(t, c)
	waitClosed(t, c.Synced(), "Synced despite the source that cannot list")
	if got := sourcesOf(store.Slices(svc("ns", "web"))); !slices.Equal(got, []string{"up:web-a"}) {
		t.Errorf("slices %v", got)
	}
}

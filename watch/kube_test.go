package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/edsync/edsync/render"

	"github.com/edsync/edsync/internal/syncbuf"
)

// guard bounds every wait: it is a failure guard only, tests never sleep.
const guard = 30 * time.Second

// notifications is a Store notify func that feeds a channel, to wake up
// tests waiting for a condition. It never blocks the source: when the
// buffer is full, the waiter has wake-ups pending anyway.
type notifications chan render.ServiceKey

func newNotifications() notifications { return make(notifications, 1000) }

func (n notifications) notify(k render.ServiceKey) {
	select {
	case n <- k:
	default:
	}
}

// until waits for notifications until cond holds. Notifications come
// after the store changed, so cond is checked again after each.
func (n notifications) until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	timeout := time.After(guard)
	for !cond() {
		select {
		case <-n:
		case <-timeout:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// slicesAre waits until the Service's slices have these names.
func (n notifications) slicesAre(t *testing.T, store *Store, key render.ServiceKey, want ...string) {
	t.Helper()
	n.until(t, fmt.Sprintf("Slices(%s) = %v", key, want), func() bool {
		return slices.Equal(names(store.Slices(key)), want)
	})
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(guard):
		t.Fatalf("%s: timed out", what)
	}
}

// runSource runs src until the test ends and checks it returns nil.
func runSource(t *testing.T, src Source) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(guard):
			t.Error("Run did not return after cancel")
		}
	})
}

func names(sls []*discoveryv1.EndpointSlice) []string {
	var out []string
	for _, sl := range sls {
		out = append(out, sl.Name)
	}
	return out
}

func TestKubeSyncAndEvents(t *testing.T) {
	ctx := t.Context()
	web := svc("ns", "web")
	client := fake.NewClientset(
		slice("ns", "web-a", "web", "", "10.0.0.1"),
		slice("ns", "web-b", "web", "", "10.0.0.2"),
		slice("other", "db-a", "db", "", "10.0.1.1"),
		slice("ns", "orphan", "", "", "10.0.2.1"),
	)
	n := newNotifications()
	store := NewStore(n.notify)
	k, err := NewKube(KubeOptions{API: clientsetAPI{client}, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, k)
	waitClosed(t, k.Synced(), "Synced")

	// Synced means the initial objects are in the store.
	if got := names(store.Slices(web)); !slices.Equal(got, []string{"web-a", "web-b"}) {
		t.Errorf("after sync: Slices(web) = %v", got)
	}
	if got := store.Services(); !slices.Equal(got, []render.ServiceKey{svc("ns", "web"), svc("other", "db")}) {
		t.Errorf("after sync: Services() = %v", got)
	}
	if got := store.Skipped()[ReasonNoServiceLabel]; got != 1 {
		t.Errorf("skipped no-service-label = %d, want 1", got)
	}

	api := client.DiscoveryV1().EndpointSlices("ns")
	t.Run("add", func(t *testing.T) {
		if _, err := api.Create(ctx, slice("ns", "web-c", "web", "", "10.0.0.3"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		n.slicesAre(t, store, web, "web-a", "web-b", "web-c")
	})
	t.Run("update", func(t *testing.T) {
		if _, err := api.Update(ctx, slice("ns", "web-c", "web", "", "10.0.0.4"), metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		n.until(t, "web-c at 10.0.0.4", func() bool {
			sls := store.Slices(web)
			return len(sls) == 3 && sls[2].Endpoints[0].Addresses[0] == "10.0.0.4"
		})
	})
	t.Run("service label change", func(t *testing.T) {
		if _, err := api.Update(ctx, slice("ns", "web-c", "api", "", "10.0.0.4"), metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		n.slicesAre(t, store, svc("ns", "api"), "web-c")
		if got := names(store.Slices(web)); !slices.Equal(got, []string{"web-a", "web-b"}) {
			t.Errorf("Slices(web) = %v", got)
		}
	})
	t.Run("delete", func(t *testing.T) {
		if err := api.Delete(ctx, "web-a", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		n.slicesAre(t, store, web, "web-b")
	})
}

func TestKubeHandlers(t *testing.T) {
	web := svc("ns", "web")
	var rec recorder
	store := NewStore(rec.notify)
	k, err := NewKube(KubeOptions{API: clientsetAPI{fake.NewClientset()}, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	ks := k.scopes.list[0]
	// The informer puts each object in its cache before the handler sees it.
	cached := func(t *testing.T, obj any) {
		t.Helper()
		if err := ks.informer.informer.GetStore().Update(obj); err != nil {
			t.Fatal(err)
		}
	}
	a := Slim(slice("ns", "web-a", "web", "5", "10.0.0.1"))
	cached(t, a)
	k.onAdd(ks, a)
	if got := rec.take(); !slices.Equal(got, []render.ServiceKey{web}) {
		t.Fatalf("add notified %v", got)
	}

	t.Run("update with unchanged resourceVersion is ignored", func(t *testing.T) {
		b := Slim(slice("ns", "web-a", "web", "5", "10.0.0.9"))
		cached(t, b)
		k.onUpdate(ks, a, b)
		if got := rec.take(); got != nil {
			t.Errorf("notified %v", got)
		}
		if got := store.Slices(web)[0]; got != a {
			t.Error("store took the object of an update with unchanged resourceVersion")
		}
		cached(t, a)
	})
	t.Run("an event older than the cache is ignored", func(t *testing.T) {
		b := Slim(slice("ns", "web-a", "web", "6", "10.0.0.2"))
		c := Slim(slice("ns", "web-a", "web", "7", "10.0.0.3"))
		cached(t, c) // c reached the cache; b's event comes late
		k.onUpdate(ks, a, b)
		if got := store.Slices(web)[0]; got != a {
			t.Errorf("store took %s, an update older than the cache", got.ResourceVersion)
		}
		k.onUpdate(ks, b, c)
		if got := store.Slices(web)[0]; got != c {
			t.Errorf("store holds %s, want the cache's 7", got.ResourceVersion)
		}
		rec.take()
		a = c
	})
	t.Run("a delete of an object created again is ignored", func(t *testing.T) {
		k.onDelete(ks, a) // a is still cached: created again since
		if got := store.Slices(web); len(got) != 1 {
			t.Errorf("Slices(web) = %v: a delete older than the cache was applied", names(got))
		}
	})
	t.Run("DeletedFinalStateUnknown", func(t *testing.T) {
		if err := ks.informer.informer.GetStore().Delete(a); err != nil {
			t.Fatal(err)
		}
		k.onDelete(ks, cache.DeletedFinalStateUnknown{Key: "ns/web-a", Obj: a})
		if got := rec.take(); !slices.Equal(got, []render.ServiceKey{web}) {
			t.Errorf("notified %v", got)
		}
		if got := store.Slices(web); got != nil {
			t.Errorf("Slices(web) = %v after tombstone", names(got))
		}
	})
	t.Run("DeletedFinalStateUnknown without object", func(t *testing.T) {
		cached(t, a)
		k.onAdd(ks, a)
		rec.take()
		if err := ks.informer.informer.GetStore().Delete(a); err != nil {
			t.Fatal(err)
		}
		k.onDelete(ks, cache.DeletedFinalStateUnknown{Key: "ns/web-a"})
		if got := rec.take(); !slices.Equal(got, []render.ServiceKey{web}) {
			t.Errorf("notified %v", got)
		}
	})
}

func TestKubeListOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    KubeOptions
		want    []string // "namespace|selector", sorted; namespace "" is all
		wantErr string
	}{
		{
			name: "everything",
			want: []string{"|"},
		},
		{
			name: "selector",
			opts: KubeOptions{Selector: "team=a"},
			want: []string{"|team=a"},
		},
		{
			name: "namespaces",
			opts: KubeOptions{Namespaces: []string{"b", "a", "b"}, Selector: "team=a"},
			want: []string{"a|team=a", "b|team=a"},
		},
		{
			name: "services select server-side, one informer per namespace",
			opts: KubeOptions{
				Services: []render.ServiceKey{svc("ns1", "web"), svc("ns2", "db"), svc("ns1", "api")},
				Selector: "team=a",
			},
			want: []string{
				"ns1|kubernetes.io/service-name in (api,web),team=a",
				"ns2|kubernetes.io/service-name in (db),team=a",
			},
		},
		{
			name: "services inside the namespaces",
			opts: KubeOptions{Namespaces: []string{"ns1"}, Services: []render.ServiceKey{svc("ns1", "web")}},
			want: []string{"ns1|kubernetes.io/service-name in (web)"},
		},
		{
			name:    "service outside the namespaces",
			opts:    KubeOptions{Namespaces: []string{"ns1"}, Services: []render.ServiceKey{svc("ns2", "web")}},
			wantErr: "outside the watched namespaces",
		},
		{
			name:    "bad selector",
			opts:    KubeOptions{Selector: "a in (b"},
			wantErr: "label selector",
		},
		{
			name:    "bad service name",
			opts:    KubeOptions{Services: []render.ServiceKey{svc("ns", "Not_A_Name!")}},
			wantErr: "Not_A_Name!",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := fake.NewClientset()
			var mu sync.Mutex
			var got []string
			client.PrependReactor("list", "endpointslices", func(a k8stesting.Action) (bool, runtime.Object, error) {
				la := a.(k8stesting.ListActionImpl)
				mu.Lock()
				got = append(got, la.GetNamespace()+"|"+la.GetListOptions().LabelSelector)
				mu.Unlock()
				return false, nil, nil
			})
			o := tt.opts
			o.API, o.Store = clientsetAPI{client}, NewStore(nil)
			k, err := NewKube(o)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("NewKube error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			runSource(t, k)
			waitClosed(t, k.Synced(), "Synced")
			mu.Lock()
			defer mu.Unlock()
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("lists = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestKubeServicesFilter checks that only the named Services reach the
// store, also when the watch does not filter (the fake does not).
func TestKubeServicesFilter(t *testing.T) {
	client := fake.NewClientset(
		slice("ns", "web-a", "web", "", "10.0.0.1"),
		slice("ns", "db-a", "db", "", "10.0.0.2"),
	)
	n := newNotifications()
	store := NewStore(n.notify)
	k, err := NewKube(KubeOptions{API: clientsetAPI{client}, Store: store, Services: []render.ServiceKey{svc("ns", "web")}})
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, k)
	waitClosed(t, k.Synced(), "Synced")
	if got := store.Services(); !slices.Equal(got, []render.ServiceKey{svc("ns", "web")}) {
		t.Errorf("Services() = %v", got)
	}
	api := client.DiscoveryV1().EndpointSlices("ns")
	if _, err := api.Create(t.Context(), slice("ns", "db-b", "db", "", "10.0.0.3"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.Create(t.Context(), slice("ns", "web-b", "web", "", "10.0.0.4"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	n.slicesAre(t, store, svc("ns", "web"), "web-a", "web-b")
	if got := store.Services(); !slices.Equal(got, []render.ServiceKey{svc("ns", "web")}) {
		t.Errorf("Services() = %v", got)
	}
	// web-a leaves the selection: it leaves the store.
	if _, err := api.Update(t.Context(), slice("ns", "web-a", "db", "", "10.0.0.1"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	n.slicesAre(t, store, svc("ns", "web"), "web-b")
}

func TestKubeTransform(t *testing.T) {
	sl := slice("ns", "web-a", "web", "", "10.0.0.1")
	sl.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate}}
	sl.OwnerReferences = []metav1.OwnerReference{{Kind: "Service", Name: "web", UID: "u1"}}
	sl.Annotations = map[string]string{
		corev1.EndpointsLastChangeTriggerTime:              "2026-01-02T03:04:05Z",
		"kubectl.kubernetes.io/last-applied-configuration": strings.Repeat("x", 4096),
	}
	sl.Endpoints[0].TargetRef = &corev1.ObjectReference{
		Kind: "Pod", Namespace: "ns", Name: "web-1", UID: "u2", ResourceVersion: "9", APIVersion: "v1", FieldPath: "spec",
	}
	sl.Endpoints[0].DeprecatedTopology = map[string]string{"topology.kubernetes.io/zone": "z1"}
	sl.Endpoints[0].Zone = ptr.To("z1")
	sl.Endpoints[0].NodeName = ptr.To("node-1")
	sl.Endpoints[0].Hints = &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "z1"}}}

	client := fake.NewClientset(sl)
	store := NewStore(nil)
	k, err := NewKube(KubeOptions{API: clientsetAPI{client}, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, k)
	waitClosed(t, k.Synced(), "Synced")
	got := store.Slices(svc("ns", "web"))
	if len(got) != 1 {
		t.Fatalf("Slices = %v", names(got))
	}
	g := got[0]
	if g.ManagedFields != nil || g.OwnerReferences != nil {
		t.Errorf("managedFields/ownerReferences kept: %v %v", g.ManagedFields, g.OwnerReferences)
	}
	if want := map[string]string{corev1.EndpointsLastChangeTriggerTime: "2026-01-02T03:04:05Z"}; !mapsEqual(g.Annotations, want) {
		t.Errorf("annotations = %v, want %v", g.Annotations, want)
	}
	ep := g.Endpoints[0]
	// The Pod's name moves to the hostname, its targetRef is shared.
	if want := (corev1.ObjectReference{Kind: "Pod", Namespace: "ns", FieldPath: render.RefNameInHostname}); *ep.TargetRef != want ||
		ep.Hostname == nil || *ep.Hostname != "web-1" {
		t.Errorf("targetRef = %+v, hostname %v; want %+v and web-1", *ep.TargetRef, ep.Hostname, want)
	}
	if ep.DeprecatedTopology != nil {
		t.Errorf("deprecatedTopology kept: %v", ep.DeprecatedTopology)
	}
	if *ep.Zone != "z1" || *ep.NodeName != "node-1" || ep.Hints.ForZones[0].Name != "z1" || !*ep.Conditions.Ready {
		t.Errorf("fields edsync reads were lost: %+v", ep)
	}
	if g.Labels[discoveryv1.LabelServiceName] != "web" || *g.Ports[0].Port != 8080 {
		t.Errorf("fields edsync reads were lost: %+v", g.ObjectMeta)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

// TestKubeAPIErrorsLogged checks that failing to reach the API server is
// logged at Warn and the recovery at Info, and that the source syncs once
// the server answers.
func TestKubeAPIErrorsLogged(t *testing.T) {
	client := fake.NewClientset(slice("ns", "web-a", "web", "", "10.0.0.1"))
	var mu sync.Mutex
	fail := 1
	client.PrependReactor("list", "endpointslices", func(k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		if fail > 0 {
			fail--
			return true, nil, errors.New("dial tcp 127.0.0.1:6443: connect: connection refused")
		}
		return false, nil, nil
	})
	var buf syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	store := NewStore(nil)
	k, err := NewKube(KubeOptions{API: clientsetAPI{client}, Store: store, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	runSource(t, k)
	waitClosed(t, k.Synced(), "Synced")
	out := buf.String()
	for _, want := range []string{
		`level=WARN msg="cannot list EndpointSlices; retrying with backoff" component=watch.kube namespace=(all)`,
		"connection refused",
		`level=INFO msg="API server reachable again"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "connection refused") != 1 {
		t.Errorf("the failure is logged more than once:\n%s", out)
	}
}

// SetServices moves the watch without a gap: a namespace whose Services
// change is listed again with the new selector before its old informer
// stops, a namespace no longer watched is dropped and not listed, an
// unchanged one keeps its informer; the slices of Services no longer
// watched leave the Store, and a Service in both never leaves it.
func TestKubeSetServices(t *testing.T) {
	client := fake.NewClientset(
		slice("ns1", "web-a", "web", "", "10.0.0.1"),
		slice("ns1", "api-a", "api", "", "10.0.0.2"),
		slice("ns2", "db-a", "db", "", "10.0.0.3"),
		slice("ns3", "mq-a", "mq", "", "10.0.0.4"),
	)
	takeLists := recordLists(client)
	web := svc("ns1", "web")
	n := newNotifications()
	var store *Store
	var gapMu sync.Mutex
	var seen bool     // web has had a slice
	var gaps []string // notifications since that found web without slices
	store = NewStore(func(k render.ServiceKey) {
		has := len(store.Slices(web)) > 0
		gapMu.Lock()
		if seen && !has {
			gaps = append(gaps, fmt.Sprintf("web had no slice when %s was notified", k))
		}
		seen = seen || has
		gapMu.Unlock()
		n.notify(k)
	})
	k, err := NewKube(KubeOptions{API: clientsetAPI{client}, Store: store, Services: []render.ServiceKey{web, svc("ns2", "db"), svc("ns3", "mq")}})
	if err != nil {
		t.Fatal(err)
	}
	// Before Run, a move only changes what Run starts.
	if err := k.SetServices(t.Context(), []render.ServiceKey{web, svc("ns2", "db")}); err != nil {
		t.Fatal(err)
	}
	runSource(t, k)
	waitClosed(t, k.Synced(), "Synced")
	if got, want := takeLists(), []string{"ns1|kubernetes.io/service-name in (web)", "ns2|kubernetes.io/service-name in (db)"}; !slices.Equal(got, want) {
		t.Errorf("lists at start = %q, want %q", got, want)
	}
	if got, want := store.Services(), []render.ServiceKey{web, svc("ns2", "db")}; !slices.Equal(got, want) {
		t.Fatalf("Services() = %v, want %v", got, want)
	}

	// api joins web in ns1; db's namespace is no longer watched.
	if err := k.SetServices(t.Context(), []render.ServiceKey{web, svc("ns1", "api")}); err != nil {
		t.Fatal(err)
	}
	if got, want := takeLists(), []string{"ns1|kubernetes.io/service-name in (api,web)"}; !slices.Equal(got, want) {
		t.Errorf("lists of the move = %q, want %q (ns2 is dropped, not listed)", got, want)
	}
	if got, want := store.Services(), []render.ServiceKey{svc("ns1", "api"), web}; !slices.Equal(got, want) {
		t.Errorf("Services() after the move = %v, want %v", got, want)
	}

	// The same Services again: nothing is listed.
	if err := k.SetServices(t.Context(), []render.ServiceKey{svc("ns1", "api"), web}); err != nil {
		t.Fatal(err)
	}
	if got := takeLists(); len(got) != 0 {
		t.Errorf("an unchanged move listed %q", got)
	}

	// Events after the move reach the Store through the new informer.
	api := client.DiscoveryV1().EndpointSlices("ns1")
	if _, err := api.Create(t.Context(), slice("ns1", "api-b", "api", "", "10.0.0.5"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	n.slicesAre(t, store, svc("ns1", "api"), "api-a", "api-b")
	if _, err := client.DiscoveryV1().EndpointSlices("ns2").Create(t.Context(), slice("ns2", "db-b", "db", "", "10.0.0.6"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Back to web alone: api leaves the Store, web stays throughout.
	if err := k.SetServices(t.Context(), []render.ServiceKey{web}); err != nil {
		t.Fatal(err)
	}
	if got, want := store.Services(), []render.ServiceKey{web}; !slices.Equal(got, want) {
		t.Errorf("Services() after the last move = %v, want %v", got, want)
	}
	gapMu.Lock()
	defer gapMu.Unlock()
	if len(gaps) > 0 {
		t.Errorf("web lost its slices during the moves: %q", gaps)
	}
}

// A move whose new informers cannot list fails and leaves the watch and
// the Store as they were; a move made before the first sync (here while the
// old informer cannot list) completes it with the new informers' view.
func TestKubeSetServicesFailureAndFirstSync(t *testing.T) {
	failing := func(client *fake.Clientset, selector string) {
		client.PrependReactor("list", "endpointslices", func(a k8stesting.Action) (bool, runtime.Object, error) {
			if a.(k8stesting.ListActionImpl).GetListOptions().LabelSelector == selector {
				return true, nil, errors.New("no list for you")
			}
			return false, nil, nil
		})
	}
	web, api, mq := svc("ns1", "web"), svc("ns1", "api"), svc("ns3", "mq")

	t.Run("failed move", func(t *testing.T) {
		client := fake.NewClientset(slice("ns1", "web-a", "web", "", "10.0.0.1"), slice("ns1", "api-a", "api", "", "10.0.0.2"),
			slice("ns3", "mq-a", "mq", "", "10.0.0.3"))
		failing(client, "kubernetes.io/service-name in (mq)")
		n := newNotifications()
		store := NewStore(n.notify)
		k, err := NewKube(KubeOptions{API: clientsetAPI{client}, Store: store, Services: []render.ServiceKey{web}})
		if err != nil {
			t.Fatal(err)
		}
		runSource(t, k)
		waitClosed(t, k.Synced(), "Synced")
		// The deadline is how a move gives up; the test asserts what is
		// left after it, not how long it took.
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		if err := k.SetServices(ctx, []render.ServiceKey{web, api, mq}); err == nil || !strings.Contains(err.Error(), "did not sync") {
			t.Fatalf("SetServices = %v, want a sync failure", err)
		}
		if got, want := store.Services(), []render.ServiceKey{web}; !slices.Equal(got, want) {
			t.Errorf("Services() after a failed move = %v, want %v (as before)", got, want)
		}
		// The old informer still delivers.
		if _, err := client.DiscoveryV1().EndpointSlices("ns1").Create(t.Context(), slice("ns1", "web-b", "web", "", "10.0.0.9"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		n.slicesAre(t, store, web, "web-a", "web-b")
	})

	t.Run("move before the first sync", func(t *testing.T) {
		client := fake.NewClientset(slice("ns1", "web-a", "web", "", "10.0.0.1"), slice("ns1", "api-a", "api", "", "10.0.0.2"))
		failing(client, "kubernetes.io/service-name in (web)")
		store := NewStore(nil)
		k, err := NewKube(KubeOptions{API: clientsetAPI{client}, Store: store, Services: []render.ServiceKey{web}})
		if err != nil {
			t.Fatal(err)
		}
		runSource(t, k)
		if err := k.SetServices(t.Context(), []render.ServiceKey{web, api}); err != nil {
			t.Fatal(err)
		}
		waitClosed(t, k.Synced(), "Synced after the move")
		if got, want := store.Services(), []render.ServiceKey{api, web}; !slices.Equal(got, want) {
			t.Errorf("Services() = %v, want %v: the new informer's view", got, want)
		}
	})
}

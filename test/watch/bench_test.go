package watch

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/directory"
)

// BenchmarkWatch measures what the AD watch costs and buys, with 50 DKMContainers on one DC and
// a resync period of one hour. It reports numbers; it never fails on a timing.
//
//	go test ./test/watch -run '^$' -bench BenchmarkWatch -benchtime 1x
//	DKM_WATCH_IDLE=10m go test ./test/watch -run '^$' -bench BenchmarkWatch -benchtime 1x -timeout 30m
//
// Idle: once all 50 are Ready and watched, the operator's LDAP operations (every dial, bind,
// search, write and notification search its pool and Watcher send) are counted over
// DKM_WATCH_IDLE (default 1m), with the open notification searches and connections.
//
// Tamper to repair: 100 times, round-robin over the 50 containers, the benchmark adds an
// Authenticated Users read ACE to a container's DACL (plain go-ldap as Administrator) and
// measures from just before sending that modify until its own read of the DACL, made on each
// change notification of its own subtree search on CN=System, no longer shows the ACE. The
// operator's LDAP operations over the 100 tampers are reported per tamper.
func BenchmarkWatch(b *testing.B) {
	const containers, tampers = 50, 100
	idle := time.Minute
	if v := os.Getenv("DKM_WATCH_IDLE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("DKM_WATCH_IDLE: %v", err)
		}
		idle = d
	}
	ctx := context.Background()
	e, err := startEnv(ctx, time.Second, 2*time.Minute, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	defer e.stop()
	f, err := e.newFixture(ctx)
	if err != nil {
		b.Fatal(err)
	}
	var objs []*dkmv1.DKMContainer
	for i := range containers {
		obj := f.dkm(fmt.Sprintf("c%02d", i))
		if err := e.client.Create(ctx, obj); err != nil {
			b.Fatal(err)
		}
		objs = append(objs, obj)
	}
	waitAllLive(ctx, b, e, f.ns, containers)
	time.Sleep(5 * time.Second) // the echoes of the operator's own writes settle

	for i := 0; i < b.N; i++ {
		before, stats := e.ops.snapshot(), e.watcher.Stats()
		time.Sleep(idle)
		after := e.ops.snapshot()
		idleOps := delta(before, after)
		b.Logf("idle %s, %d DKMContainers on one DC: %d notification searches open on %d connections; operator LDAP operations: %v (total %d)",
			idle, containers, stats.Searches, stats.Connections, idleOps, total(idleOps))
		b.ReportMetric(float64(stats.Searches), "searches-open")
		b.ReportMetric(float64(stats.Connections), "watch-conns")
		b.ReportMetric(float64(total(idleOps)), "ldap-ops/idle")

		samples, ops := tamperRounds(b, e, objs, tampers)
		slices.Sort(samples)
		p50, p99 := percentile(samples, 50), percentile(samples, 99)
		b.Logf("tamper→repair over %d tampers: p50 %s, p99 %s, max %s; operator LDAP operations per tamper: %s",
			len(samples), p50, p99, samples[len(samples)-1], perTamper(ops, tampers))
		b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	}
}

// tamperRounds tampers n times and returns the repair times and the operator's LDAP operations
// meanwhile.
func tamperRounds(b *testing.B, e *env, objs []*dkmv1.DKMContainer, n int) ([]time.Duration, map[string]int) {
	conn, err := e.dc.Dial()
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	watchConn, err := e.dc.Dial()
	if err != nil {
		b.Fatal(err)
	}
	defer watchConn.Close()
	watchConn.SetTimeout(0)
	sctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes := watchConn.SearchAsync(sctx, ldap.NewSearchRequest("CN=System,"+e.dc.BaseDN, ldap.ScopeWholeSubtree,
		ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{"1.1"},
		[]ldap.Control{ldap.NewControlMicrosoftNotification()}), 64)
	seen := make(chan string, 64)
	go func() {
		for changes.Next() {
			seen <- strings.ToLower(changes.Entry().DN)
		}
	}()
	time.Sleep(200 * time.Millisecond) // the search is registered

	before := e.ops.snapshot()
	var samples []time.Duration
	for i := range n {
		dn := objs[i%len(objs)].Spec.Path
		start := time.Now()
		if err := addTamper(conn, dn); err != nil {
			b.Fatal(err)
		}
		deadline := time.After(30 * time.Second)
		for repaired := false; !repaired; {
			select {
			case got := <-seen:
				if got != strings.ToLower(dn) {
					continue
				}
				t, err := tampered(conn, dn)
				if err != nil {
					b.Fatal(err)
				}
				if !t {
					samples = append(samples, time.Since(start))
					repaired = true
				}
			case <-deadline:
				b.Fatalf("tamper %d on %s not repaired within 30s", i, dn)
			}
		}
	}
	time.Sleep(2 * time.Second) // the last repair's echo
	return samples, delta(before, e.ops.snapshot())
}

func waitAllLive(ctx context.Context, b *testing.B, e *env, ns string, n int) {
	deadline := time.Now().Add(10 * time.Minute)
	for {
		list := &dkmv1.DKMContainerList{}
		if err := e.client.List(ctx, list, client.InNamespace(ns)); err != nil {
			b.Fatal(err)
		}
		live := 0
		for _, o := range list.Items {
			c := meta.FindStatusCondition(o.Status.Conditions, dkmv1.ConditionReady)
			if c != nil && c.Status == metav1.ConditionTrue &&
				e.watcher.State(client.ObjectKeyFromObject(&o).String()).Mode == directory.WatchLive {
				live++
			}
		}
		if live == n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d DKMContainers Ready and watched after 10 minutes", live, n)
		}
		time.Sleep(time.Second)
	}
}

func delta(before, after map[string]int) map[string]int {
	out := map[string]int{}
	for op, v := range after {
		if d := v - before[op]; d != 0 {
			out[op] = d
		}
	}
	return out
}

func total(ops map[string]int) int {
	n := 0
	for _, v := range ops {
		n += v
	}
	return n
}

func perTamper(ops map[string]int, n int) string {
	var parts []string
	for op, v := range ops {
		parts = append(parts, fmt.Sprintf("%s %.2f", op, float64(v)/float64(n)))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// percentile is nearest-rank on sorted samples.
func percentile(sorted []time.Duration, p int) time.Duration {
	i := (p*len(sorted)+99)/100 - 1
	return sorted[max(i, 0)]
}

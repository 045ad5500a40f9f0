package chaos

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// The generator is pure: these tests need no DC and no API server.

func TestGenerateReplaysFromItsSeed(t *testing.T) {
	for _, opts := range []Options{{}, {DCs: 1, Steps: 30}, {Steps: 40, InitialReplicas: 2, MaxPause: 300 * time.Millisecond}} {
		for _, seed := range []uint64{0, 1, 42, 1 << 63} {
			a, b := Generate(seed, opts), Generate(seed, opts)
			if a.String() != b.String() {
				t.Fatalf("seed %d, %+v: two draws differ:\n%s\n%s", seed, opts, a, b)
			}
		}
	}
	if Generate(1, Options{}).String() == Generate(2, Options{}).String() {
		t.Fatal("seeds 1 and 2 drew the same schedule")
	}
	if Generate(1, Options{}).Warm || !Generate(2, Options{}).Warm {
		t.Fatal("odd seeds start cold, even seeds warm")
	}
}

// TestGenerateDrawsOnlyPossibleSteps replays each schedule against its own bookkeeping of the
// world: no DC is stopped twice or started while up, an operator is crashed only while it runs,
// replication is released only when held, a pod is removed only if it exists.
func TestGenerateDrawsOnlyPossibleSteps(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"two DCs", Options{Steps: 40, InitialReplicas: 1}},
		{"one DC", Options{DCs: 1, Steps: 40}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seen := map[Kind]int{}
			for seed := uint64(0); seed < 300; seed++ {
				s := Generate(seed, tc.opts)
				if len(s.Steps) != tc.opts.Steps {
					t.Fatalf("seed %d: %d steps, want %d", seed, len(s.Steps), tc.opts.Steps)
				}
				if err := replay(s, tc.opts.withDefaults()); err != nil {
					t.Fatalf("%v\n%s", err, s)
				}
				for _, st := range s.Steps {
					seen[st.Kind]++
				}
			}
			want := slices.Clone(kinds)
			if tc.opts.DCs == 1 {
				want = slices.DeleteFunc(want, func(k Kind) bool {
					return k == Replicate || k == HoldReplication || k == ReleaseReplication
				})
			}
			for _, k := range kinds {
				if slices.Contains(want, k) && seen[k] == 0 {
					t.Errorf("300 schedules drew no %s", k)
				}
				if !slices.Contains(want, k) && seen[k] > 0 {
					t.Errorf("drew %s %d times with %d DC(s)", k, seen[k], tc.opts.DCs)
				}
			}
			t.Logf("steps drawn by kind: %v", seen)
		})
	}
}

func replay(s Schedule, opts Options) error {
	up := make([]bool, opts.DCs)
	for i := range up {
		up[i] = true
	}
	held, bPresent := false, false
	opUp := [2]bool{true, false}
	pods := [2][]string{}
	for i := range opts.InitialReplicas {
		pods[ClusterA] = append(pods[ClusterA], fmt.Sprintf("vmm-%d", i))
	}
	for i, st := range s.Steps {
		fail := func(why string) error { return fmt.Errorf("seed %d step %d (%s): %s", s.Seed, i+1, st, why) }
		if st.Pause < 100*time.Millisecond || st.Pause > opts.MaxPause {
			return fail("pause out of range")
		}
		if st.Cluster == ClusterB && !bPresent && st.Kind != SecondCluster {
			return fail("cluster B has no DKMContainer yet")
		}
		switch st.Kind {
		case StopDC:
			if !up[st.DC] || slices.Contains(up, false) {
				return fail("DC already down, or another one is")
			}
			up[st.DC] = false
		case StartDC:
			if up[st.DC] {
				return fail("DC is up")
			}
			up[st.DC] = true
		case Replicate:
			if st.DC == st.To || st.To >= opts.DCs {
				return fail("bad direction")
			}
		case HoldReplication, ReleaseReplication:
			if held == (st.Kind == HoldReplication) {
				return fail("replication already in that state")
			}
			held = !held
		case CrashOperator, StartOperator:
			if opUp[st.Cluster] != (st.Kind == CrashOperator) {
				return fail("operator already in that state")
			}
			opUp[st.Cluster] = !opUp[st.Cluster]
		case SecondCluster:
			if bPresent {
				return fail("cluster B appeared twice")
			}
			bPresent, opUp[ClusterB] = true, true
			pods[ClusterB] = append(pods[ClusterB], st.Pod)
		case AddReplica:
			if slices.Contains(pods[st.Cluster], st.Pod) {
				return fail("pod exists")
			}
			pods[st.Cluster] = append(pods[st.Cluster], st.Pod)
		case RemoveReplica:
			if !slices.Contains(pods[st.Cluster], st.Pod) {
				return fail("no such pod")
			}
			pods[st.Cluster] = slices.DeleteFunc(pods[st.Cluster], func(p string) bool { return p == st.Pod })
		case RotateKey, RotateKEK:
		default:
			return fail("unknown kind")
		}
	}
	return nil
}

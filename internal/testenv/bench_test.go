package testenv

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// BenchmarkStartDC measures a Samba DC from template copy to an LDAPS bind that succeeds, and
// its shutdown: what every integration test binary pays once.
func BenchmarkStartDC(b *testing.B) {
	for b.Loop() {
		dc, err := StartDC(context.Background(), DCOptions{})
		if err != nil {
			b.Fatal(err)
		}
		dc.Close()
	}
}

// BenchmarkStartPair measures two replicating DCs from template copy to both accepting an LDAPS
// bind, and their shutdown: what a multi-DC test pays per pair.
func BenchmarkStartPair(b *testing.B) {
	for b.Loop() {
		p, err := StartPair(context.Background(), PairOptions{})
		if err != nil {
			b.Fatal(err)
		}
		p.Close()
	}
}

// BenchmarkPairReplicate measures a forced replication (samba-tool drs replicate, synchronous)
// of one new object from DC1 to DC2, once the pair's first replication has opened its
// connections; first_replicate_ms is that first one, which tests right after StartPair pay.
func BenchmarkPairReplicate(b *testing.B) {
	ctx := context.Background()
	p, err := StartPair(ctx, PairOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	start := time.Now()
	if err := p.Replicate(ctx, p.DC2, p.DC1); err != nil {
		b.Fatal(err)
	}
	first := time.Since(start)
	conn, err := p.DC1.Dial()
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	i := 0
	for b.Loop() {
		i++
		add := ldap.NewAddRequest(fmt.Sprintf("CN=bench-%d-%d,CN=Users,%s", time.Now().UnixNano(), i, p.DC1.BaseDN), nil)
		add.Attribute("objectClass", []string{"contact"})
		if err := conn.Add(add); err != nil {
			b.Fatal(err)
		}
		if err := p.Replicate(ctx, p.DC2, p.DC1); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(first.Milliseconds()), "first_replicate_ms")
}

// BenchmarkPairTemplateBuild measures the one-time pair template build (hack/samba-dc.sh
// pair-template: copy, SPN update, join of DC2, kcc, one replication each way) from scratch.
func BenchmarkPairTemplateBuild(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		root, _ := scratchRoot(b)
		b.StartTimer()
		if _, stderr, ok := sambaDC(b, root, "pair-template"); !ok {
			b.Fatalf("pair-template failed:\n%s", stderr)
		}
	}
}

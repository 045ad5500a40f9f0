package testenv

import (
	"context"
	"testing"
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

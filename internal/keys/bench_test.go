package keys

import (
	"fmt"
	"testing"
	"time"
)

func BenchmarkWrappedSeal(b *testing.B) {
	w := wrappedUnder(b, testKEKA)
	m := mustMaterial(b, testKeyBytes)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := w.Seal(m, testBinding); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWrappedOpen(b *testing.B) {
	w := wrappedUnder(b, testKEKA)
	blob, err := w.Seal(mustMaterial(b, testKeyBytes), testBinding)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := w.Open(blob, testBinding); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWrappedOpenRejected measures the cost of a damaged blob, which
// fails authentication after the full GCM computation.
func BenchmarkWrappedOpenRejected(b *testing.B) {
	w := wrappedUnder(b, testKEKA)
	blob, err := w.Seal(mustMaterial(b, testKeyBytes), testBinding)
	if err != nil {
		b.Fatal(err)
	}
	blob[len(blob)-1] ^= 1
	b.ReportAllocs()
	for b.Loop() {
		if _, err := w.Open(blob, testBinding); err == nil {
			b.Fatal("a damaged blob opened")
		}
	}
}

func BenchmarkPlainOpen(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := (Plain{}).Open(testKeyBytes, testBinding); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoadRing is a reconcile's whole key cost: open every version.
func BenchmarkLoadRing(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("versions=%d", n), func(b *testing.B) {
			w := wrappedUnder(b, testKEKA)
			ring, first, err := NewRing(testContainer, w, t0)
			if err != nil {
				b.Fatal(err)
			}
			stored := []StoredKey{first}
			for i := 1; i < n; i++ {
				var sk StoredKey
				if ring, sk, err = ring.Rotate(w, t0.Add(time.Duration(i)*time.Hour)); err != nil {
					b.Fatal(err)
				}
				stored = append(stored, sk)
			}
			active := ring.ActiveID().String()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := LoadRing(testContainer, active, stored, w); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkParseKEKSecret(b *testing.B) {
	data := map[string][]byte{ActiveKEKDataKey: testKEKA, RetiredKEKDataKeyPrefix + "old": testKEKB}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseKEKSecret(data); err != nil {
			b.Fatal(err)
		}
	}
}

package directory

import (
	"errors"
	"strings"
	"testing"
)

func TestOwnerRecordRoundTrip(t *testing.T) {
	owners := []Owner{
		{Cluster: "0f1e2d3c-aaaa-bbbb-cccc-000000000001", Namespace: "vmm", Name: "vmm", UID: "7c2a0000-1111-2222-3333-444455556666"},
		{Cluster: "c", Namespace: "team a", Name: "x=y z", UID: "u%20"},
		{Cluster: "c", Namespace: "n", Name: "m", UID: "u", Claimed: true},
	}
	for _, o := range owners {
		got, err := ParseOwner(o.String())
		if err != nil {
			t.Fatalf("ParseOwner(%q): %v", o.String(), err)
		}
		if got != o {
			t.Errorf("ParseOwner(%q) = %+v, want %+v", o.String(), got, o)
		}
	}
}

func TestParseOwnerRejects(t *testing.T) {
	tests := []struct {
		in      string
		foreign bool
	}{
		{"", true},
		{"created by VMM setup", true},
		{"dkm-operator/v2 cluster=a namespace=b name=c uid=d origin=created", true},
		{"dkm-operator/v1 cluster=a namespace=b name=c uid=d", false},
		{"dkm-operator/v1 cluster=a namespace=b name=c uid=d origin=stolen", false},
		{"dkm-operator/v1 namespace=b cluster=a name=c uid=d origin=created", false},
		{"dkm-operator/v1 cluster= namespace=b name=c uid=d origin=created", false},
		{"dkm-operator/v1 cluster=%zz namespace=b name=c uid=d origin=created", false},
		{"dkm-operator/v1 cluster=a namespace=b name=c uid=d origin=created extra=1", false},
	}
	for _, tc := range tests {
		_, err := ParseOwner(tc.in)
		if err == nil {
			t.Errorf("ParseOwner(%q) accepted", tc.in)
			continue
		}
		if errors.Is(err, ErrNotOwnerRecord) != tc.foreign {
			t.Errorf("ParseOwner(%q) = %v; foreign = %v, want %v", tc.in, err, errors.Is(err, ErrNotOwnerRecord), tc.foreign)
		}
	}
}

func TestOwnerEqualIgnoresOrigin(t *testing.T) {
	o := Owner{Cluster: "c", Namespace: "n", Name: "m", UID: "u"}
	if !o.Equal(o.AsClaim()) {
		t.Error("a claimed record of the same DKMContainer is not the same owner")
	}
	if o.Equal(Owner{Cluster: "other", Namespace: "n", Name: "m", UID: "u"}) {
		t.Error("owners in two clusters compare equal")
	}
	if !strings.HasSuffix(o.AsClaim().String(), "origin=claimed") {
		t.Errorf("claimed record %q", o.AsClaim().String())
	}
}

// FuzzParseOwner: records come from AD, which anyone with write access to the attribute can set.
func FuzzParseOwner(f *testing.F) {
	f.Add(Owner{Cluster: "c", Namespace: "n", Name: "m", UID: "u"}.String())
	f.Add("dkm-operator/v1 cluster=a%20 namespace=b name=c uid=d origin=claimed")
	f.Add("anything")
	f.Fuzz(func(t *testing.T, s string) {
		o, err := ParseOwner(s)
		if err != nil {
			return
		}
		again, err := ParseOwner(o.String())
		if err != nil || again != o {
			t.Fatalf("record %q parsed to %+v, which does not round-trip: %+v, %v", s, o, again, err)
		}
	})
}

package directory

import (
	"slices"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

func TestRightsMissing(t *testing.T) {
	all := Rights{Read: true, WriteProperties: true, WriteDACL: true,
		CreateChild: map[string]bool{"container": true, "contact": true, "user": true}}
	for _, tc := range []struct {
		name     string
		r        Rights
		needDACL bool
		want     []string
	}{
		{"everything", all, true, nil},
		{"adopt needs no WRITE_DAC", Rights{Read: true, WriteProperties: true, CreateChild: all.CreateChild}, false, nil},
		{"WRITE_DAC missing", Rights{Read: true, WriteProperties: true, CreateChild: all.CreateChild}, true, []string{"Modify permissions (WRITE_DAC)"}},
		{"nothing", Rights{}, true, []string{"Read", "Write", "Create container objects", "Create contact objects", "Modify permissions (WRITE_DAC)"}},
		{"contacts only", Rights{Read: true, WriteProperties: true, CreateChild: map[string]bool{"contact": true}}, false, []string{"Create container objects"}},
		{"class names in any case", Rights{Read: true, WriteProperties: true, CreateChild: map[string]bool{"Container": true, "CONTACT": true}}, false, nil},
	} {
		if got := tc.r.Missing(tc.needDACL); !slices.Equal(got, tc.want) {
			t.Errorf("%s: Missing(%v) = %q, want %q", tc.name, tc.needDACL, got, tc.want)
		}
	}
}

func TestRightsOf(t *testing.T) {
	// Shaped like what Samba 4.17 returned for an account delegated RPWPCCLCLORC.
	e := ldap.NewEntry("CN=Adopt,CN=System,DC=demo,DC=local", map[string][]string{
		"objectClass":                  {"top", "container"},
		"allowedChildClassesEffective": {"contact", "container", "user"},
		"allowedAttributesEffective":   {"cn", "description", "displayName"},
		"sDRightsEffective":            {"0"},
	})
	r, err := rightsOf(e)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Read || !r.WriteProperties || r.WriteDACL || !r.CanCreate("contact") || r.CanCreate("group") {
		t.Errorf("rights = %+v", r)
	}
	// An identity with no read access: the entry comes back with sDRightsEffective only.
	r, _ = rightsOf(ldap.NewEntry("CN=x", map[string][]string{"sDRightsEffective": {"7"}}))
	if r.Read || !r.WriteDACL || r.WriteProperties {
		t.Errorf("rights = %+v", r)
	}
	if _, err := rightsOf(ldap.NewEntry("CN=x", map[string][]string{"sDRightsEffective": {"x"}})); err == nil {
		t.Error("malformed sDRightsEffective accepted")
	}
}

package controllers

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/dkm-operator/dkm-operator/internal/directory"
)

// Issue 11, defect 5: what the docs tell a domain admin to delegate for Adopt is what the
// operator checks (directory.Rights.Missing): Read, Write, Create container and contact objects,
// and with accessPolicy Enforce (the default) Modify permissions, which writing the template
// DACL needs.
func TestAdoptRightsAreDocumented(t *testing.T) {
	var rights []string
	for _, r := range (directory.Rights{}).Missing(true) {
		name, _, _ := strings.Cut(r, " (") // "Modify permissions (WRITE_DAC)" is documented as Modify permissions
		rights = append(rights, name)
	}
	comment := regexp.MustCompile(`(?m)^\s*(#|//) ?`)
	space := regexp.MustCompile(`\s+`)
	read := func(path string) string {
		b, err := os.ReadFile(filepath.Join("..", path))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	// between returns the text of s from the first start to the next end, comment markers
	// removed and whitespace collapsed, so wrapped lines read as one.
	between := func(path, s, start, end string) string {
		i := strings.Index(s, start)
		if i < 0 {
			t.Fatalf("%s: %q not found", path, start)
		}
		s = s[i:]
		if j := strings.Index(s, end); j >= 0 {
			s = s[:j]
		}
		return space.ReplaceAllString(comment.ReplaceAllString(s, ""), " ")
	}
	readme := read("README.md")
	sample := read("config/samples/dkm_v1alpha1_dkmcontainer_adopt.yaml")
	types := read("api/v1alpha1/dkmcontainer_types.go")
	for _, doc := range []struct{ where, text string }{
		{"README.md, the provisioning row", between("README.md", readme, "| `provisioning` |", "\n")},
		{"the Adopt sample's comment", between("sample", sample, "# Adopt:", "apiVersion:")},
		{"the ProvisioningAdopt doc comment", between("types", types, "// ProvisioningAdopt:", "ProvisioningAdopt ProvisioningMode")},
		{"the spec.provisioning doc comment", between("types", types, "// Provisioning is Create", "Provisioning ProvisioningMode")},
	} {
		for _, right := range rights {
			if !strings.Contains(doc.text, right) {
				t.Errorf("%s does not name %q, which Adopt checks: %s", doc.where, right, doc.text)
			}
		}
		if !strings.Contains(doc.text, "Enforce") {
			t.Errorf("%s does not say Modify permissions is for accessPolicy Enforce: %s", doc.where, doc.text)
		}
	}
}

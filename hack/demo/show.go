package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/go-ldap/ldap/v3"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/secdesc"
)

// showContainer prints what `kubectl get dkm -o wide` prints, the DKMContainer's events, and
// the DACL the operator wrote on the AD container.
func (d *demo) showContainer(ctx context.Context, env *environment) error {
	d.printf("\n$ kubectl get dkm -n %s -o wide\n", namespace)
	if err := d.printTable(ctx, env, "/apis/dkm.io/v1alpha1/namespaces/"+namespace+"/dkmcontainers"); err != nil {
		return err
	}
	obj := &dkmv1.DKMContainer{}
	if err := env.client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "vmm"}, obj); err != nil {
		return err
	}
	d.printf("\nConditions:\n")
	w := tabwriter.NewWriter(d.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "  TYPE\tSTATUS\tREASON\tMESSAGE")
	for _, c := range obj.Status.Conditions {
		fmt.Fprintf(w, "  %s\t%s\t%s\t%s\n", c.Type, c.Status, c.Reason, c.Message)
	}
	_ = w.Flush()
	if err := d.printEvents(ctx, env, obj); err != nil {
		return err
	}
	if err := d.printDACL(env, obj.Status.Container.DN); err != nil {
		return err
	}
	return d.showKeyReaders(env, obj.Status.Container.DN)
}

// showKeyReaders binds as the permitted service account and as an ordinary domain user and
// shows what each can read of the key objects: the ACEs are enforced by AD itself.
func (d *demo) showKeyReaders(env *environment, containerDN string) error {
	other, err := env.dc.CreateUser("jdoe", "Jdoe!"+randomText(12))
	if err != nil {
		return err
	}
	d.printf("\nWho can read the key in AD (key objects hold it in thumbnailPhoto):\n")
	for _, who := range []struct{ name, password string }{
		{"svc-vmm", env.servicePassword},
		{other.Name, other.Password},
	} {
		d.printf("  %s\\%-8s %s\n", env.dc.NetBIOS, who.name, keyReadResult(env, containerDN, who.name, who.password))
	}
	return nil
}

// keyReadResult searches the container for key blobs as one account and says what it got,
// naming only the blobs' sizes.
func keyReadResult(env *environment, containerDN, user, password string) string {
	conn, err := env.dc.DialAs(user+"@"+env.dc.Realm, password)
	if err != nil {
		return "cannot bind: " + err.Error()
	}
	defer conn.Close()
	res, err := conn.Search(ldap.NewSearchRequest(containerDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(thumbnailPhoto=*)", []string{"thumbnailPhoto"}, nil))
	if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		return "sees nothing: LDAP 32 No Such Object"
	}
	if err != nil {
		return "search failed: " + err.Error()
	}
	if len(res.Entries) == 0 {
		return "sees no key object"
	}
	var sizes []string
	for _, e := range res.Entries {
		sizes = append(sizes, fmt.Sprintf("%d bytes", len(e.GetRawAttributeValue("thumbnailPhoto"))))
	}
	return fmt.Sprintf("reads %d key object(s): %s (wrapped under the KEK)", len(res.Entries), strings.Join(sizes, ", "))
}

// printTable asks the apiserver for the server-side table kubectl prints (the CRD's printer
// columns, -o wide) and prints it the way kubectl does.
func (d *demo) printTable(ctx context.Context, env *environment, path string) error {
	httpClient, err := rest.HTTPClientFor(env.cfg)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(env.cfg.Host, "/")+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
	}
	table := &metav1.Table{}
	if err := json.Unmarshal(body, table); err != nil {
		return err
	}
	w := tabwriter.NewWriter(d.out, 0, 4, 3, ' ', 0)
	headers := make([]string, len(table.ColumnDefinitions))
	for i, c := range table.ColumnDefinitions {
		headers[i] = strings.ToUpper(c.Name)
	}
	fmt.Fprintln(w, strings.Join(headers, "\t"))
	for _, row := range table.Rows {
		cells := make([]string, len(row.Cells))
		for i, cell := range row.Cells {
			cells[i] = tableCell(table.ColumnDefinitions[i], cell)
		}
		fmt.Fprintln(w, strings.Join(cells, "\t"))
	}
	return w.Flush()
}

// tableCell renders one cell as kubectl does: dates as ages, missing values as <none>.
func tableCell(col metav1.TableColumnDefinition, cell any) string {
	if cell == nil {
		return "<none>"
	}
	if col.Type == "date" {
		if s, ok := cell.(string); ok {
			if t, err := time.Parse(time.RFC3339, s); err == nil {
				return duration.HumanDuration(time.Since(t))
			}
		}
	}
	return fmt.Sprint(cell)
}

// printEvents prints the events the operator recorded on the DKMContainer, oldest first.
func (d *demo) printEvents(ctx context.Context, env *environment, obj *dkmv1.DKMContainer) error {
	list := &eventsv1.EventList{}
	if err := env.client.List(ctx, list, client.InNamespace(namespace)); err != nil {
		return err
	}
	var events []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.UID == obj.UID {
			events = append(events, e)
		}
	}
	sort.Slice(events, func(i, j int) bool { return events[i].EventTime.Before(&events[j].EventTime) })
	d.printf("\nEvents:\n")
	w := tabwriter.NewWriter(d.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "  TYPE\tREASON\tNOTE")
	for _, e := range events {
		fmt.Fprintf(w, "  %s\t%s\t%s\n", e.Type, e.Reason, e.Note)
	}
	return w.Flush()
}

// printDACL reads the container's DACL over LDAPS (as Administrator) and prints it as SDDL,
// then each ACE with the account it names.
func (d *demo) printDACL(env *environment, dn string) error {
	conn, err := env.dc.Dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	res, err := conn.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false,
		"(objectClass=*)", []string{"nTSecurityDescriptor"}, []ldap.Control{&ldap.ControlMicrosoftSDFlags{Criticality: true, ControlValue: 0x4}}))
	if err != nil {
		return fmt.Errorf("reading the DACL of %s: %w", dn, err)
	}
	sd, err := secdesc.ParseDescriptor(res.Entries[0].GetRawAttributeValue("nTSecurityDescriptor"))
	if err != nil {
		return fmt.Errorf("parsing the DACL of %s: %w", dn, err)
	}
	domain, err := secdesc.ParseSID(env.dc.DomainSID)
	if err != nil {
		return err
	}
	aliases := secdesc.DomainAliases(domain, domain)
	d.printf("\nDACL of %s, as read back from AD:\n  %s\n", dn, secdesc.FormatDACL(sd, aliases))
	if sd.DACL == nil {
		return nil
	}
	w := tabwriter.NewWriter(d.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "  ACE\tACCOUNT")
	for _, ace := range sd.DACL.ACEs {
		fmt.Fprintf(w, "  %s\t%s\n", secdesc.FormatACE(ace, aliases), accountName(conn, env, ace.SID))
	}
	return w.Flush()
}

// accountName looks a SID up in the domain and configuration naming contexts.
func accountName(conn *ldap.Conn, env *environment, sid secdesc.SID) string {
	// Well-known SIDs first: the domain holds them only as foreign security principals named
	// by the SID itself.
	if name, ok := wellKnownNames[sid.String()]; ok {
		return name
	}
	for _, base := range []string{env.dc.BaseDN, "CN=Configuration," + env.dc.BaseDN} {
		res, err := conn.Search(ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 1, 0, false,
			fmt.Sprintf("(objectSid=%s)", sid), []string{"sAMAccountName", "cn"}, nil))
		if err != nil || len(res.Entries) == 0 {
			continue
		}
		if name := res.Entries[0].GetAttributeValue("sAMAccountName"); name != "" {
			return env.dc.NetBIOS + `\` + name
		}
		return res.Entries[0].GetAttributeValue("cn")
	}
	return sid.String()
}

// wellKnownNames names the well-known SIDs of the DKM template that have no object in the
// domain partition.
var wellKnownNames = map[string]string{
	"S-1-5-9":  `NT AUTHORITY\ENTERPRISE DOMAIN CONTROLLERS`,
	"S-1-5-18": `NT AUTHORITY\SYSTEM`,
}

// Package audit answers who can read the keys of a DKM container (dkmctl verify): every
// principal an ACE on a key object lets read thumbnailPhoto or rewrite the object's DACL,
// explicit or inherited, and, for a group outside the allowed set, every account in it through
// nested membership, compared with the allowed key readers.
package audit

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/dkm-operator/dkm-operator/internal/backup"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/secdesc"
)

// Directory is what an audit reads (*directory.Client has it).
type Directory interface {
	backup.Reader // the domain, principals and the container, as a backup reads them
	Members(ctx context.Context, groupDN string) ([]directory.Member, error)
	IsGroup(ctx context.Context, dn string) (bool, error)
}

// Reader is one principal that can read a key, and how.
type Reader struct {
	SID  secdesc.SID
	Name string
	// Via is the chain of groups the principal is a member of, outermost (the one an ACE
	// names) first; empty when an ACE names it directly.
	Via []string
	// Grants lists each ACE that gives the access: what it allows, where, explicit or inherited.
	Grants  []string
	Allowed bool
	// Note says why a reader is not allowed when the name alone does not (everybody, unknown).
	Note string
}

// String is one line for people.
func (r Reader) String() string {
	verdict := "allowed    "
	if !r.Allowed {
		verdict = "NOT ALLOWED"
	}
	s := fmt.Sprintf("%s %s (%s)", verdict, r.Name, r.SID)
	if len(r.Via) > 0 {
		s += " via group " + strings.Join(r.Via, " > ")
	}
	if r.Note != "" {
		s += ": " + r.Note
	}
	return s + "\n      " + strings.Join(r.Grants, "\n      ")
}

// Report is the verdict for one container.
type Report struct {
	Path       string
	KeyObjects int
	Readers    []Reader
}

// Denied are the readers outside the allowed set.
func (r *Report) Denied() []Reader {
	return slices.DeleteFunc(slices.Clone(r.Readers), func(x Reader) bool { return x.Allowed })
}

// grant is one ACE that gives a principal access to a key.
type grant struct {
	sid  secdesc.SID
	text string
}

// Readers audits the container at path against the allowed key readers.
func Readers(ctx context.Context, dir Directory, path string, allowed secdesc.KeyReaders) (*Report, error) {
	obs, err := dir.Observe(ctx, path)
	if err != nil {
		return nil, err
	}
	if !obs.Exists {
		return nil, fmt.Errorf("%s does not exist", path)
	}
	d, err := dir.Domain(ctx)
	if err != nil {
		return nil, err
	}
	aliases := secdesc.DomainAliases(d.SID, d.ForestRootSID)
	rep := &Report{Path: path}
	var grants []grant
	for _, m := range obs.Managers {
		for _, k := range m.Keys {
			rep.KeyObjects++
			if k.SD == nil {
				return nil, fmt.Errorf("the DACL of key object %s cannot be read (READ_CONTROL): it cannot be audited", k.DN)
			}
			for _, ace := range k.SD.DACL.ACEs {
				if what := secdesc.EffectiveKeyAccess(ace); what != "" {
					where := "explicit"
					if ace.IsInherited() {
						where = "inherited"
					}
					grants = append(grants, grant{ace.SID, fmt.Sprintf("%s %s on %s: %s", where,
						secdesc.FormatACE(ace, aliases), k.DN, what)})
				}
			}
		}
	}
	// The container's own ACEs: what later key objects inherit, and who can rewrite its DACL.
	if obs.Container.SD == nil {
		return nil, fmt.Errorf("the DACL of %s cannot be read (READ_CONTROL): it cannot be audited", path)
	}
	for _, e := range secdesc.CheckDACLSafety(obs.Container.SD, secdesc.KeyReaders{}, aliases).Exposures {
		grants = append(grants, grant{e.ACE.SID, "on the container " + path + ": " + e.SDDL + " " + firstClause(e.Reason)})
	}
	x := &expander{ctx: ctx, dir: dir, domain: d, allowed: allowed, readers: map[string]*Reader{}}
	for _, g := range grants {
		if err := x.add(g.sid, nil, g.text); err != nil {
			return nil, err
		}
	}
	for _, key := range x.order {
		rep.Readers = append(rep.Readers, *x.readers[key])
	}
	return rep, nil
}

// firstClause is an exposure's reason without the explanation after ";".
func firstClause(reason string) string {
	before, _, _ := strings.Cut(reason, ";")
	return before
}

// expander turns granted principals into readers, expanding groups outside the allowed set.
type expander struct {
	ctx     context.Context
	dir     Directory
	domain  directory.Domain
	allowed secdesc.KeyReaders
	readers map[string]*Reader
	order   []string
}

func (x *expander) add(sid secdesc.SID, via []string, grant string) error {
	if why := secdesc.BroadPrincipal(sid); why != "" {
		x.record(sid, why, via, grant, false, "stands for everybody")
		return nil
	}
	if x.allowed.Allowed(sid) || sid == secdesc.SIDEnterpriseDomainControllers || sid == secdesc.SIDCreatorOwner {
		// An allowed reader's members are allowed by the person who allowed it. Enterprise Domain
		// Controllers and Creator Owner are the template's (the DCs; the object's creator).
		x.record(sid, x.name(sid), via, grant, true, "")
		return nil
	}
	p, err := x.dir.ResolvePrincipal(x.ctx, sid.String())
	if err != nil {
		if directory.KindOf(err) != directory.KindUnknownPrincipal {
			return err
		}
		x.record(sid, sid.String(), via, grant, false, "not an account of "+x.domain.DNSName)
		return nil
	}
	group, err := x.dir.IsGroup(x.ctx, p.DN)
	if err != nil {
		return err
	}
	name := x.domain.NetBIOSName + `\` + p.SAMAccountName
	if !group {
		x.record(sid, name, via, grant, false, "")
		return nil
	}
	if slices.Contains(via, name) {
		return nil // a membership cycle
	}
	members, err := x.dir.Members(x.ctx, p.DN)
	if err != nil {
		return err
	}
	if len(members) == 0 {
		x.record(sid, name, via, grant, false, "a group outside the allowed set (empty now: whoever is added can read)")
		return nil
	}
	for _, m := range members {
		if err := x.add(m.SID, append(slices.Clone(via), name), grant); err != nil {
			return err
		}
	}
	return nil
}

func (x *expander) name(sid secdesc.SID) string {
	if p, err := x.dir.ResolvePrincipal(x.ctx, sid.String()); err == nil {
		return x.domain.NetBIOSName + `\` + p.SAMAccountName
	}
	return sid.String() // well-known (SYSTEM, BUILTIN\Administrators...)
}

// record adds a grant to the reader sid reached through via.
func (x *expander) record(sid secdesc.SID, name string, via []string, grant string, allowed bool, note string) {
	key := sid.String() + "|" + strings.Join(via, ">")
	r, ok := x.readers[key]
	if !ok {
		r = &Reader{SID: sid, Name: name, Via: via, Allowed: allowed, Note: note}
		x.readers[key] = r
		x.order = append(x.order, key)
	}
	if !slices.Contains(r.Grants, grant) {
		r.Grants = append(r.Grants, grant)
	}
}

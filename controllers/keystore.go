package controllers

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/internal/keys"
)

// KeyStore holds, per DKMContainer, the key ring the reconciler last read from AD. The projector
// serves pods from it, so a new replica gets its key without an LDAP round trip, and pods keep
// being served the last known keys while the directory is down (docs/design.md, rule 3).
//
// After a restart, until AD answers, it may hold a ring recovered from the replica Secrets
// instead (Recover, keyrecovery.go); the first ring read from AD replaces it.
type KeyStore struct {
	mu    sync.RWMutex
	rings map[types.NamespacedName]*keys.Ring
	// recovered marks the rings that came from replica Secrets, not from AD.
	recovered map[types.NamespacedName]bool
	changes   chan event.TypedGenericEvent[*dkmv1.DKMContainer]
}

// NewKeyStore returns an empty store. Changes are announced on a buffered channel the projector
// watches (a source.Channel).
func NewKeyStore() *KeyStore {
	return &KeyStore{
		rings:     map[types.NamespacedName]*keys.Ring{},
		recovered: map[types.NamespacedName]bool{},
		changes:   make(chan event.TypedGenericEvent[*dkmv1.DKMContainer], 1024),
	}
}

// Get returns the ring held for a DKMContainer, or nil.
func (s *KeyStore) Get(name types.NamespacedName) *keys.Ring {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rings[name]
}

// Set stores a ring read from AD and announces it when it differs (another active key or other
// versions) from the one held. It reports whether it changed.
func (s *KeyStore) Set(obj *dkmv1.DKMContainer, ring *keys.Ring) bool {
	name := types.NamespacedName{Namespace: obj.Namespace, Name: obj.Name}
	s.mu.Lock()
	old := s.rings[name]
	changed := !sameRing(old, ring)
	if changed {
		s.rings[name] = ring
	}
	delete(s.recovered, name)
	s.mu.Unlock()
	if changed {
		s.announce(obj)
	}
	return changed
}

// Recover stores a ring recovered from replica Secrets, only while none is held: a ring read
// from AD is never replaced by one that was not. It reports whether it stored the ring.
func (s *KeyStore) Recover(obj *dkmv1.DKMContainer, ring *keys.Ring) bool {
	name := types.NamespacedName{Namespace: obj.Namespace, Name: obj.Name}
	s.mu.Lock()
	changed := s.rings[name] == nil
	if changed {
		s.rings[name] = ring
		s.recovered[name] = true
	}
	s.mu.Unlock()
	if changed {
		s.announce(obj)
	}
	return changed
}

// Forget drops the ring of a DKMContainer that no longer exists.
func (s *KeyStore) Forget(name types.NamespacedName) {
	s.mu.Lock()
	delete(s.rings, name)
	delete(s.recovered, name)
	s.mu.Unlock()
}

// Recovered reports whether the ring held for a DKMContainer came from replica Secrets, AD not
// having been read since the operator started.
func (s *KeyStore) Recovered(name types.NamespacedName) bool {
	if s == nil {
		return false // a reconciler built without a store (unit tests) recovers nothing
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.recovered[name]
}

// Changes is the channel of DKMContainers whose ring changed.
func (s *KeyStore) Changes() <-chan event.TypedGenericEvent[*dkmv1.DKMContainer] {
	return s.changes
}

func (s *KeyStore) announce(obj *dkmv1.DKMContainer) {
	select {
	case s.changes <- event.TypedGenericEvent[*dkmv1.DKMContainer]{Object: obj.DeepCopy()}:
	default:
		// A full buffer means the projector is far behind; it resyncs every DKMContainer
		// periodically anyway, so dropping an announcement loses nothing.
	}
}

// sameRing compares rings by what a replica receives: the active ID and each version's
// fingerprint (never the bytes themselves outside the keys package).
func sameRing(a, b *keys.Ring) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.ActiveID() != b.ActiveID() || a.Len() != b.Len() {
		return false
	}
	av, bv := a.Versions(), b.Versions()
	for i := range av {
		if av[i].ID != bv[i].ID || av[i].Fingerprint != bv[i].Fingerprint {
			return false
		}
	}
	return true
}

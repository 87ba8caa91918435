package registry

import (
	"reflect"

	"github.com/dtr-registry/dtr/registry/identity"
	"github.com/dtr-registry/dtr/registry/identity/syncer"
	"github.com/dtr-registry/dtr/registry/meta"
)

// The identity source (docs/identity.md): sign-ins check passwords through
// the source the settings name, which watchSettings rebuilds on every
// replica when they change; ldap_sync jobs read its directory into the
// accounts (registry/identity/syncer).

type identityBox struct {
	settings meta.IdentitySettings
	src      identity.Source // nil: local accounts only
}

// applyIdentity rebuilds the identity source when its settings changed. A
// source the settings cannot make (they were checked when written, so a
// record from elsewhere) leaves sign-ins local and says why.
func (r *Replica) applyIdentity(st meta.Settings) {
	is := meta.IdentitySettings{Kind: meta.IdentityLocal}
	if st.Identity != nil {
		is = *st.Identity
	}
	if cur := r.identity.Load(); cur != nil && reflect.DeepEqual(cur.settings, is) {
		return
	}
	src, err := syncer.NewSource(is, nil)
	if err != nil {
		r.log.WithError(err).Error("the identity source settings cannot be used; only local accounts sign in until they are fixed (PUT /api/v0/meta/settings/identity)")
		src = nil
	}
	r.identity.Store(&identityBox{settings: is, src: src})
	r.log.WithField("kind", st.IdentityKind()).Info("identity source configured")
}

// identitySource is the current source, nil while sign-ins are local.
func (r *Replica) identitySource() identity.Source {
	if b := r.identity.Load(); b != nil {
		return b.src
	}
	return nil
}

// identitySyncer runs ldap_sync jobs on this replica.
func (r *Replica) identitySyncer() *syncer.Runner {
	return &syncer.Runner{Store: r.store, Watcher: r.member.Client(), ReplicaID: r.opts.ReplicaID, Log: r.log.WithField("component", "identity-sync")}
}

package meta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// Descriptor is an OCI content descriptor of a manifest that refers to
// another one through its subject.
type Descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

type referrerOf struct {
	Subject string `json:"subject"`
}

// AddReferrer records that manifest d in repo refers to subject. Distribution
// has no referrers API, so dtr keeps this index, updated on manifest PUT and
// DELETE.
func (s *Store) AddReferrer(ctx context.Context, repo, subject string, d Descriptor) error {
	a, err := putOp(key("referrers", repo, subject, d.Digest), d)
	if err != nil {
		return err
	}
	b, err := putOp(key("referrer-of", repo, d.Digest), referrerOf{Subject: subject})
	if err != nil {
		return err
	}
	_, err = s.KV.Txn(ctx).Then(a, b).Commit()
	return err
}

// Referrers lists the manifests in repo whose subject is subject.
func (s *Store) Referrers(ctx context.Context, repo, subject string) ([]Descriptor, error) {
	return list[Descriptor](ctx, s, dir("referrers", repo, subject))
}

// RemoveReferrer forgets manifest digest of repo (after it was deleted).
func (s *Store) RemoveReferrer(ctx context.Context, repo, digest string) error {
	var r referrerOf
	if _, err := s.get(ctx, key("referrer-of", repo, digest), &r); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	}
	_, err := s.KV.Txn(ctx).Then(
		clientv3.OpDelete(key("referrers", repo, r.Subject, digest)),
		clientv3.OpDelete(key("referrer-of", repo, digest)),
	).Commit()
	return err
}

// IndexedReferrer is one entry of the referrers index: manifest Digest of
// Repo refers to Subject. Revision is the entry's etcd revision, so that a
// removal can be made conditional on the entry being unchanged.
type IndexedReferrer struct {
	Repo, Digest, Subject string
	Revision              int64
}

// IndexedReferrers lists every entry of the referrers index, for the
// reconciler to check each against the storage.
func (s *Store) IndexedReferrers(ctx context.Context) ([]IndexedReferrer, error) {
	resp, err := s.KV.Get(ctx, dir("referrer-of"), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("listing the referrers index: %w", err)
	}
	out := make([]IndexedReferrer, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		parts, ok := keyParts(string(kv.Key), dir("referrer-of"), 2)
		var r referrerOf
		if !ok || json.Unmarshal(kv.Value, &r) != nil {
			continue
		}
		out = append(out, IndexedReferrer{Repo: parts[0], Digest: parts[1], Subject: r.Subject, Revision: kv.ModRevision})
	}
	return out, nil
}

// RemoveReferrerIfUnchanged forgets e unless it was written again since it
// was listed (a push of the same manifest racing with the reconciler wins).
// It reports whether it removed the entry.
func (s *Store) RemoveReferrerIfUnchanged(ctx context.Context, e IndexedReferrer) (bool, error) {
	k := key("referrer-of", e.Repo, e.Digest)
	resp, err := s.KV.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(k), "=", e.Revision)).
		Then(clientv3.OpDelete(key("referrers", e.Repo, e.Subject, e.Digest)), clientv3.OpDelete(k)).
		Commit()
	if err != nil {
		return false, fmt.Errorf("removing %s of %s from the referrers index: %w", e.Digest, e.Repo, err)
	}
	return resp.Succeeded, nil
}

package meta

import (
	"context"
	"encoding/json"
	"errors"

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

package main

import (
	"context"
	"reflect"
	"testing"

	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/registry"
	"github.com/dtr-registry/dtr/registry/meta"
)

// TestSettingsFromEnvironment: every setting the installer writes into a
// replica's environment reaches the replica's options, and a flag wins
// over its variable.
func TestSettingsFromEnvironment(t *testing.T) {
	c := contract.Config{
		ReplicaID: "0123456789ab", DataDir: contract.DataDir, CADir: contract.CADir, StorageRoot: contract.StorageDir,
		HTTPAddr: ":18080", HTTPSAddr: ":18443", PublicHTTPSPort: 4443,
		CACertFile: contract.CACertTarget, CAKeyFile: contract.SecretsDir + "ca-key",
		PeerListen: "https://0.0.0.0:12380", PeerAdvertise: contract.PeerURL("0123456789ab"), ClientSocket: "/run/etcd.sock",
		Hostnames: []string{"node1", "10.0.0.1"}, LogLevel: "debug", LogFormat: "json", ExternalURL: "https://dtr.example.com",
		Join: true, InitialCluster: "aaaaaaaaaaaa=https://dtr-registry-aaaaaaaaaaaa:12380", InsecurePeers: true,
		AdminUsername: "admin", AdminPasswordFile: contract.SecretsDir + "admin",
		TLSCertFile: contract.TLSCertPath, TLSKeyFile: contract.SecretsDir + "tls-key",
		Storage: "s3", S3Region: "eu-west-1", S3Bucket: "blobs", S3Endpoint: "https://s3.example.com", S3AccessKey: "AKIA",
		S3SecretKeyFile: contract.SecretsDir + "s3", S3Root: "/dtr", S3PathStyle: true, S3Insecure: true,
		Restore: true, RestoreStorage: contract.RestoreFilesystem, ForceNewCluster: "token-1",
	}
	env, err := contract.ParseEnv(c.Env())
	if err != nil {
		t.Fatal(err)
	}
	st, err := parseSettings(nil, env)
	if err != nil {
		t.Fatal(err)
	}
	want := registry.Options{
		ReplicaID: c.ReplicaID, DataDir: c.DataDir, CADir: c.CADir, StorageRoot: c.StorageRoot,
		HTTPAddr: c.HTTPAddr, HTTPSAddr: c.HTTPSAddr, PublicHTTPSPort: c.PublicHTTPSPort,
		CACertFile: c.CACertFile, CAKeyFile: c.CAKeyFile,
		PeerListen: c.PeerListen, PeerAdvertise: c.PeerAdvertise, ClientSocket: c.ClientSocket,
		InitialCluster: c.InitialCluster, Join: true, InsecurePeers: true,
		TLSCertFile: c.TLSCertFile, TLSKeyFile: c.TLSKeyFile, Hostnames: c.Hostnames,
		AdminUsername: c.AdminUsername, ExternalURL: c.ExternalURL, Storage: meta.Storage{Type: "s3"},
		Restore: true, RestoreStorage: c.RestoreStorage, ForceNewCluster: c.ForceNewCluster, LogLevel: c.LogLevel,
	}
	if !reflect.DeepEqual(st.opts, want) {
		t.Errorf("options from the environment:\n got %+v\nwant %+v", st.opts, want)
	}
	wantS3 := meta.S3{Region: "eu-west-1", Bucket: "blobs", RegionEndpoint: "https://s3.example.com", AccessKey: "AKIA", RootDirectory: "/dtr", ForcePathStyle: true}
	if !reflect.DeepEqual(st.s3, wantS3) || !st.s3Insecure || st.logFormat != "json" ||
		st.adminPasswordFile != c.AdminPasswordFile || st.s3SecretKeyFile != c.S3SecretKeyFile {
		t.Errorf("S3, log format and secret files from the environment: %+v", st)
	}

	st, err = parseSettings([]string{"--replica-id", "ba9876543210", "--join=false", "--public-https-port", "443"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if st.opts.ReplicaID != "ba9876543210" || st.opts.Join || st.opts.PublicHTTPSPort != 443 || st.opts.DataDir != c.DataDir {
		t.Errorf("flags over the environment: %+v", st.opts)
	}
}

// TestSettingsDefaults: with no environment the flags keep their defaults.
func TestSettingsDefaults(t *testing.T) {
	st, err := parseSettings(nil, contract.Config{})
	if err != nil {
		t.Fatal(err)
	}
	o := st.opts
	if o.DataDir != "/var/lib/dtr" || o.HTTPAddr != ":8080" || o.HTTPSAddr != ":8443" || o.PublicHTTPSPort != 443 ||
		o.Storage.Type != "filesystem" || st.s3.Region != "us-east-1" || o.RestoreStorage != contract.RestoreKeepStorage ||
		o.LogLevel != "info" || st.logFormat != "text" || o.Hostnames != nil || o.Join {
		t.Errorf("defaults: %+v %+v", o, st)
	}
}

// TestBadEnvironmentExits2: a variable that does not parse stops serve
// before anything starts.
func TestBadEnvironmentExits2(t *testing.T) {
	t.Setenv("DTR_JOIN", "maybe")
	if code := run(context.Background(), []string{"serve"}); code != 2 {
		t.Errorf("serve with DTR_JOIN=maybe: exit %d, want 2", code)
	}
}

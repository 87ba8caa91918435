package commands

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dtr-registry/dtr/backup"
	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/images"
	"github.com/dtr-registry/dtr/internal/units"
	"github.com/dtr-registry/dtr/orchestrator"
	"github.com/dtr-registry/dtr/prompt"
)

type restoreOptions struct {
	ucp            ucpOptions
	replica        replicaOptions
	defaultStorage bool
}

func newRestoreCommand(cli *Cli) *cobra.Command {
	var o restoreOptions
	cmd := &cobra.Command{
		Use:   "restore [flags] < dtr.bkp",
		Short: "Install a fresh replica from a backup read on stdin",
		Long: `Rebuild the registry from a backup: a fresh replica with the backed-up identity,
certificates, keys, settings and records. It never prompts (stdin carries the
backup), so every value is a flag or variable. Every replica of the old cluster
must be destroyed first. The whole backup is verified before anything changes.

A backup taken with --include-images also brings back the images: the replica
writes every blob, manifest and tag into the chosen storage, verifying each again,
before it reports healthy. Either way restore then reports the referenced blobs
the storage lacks and the tags they break.

  docker run -i --rm --env UCP_PASSWORD dtr restore --ucp-url … --ucp-username admin \
    --ucp-node node1 --dtr-use-default-storage < dtr.bkp`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runRestore(cmd.Context(), cli, cmd, &o) },
	}
	f := newFlags(cmd)
	addUCPFlags(f, &o.ucp)
	addNodeFlag(f, &o.replica, "Hostname of the node to restore the replica on, as in 'docker node ls' (required)")
	addReplicaIDFlag(f, &o.replica, "The ID of the replica to restore (default: the ID of the replica backed up)", "DTR_INSTALL_REPLICA_ID", "MSR_INSTALL_REPLICA_ID")
	addExternalURLFlag(f, &o.replica)
	addCertFlags(f, &o.replica)
	f.Bool(&o.defaultStorage, "dtr-use-default-storage", false, "Use the storage configured when the backup was taken (cloud storage if it was, else a local volume)", "DTR_DEFAULT_STORAGE")
	addStorageVolumeFlag(f, &o.replica)
	addNFSFlags(f, &o.replica)
	addAsyncNFSFlag(f, &o.replica)
	addPortFlags(f, &o.replica)
	addRethinkFlag(f, &o.replica)
	addProxyFlags(f, &o.replica)
	addLogFlags(f, &o.replica)
	addPprofFlag(f, &o.replica)
	addClientCertFlags(f, &o.replica)
	return cmd
}

func runRestore(ctx context.Context, cli *Cli, cmd *cobra.Command, o *restoreOptions) error {
	// stdin is the backup: never prompt, whatever it is connected to.
	prompter := cli.Prompter
	stdinIsTerminal := prompter != nil && prompter.Interactive()
	cli.Prompter = prompt.NonInteractive{}
	defer func() { cli.Prompter = prompter }()

	if err := o.replica.validate(cmd); err != nil {
		return err
	}
	if err := unsupported(cmd); err != nil {
		return err
	}
	storage := 0
	for _, set := range []bool{o.defaultStorage, o.replica.storageVolume != "", changed(cmd, "nfs-storage-url") && o.replica.nfsURL != ""} {
		if set {
			storage++
		}
	}
	switch {
	case storage == 0:
		return usageErrorf("Must explicitly set one of --dtr-use-default-storage, --dtr-storage-volume, or --nfs-storage-url")
	case storage > 1:
		return usageErrorf("Set only one of --dtr-use-default-storage, --dtr-storage-volume, or --nfs-storage-url")
	}
	if o.replica.ucpNode == "" {
		return usageErrorf("missing %s: restore needs the node to place the replica on", envOf(cmd, "ucp-node"))
	}
	if stdinIsTerminal {
		return usageErrorf("restore reads the backup from stdin, which is a terminal here: run it without -t and redirect the file, e.g. docker run -i --rm … dtr restore … < dtr.bkp")
	}
	if err := o.ucp.complete(cli, cmd, credsAlways); err != nil {
		return err
	}
	o.replica.warnIgnored(cli, cmd)
	cluster, err := o.ucp.connect(ctx, cli)
	if err != nil {
		return err
	}
	defer cluster.Close()
	node, err := chooseNode(ctx, cli, cluster, o.replica.ucpNode)
	if err != nil {
		return err
	}
	replicas, err := orchestrator.FindReplicas(ctx, cluster)
	if err != nil {
		return err
	}
	if len(replicas) > 0 {
		ids := make([]string, len(replicas))
		for i, r := range replicas {
			ids[i] = r.ID
		}
		return fmt.Errorf("this cluster still has replicas (%s); restore installs a fresh cluster, so destroy every replica first: for each ID run dtr destroy --replica-id <id> with the same --ucp-url and credentials; nothing was changed",
			strings.Join(ids, ", "))
	}
	spool, m, err := spoolBackup(cli)
	if err != nil {
		return err
	}
	defer os.Remove(spool)
	cli.Log.Infof("The backup verified: dtr %s, cluster %s, replica %s, metadata revision %d, %d files, taken %s",
		m.DTRVersion, m.ClusterID, m.SourceReplica, m.EtcdRevision, len(m.Files), m.Created.Format(time.RFC3339))
	src, err := readBackupSource(spool)
	if err != nil {
		return err
	}
	src.images = m.Images
	peerPort, err := o.replica.reservePorts(ctx, cli, cluster, node)
	if err != nil {
		return err
	}
	id := o.replica.replicaID
	if id == "" {
		id = m.SourceReplica
	}
	regID, jobID, err := imageIDs(ctx, cluster)
	if err != nil {
		return err
	}
	describeBackupImages(cli, m)
	cfg := o.replica.config(id, node, images.Registry(), regID, jobID, cli.logLevel)
	cfg.PeerPort = peerPort
	cfg.Restore, cfg.RestoreStorage = true, contract.RestoreFilesystem
	if o.defaultStorage {
		cfg.RestoreStorage = contract.RestoreKeepStorage
	}
	describeRestoredStorage(cli, o, cfg, src)
	client, err := orchestrator.RestoreClient([]byte(src.ca.CertPEM), []byte(src.ca.KeyPEM))
	if err != nil {
		return err
	}
	in := &orchestrator.Install{
		Replica:       cfg,
		OverlaySubnet: defaultOverlaySubnet,
		TLSCert:       o.replica.dtrCert,
		TLSKey:        o.replica.dtrKey,
		HealthTimeout: restoreHealthTimeout(m),
		ClientFor:     orchestrator.HTTPSClient,
		Restore: &orchestrator.Restore{CACertPEM: []byte(src.ca.CertPEM), CAKeyPEM: []byte(src.ca.KeyPEM), Client: client,
			Backup: func() (io.ReadCloser, int64, error) {
				f, err := os.Open(spool)
				if err != nil {
					return nil, 0, err
				}
				st, err := f.Stat()
				if err != nil {
					f.Close()
					return nil, 0, err
				}
				return f, st.Size(), nil
			}},
	}
	if in.TLSCert == "" && src.tlsCert != nil {
		cli.Log.Info("Using the TLS certificate from the backup")
		in.TLSCert, in.TLSKey = string(src.tlsCert), string(src.tlsKey)
	}
	objs := orchestrator.Objects{C: cluster, Warn: warner(cli)}
	plan, err := objs.PlanInstall(ctx, in)
	if err != nil {
		return err
	}
	start := cli.Now()
	if err := plan.Apply(ctx, cli.Log, false); err != nil {
		return err
	}
	cli.Log.Debugf("restore took %v", cli.Now().Sub(start).Round(time.Millisecond))
	api := orchestrator.ReplicaAPI{URL: orchestrator.ReplicaURL(cfg.NodeAddr, cfg.HTTPSPort), User: o.ucp.username, Password: o.ucp.password,
		Client: orchestrator.HTTPSClient([]byte(src.ca.CertPEM))}
	reportRestoredStorage(ctx, cli, api, m)
	cli.Log.Infof("Restore successfully completed for replica %s", id)
	cli.Log.Info("Accounts, passwords, permissions, repositories and settings are as they were when the backup was taken. " +
		"Clients that logged in after that (their refresh tokens are not in the backup) must run docker login again")
	cli.Log.Infof("You can use flag '--existing-replica-id %s' when joining other replicas to your Docker Trusted Registry Cluster", id)
	cli.Log.Info("Restore complete.")
	return nil
}

// spoolBackup copies stdin to a temporary file while it verifies the whole
// stream, so nothing on the cluster changes for a backup that is not intact.
func spoolBackup(cli *Cli) (string, backup.Manifest, error) {
	f, err := os.CreateTemp("", "dtr-restore-*.tar")
	if err != nil {
		return "", backup.Manifest{}, fmt.Errorf("spooling the backup: %w (set TMPDIR to a directory with room)", err)
	}
	cli.Log.Infof("Reading the backup from stdin into %s to verify it before anything changes", f.Name())
	m, err := backup.Verify(io.TeeReader(cli.In, f))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = backup.CheckVersion(m, images.Version)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", m, fmt.Errorf("%w; nothing was changed", err)
	}
	return f.Name(), m, nil
}

// backupSource is what the installer itself needs from a backup.
type backupSource struct {
	ca struct {
		CertPEM string `json:"certPEM"`
		KeyPEM  string `json:"keyPEM"`
	}
	settings struct {
		ExternalURL string `json:"externalURL"`
		Storage     struct {
			Type string `json:"type"`
			S3   *struct {
				Bucket         string `json:"bucket"`
				RegionEndpoint string `json:"regionEndpoint"`
			} `json:"s3"`
		} `json:"storage"`
	}
	tlsCert, tlsKey []byte
	images          *backup.Images
}

func readBackupSource(path string) (*backupSource, error) {
	var src backupSource
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	err = backup.Walk(f, func(p string, b []byte) error {
		var into any
		switch p {
		case contract.RecordCA:
			into = &src.ca
		case contract.RecordSettings:
			into = &src.settings
		case contract.RecordTLSCert:
			src.tlsCert = b
		case contract.RecordTLSKey:
			src.tlsKey = b
		}
		if into == nil {
			return nil
		}
		rec, err := backup.ParseRecord(p, b)
		if err != nil {
			return err
		}
		return json.Unmarshal(rec.Value, into)
	})
	if err != nil {
		return nil, err
	}
	if src.ca.CertPEM == "" || src.ca.KeyPEM == "" {
		return nil, fmt.Errorf("the backup has no cluster CA (%s); nothing was changed", contract.RecordCA)
	}
	return &src, nil
}

// describeRestoredStorage says where the restored registry finds its image
// blobs, which are not in the backup.
func describeRestoredStorage(cli *Cli, o *restoreOptions, cfg orchestrator.ReplicaConfig, src *backupSource) {
	st := src.settings.Storage
	switch {
	case !o.defaultStorage:
		cli.Log.Infof("Image storage: the filesystem of replica %s, %s on node %s", cfg.ID, cfg.StorageDescription(), cfg.Node)
	case st.Type == "s3" && st.S3 != nil:
		cli.Log.Infof("Image storage: the backup's S3 bucket %s %s", st.S3.Bucket, st.S3.RegionEndpoint)
	case src.images != nil && src.images.Included:
		cli.Log.Infof("Image storage: volume dtr-registry-%s on node %s, where the replica writes the backup's images", cfg.ID, cfg.Node)
	default:
		cli.Log.Warnf("The backup's storage is the filesystem of its replica's node, and this backup holds no image blobs: the new replica keeps them in volume dtr-registry-%s on node %s. "+
			"Copy the old blobs there, restore with --dtr-storage-volume naming the volume or path that holds them, or restore a backup taken with --include-images", cfg.ID, cfg.Node)
	}
}

// describeBackupImages says what of the images the backup holds.
func describeBackupImages(cli *Cli, m backup.Manifest) {
	switch im := m.Images; {
	case im == nil:
		cli.Log.Info("The backup has no image index (it predates them): restore cannot tell which images the storage must hold")
	case im.Included:
		cli.Log.Infof("The backup holds the images: %d repositories, %d tags, %d blobs (%s); the replica writes them into its storage before it reports healthy",
			im.Repositories, im.Tags, im.Blobs, units.HumanBytes(im.Bytes))
	default:
		cli.Log.Infof("The backup lists %d tags in %d repositories (%d blobs, %s) but holds no blobs: the storage must have them", im.Tags, im.Repositories, im.Blobs, units.HumanBytes(im.Bytes))
	}
}

// restoreHealthTimeout leaves the replica time to write the backup's
// images before it reports healthy: at least 20 MiB/s.
func restoreHealthTimeout(m backup.Manifest) time.Duration {
	if m.Images == nil || !m.Images.Included {
		return healthTimeout
	}
	return healthTimeout + time.Duration(m.Images.Bytes/(20<<20))*time.Second
}

// reportRestoredStorage asks the restored replica which referenced blobs
// its storage lacks and says so, with the fix, before restore finishes.
func reportRestoredStorage(ctx context.Context, cli *Cli, api orchestrator.ReplicaAPI, m backup.Manifest) {
	live, err := api.StorageCheck(ctx)
	if err != nil {
		cli.Log.Warnf("Could not check the restored storage (%v): run dtr backup --check-storage --existing-replica-id <this replica> once you can log in", err)
		return
	}
	res := live.Missing()
	if res.MissingBlobs == 0 {
		cli.Log.Infof("The storage holds all %d blobs the restored repositories reference", res.ReferencedBlobs)
		return
	}
	fix := "restore again from a backup taken with --include-images, or with --dtr-storage-volume or --nfs-storage-url naming the storage that holds these blobs"
	if m.Images != nil && m.Images.Included {
		fix = "they were missing from the registry storage when the backup was taken; push those images again"
	}
	cli.Log.Warnf("%s. To fix it: %s", res.Summary(), fix)
}

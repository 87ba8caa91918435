package commands

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/dtr-registry/dtr/internal/units"
	"github.com/dtr-registry/dtr/orchestrator"
)

type backupOptions struct {
	ucp             ucpOptions
	existingReplica string
	offline         bool
	includeImages   bool
	checkStorage    bool
}

// errTerminalMode is DTR's refusal of a terminal on stdout, word for word.
const errTerminalMode = "Terminal mode detected. This command does not work in terminal mode. Please remove -t from the docker run command's arguments."

func newBackupCommand(cli *Cli) *cobra.Command {
	var o backupOptions
	cmd := &cobra.Command{
		Use:   "backup [flags] > dtr.bkp",
		Short: "Stream a backup of the registry's metadata, certificates, settings and (optionally) images to stdout",
		Long: `Write a tar of the cluster's metadata, certificates, keys and settings to stdout,
read at one consistent point while the registry keeps serving. Logs and progress go
to stderr. The backup always lists every tag, manifest and blob the repositories
reference; with --include-images it also holds each of those blobs once, verified
against its digest as it is read, so that one file restores the whole registry
(without it, back up the image storage separately).

--check-storage writes no backup: it reports the referenced blobs the registry
storage lacks and the tags that cannot be pulled because of them.

The backup holds private keys: store it like a secret.

  read -sp 'ucp password: ' UCP_PASSWORD; export UCP_PASSWORD
  docker run -i --rm --env UCP_PASSWORD dtr backup --ucp-url … --ucp-username admin \
    --existing-replica-id 47f20fb864cf --include-images > dtr.bkp
  gpg --symmetric dtr.bkp`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBackup(cmd.Context(), cli, cmd, &o) },
	}
	f := newFlags(cmd)
	addUCPFlags(f, &o.ucp)
	addExistingReplicaFlag(f, &o.existingReplica, "The ID of the replica to back up from")
	f.Bool(&o.offline, "offline-backup", false, "Accepted for DTR compatibility; dtr backups are always consistent and never stop a replica", "DTR_OFFLINE_BACKUP")
	f.Bool(&o.includeImages, "include-images", false, "Also back up every referenced image blob and manifest, so that restore brings the images back whatever storage it uses", "DTR_BACKUP_INCLUDE_IMAGES")
	f.Bool(&o.checkStorage, "check-storage", false, "Write no backup: report the referenced blobs missing from the registry storage, and the tags they break", "DTR_BACKUP_CHECK_STORAGE")
	return cmd
}

func runBackup(ctx context.Context, cli *Cli, cmd *cobra.Command, o *backupOptions) error {
	if o.checkStorage && o.includeImages {
		return usageErrorf("--check-storage writes no backup: use it without --include-images")
	}
	// Refuse a terminal first: the tar must never reach a screen.
	if cli.OutIsTerminal && !o.checkStorage {
		return usageErrorf(errTerminalMode)
	}
	if o.existingReplica != "" {
		if _, err := validateReplicaID(o.existingReplica); err != nil {
			return err
		}
	}
	if o.offline {
		cli.Log.Info("--offline-backup is not needed: dtr reads the backup at one consistent revision while the replica keeps serving")
	}
	cluster, replica, _, err := o.ucp.connectToReplicas(ctx, cli, cmd, credsAlways,
		&replicaChoice{flag: "existing-replica-id", id: o.existingReplica, question: "Choose a replica to back up from"})
	if err != nil {
		return err
	}
	defer cluster.Close()
	api, err := replicaAPI(ctx, cluster, &o.ucp, replica)
	if err != nil {
		return err
	}
	if o.checkStorage {
		return runCheckStorage(ctx, cli, api, replica.ID)
	}
	what := "metadata, certificates and settings"
	if o.includeImages {
		what = "metadata, certificates, settings and images"
	}
	cli.Log.Infof("Backing up the %s of replica %s", what, replica.ID)
	cli.Log.Warn("The backup holds the cluster's private keys (CA, token signing, TLS): store it like a secret, e.g. gpg --symmetric dtr.bkp")
	start := cli.Now()
	m, n, err := api.Backup(ctx, cli.Out, orchestrator.BackupRequest{IncludeImages: o.includeImages,
		Progress: func(written, expected int64) { cli.Log.Info(progressLine(written, expected, cli.Now().Sub(start))) }})
	if err != nil {
		return err
	}
	took := cli.Now().Sub(start)
	cli.Log.Infof("Wrote %d bytes (%s/s): %d files of cluster %s at metadata revision %d, in %v", n, units.HumanBytes(rate(n, took)), len(m.Files), m.ClusterID, m.EtcdRevision, took.Round(time.Millisecond))
	switch im := m.Images; {
	case im == nil:
		cli.Log.Info("Image blobs are not in the backup: they stay in the registry's storage; back that up separately")
	case im.Included:
		cli.Log.Infof("Images included: %d repositories, %d tags, %d manifests, %d blobs (%s)", im.Repositories, im.Tags, im.Manifests, im.Blobs, units.HumanBytes(im.Bytes))
	default:
		cli.Log.Infof("Image blobs are not in the backup (%d referenced, %s): they stay in the registry's storage; back that up separately, or use --include-images", im.Blobs, units.HumanBytes(im.Bytes))
	}
	if im := m.Images; im != nil && im.Missing > 0 {
		cli.Log.Warnf("%d referenced blobs were missing from the registry storage and are in no backup: run dtr backup --check-storage to see the tags they break", im.Missing)
	}
	cli.Log.Info("Backup complete.")
	return nil
}

// runCheckStorage reports what the live registry's storage lacks.
func runCheckStorage(ctx context.Context, cli *Cli, api orchestrator.ReplicaAPI, replica string) error {
	cli.Log.Infof("Checking that the registry storage holds every blob the repositories reference (replica %s)", replica)
	live, err := api.StorageCheck(ctx)
	if err != nil {
		return err
	}
	res := live.Missing()
	if res.MissingBlobs == 0 {
		cli.Log.Infof("The storage holds all %d referenced blobs of %d repositories.", res.ReferencedBlobs, res.Repositories)
		return nil
	}
	fix := "Push those images again, or restore the storage from a copy that holds them"
	if live.Restored != nil {
		fix = "These are the images of the backup this replica restored: restore from a backup taken with --include-images, or copy the blobs from the old storage"
	}
	return fmt.Errorf("%s. %s", res.Summary(), fix)
}

// progressLine says how far a long backup is: bytes, rate, and the time
// left once the size is known.
func progressLine(written, expected int64, took time.Duration) string {
	r := rate(written, took)
	s := fmt.Sprintf("Backed up %s (%s/s)", units.HumanBytes(written), units.HumanBytes(r))
	if expected > written && r > 0 {
		left := time.Duration(float64(expected-written) / float64(r) * float64(time.Second))
		s += fmt.Sprintf(" of about %s, about %v left", units.HumanBytes(expected), left.Round(time.Second))
	}
	return s
}

func rate(n int64, d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64(float64(n) / d.Seconds())
}

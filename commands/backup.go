package commands

import (
	"context"
	"time"

	"github.com/spf13/cobra"
)

type backupOptions struct {
	ucp             ucpOptions
	existingReplica string
	offline         bool
}

// errTerminalMode is DTR's refusal of a terminal on stdout, word for word.
const errTerminalMode = "Terminal mode detected. This command does not work in terminal mode. Please remove -t from the docker run command's arguments."

func newBackupCommand(cli *Cli) *cobra.Command {
	var o backupOptions
	cmd := &cobra.Command{
		Use:   "backup [flags] > dtr.bkp",
		Short: "Stream a backup of the registry's metadata, certificates and settings to stdout",
		Long: `Write a tar of the cluster's metadata, certificates, keys and settings to stdout,
read at one consistent point while the registry keeps serving. Logs go to stderr.
Image blobs are not included: they live in the shared storage.

The backup holds private keys: store it like a secret.

  read -sp 'ucp password: ' UCP_PASSWORD; export UCP_PASSWORD
  docker run -i --rm --env UCP_PASSWORD dtr backup --ucp-url … --ucp-username admin \
    --existing-replica-id 47f20fb864cf > dtr.bkp
  gpg --symmetric dtr.bkp`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBackup(cmd.Context(), cli, cmd, &o) },
	}
	f := newFlags(cmd)
	addUCPFlags(f, &o.ucp)
	addExistingReplicaFlag(f, &o.existingReplica, "The ID of the replica to back up from")
	f.Bool(&o.offline, "offline-backup", false, "Accepted for DTR compatibility; dtr backups are always consistent and never stop a replica", "DTR_OFFLINE_BACKUP")
	return cmd
}

func runBackup(ctx context.Context, cli *Cli, cmd *cobra.Command, o *backupOptions) error {
	// Refuse a terminal first: the tar must never reach a screen.
	if cli.OutIsTerminal {
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
	cli.Log.Infof("Backing up the metadata, certificates and settings of replica %s", replica.ID)
	cli.Log.Warn("The backup holds the cluster's private keys (CA, token signing, TLS): store it like a secret, e.g. gpg --symmetric dtr.bkp")
	start := cli.Now()
	m, n, err := api.Backup(ctx, cli.Out)
	if err != nil {
		return err
	}
	cli.Log.Infof("Wrote %d bytes: %d files of cluster %s at metadata revision %d, in %v", n, len(m.Files), m.ClusterID, m.EtcdRevision, cli.Now().Sub(start).Round(time.Millisecond))
	cli.Log.Info("Image blobs are not in the backup: they stay in the registry's storage; back that up separately")
	cli.Log.Info("Backup complete.")
	return nil
}

package commands

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

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
	if _, err := chooseNode(ctx, cli, cluster, o.replica.ucpNode); err != nil {
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
	return notImplemented("restore")
}

package commands

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/dtr-registry/dtr/contract"
	"github.com/dtr-registry/dtr/orchestrator"
)

type reconfigureOptions struct {
	ucp             ucpOptions
	replica         replicaOptions
	existingReplica string
	storageMigrated bool
	rotateTokenKey  bool
	apply           applyOptions
	// metricsToken is read from --metrics-token-file or $DTR_METRICS_TOKEN;
	// metricsTokenGiven with an empty one removes it.
	metricsToken      string
	metricsTokenGiven bool
	identitySource    string
}

func newReconfigureCommand(cli *Cli) *cobra.Command {
	var o reconfigureOptions
	cmd := &cobra.Command{
		Use:   "reconfigure [flags]",
		Short: "Change the configuration of every replica, one at a time",
		Long: `Change settings of the whole cluster. Replicas restart one at a time, each healthy
before the next; with one replica the registry is briefly unavailable. Only the
flags given change; the others keep their current values. When a replica does
not come back healthy, every replica gets its old settings back (unless
--keep-on-failure).

--rotate-token-key makes the replicas sign tokens with a new key, restarting
nothing: tokens signed with the old key stay valid until they expire. Rotate
after a backup file or a replica's volume may have been exposed.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runReconfigure(cmd.Context(), cli, cmd, &o) },
	}
	f := newFlags(cmd)
	addUCPFlags(f, &o.ucp)
	addExistingReplicaFlag(f, &o.existingReplica, "The ID of an existing, healthy replica to reconfigure the cluster through")
	addExternalURLFlag(f, &o.replica)
	addCertFlags(f, &o.replica)
	addStorageVolumeFlag(f, &o.replica)
	addNFSFlags(f, &o.replica)
	addAsyncNFSFlag(f, &o.replica)
	addPortFlags(f, &o.replica)
	addRethinkFlag(f, &o.replica)
	addProxyFlags(f, &o.replica)
	addLogFlags(f, &o.replica)
	addPprofFlag(f, &o.replica)
	addClientCertFlags(f, &o.replica)
	addCABundleFlag(f, &o.replica)
	addMetricsPortFlag(f, &o.replica, "Publish every replica's /metrics without authentication on this host port; 0 stops publishing it")
	addMetricsTokenFlag(f, &o.replica, "Rotate the metrics-only bearer token to the one in this file (16+ characters), or to $DTR_METRICS_TOKEN; \"\" removes it. The replicas restart one at a time; until one has, it takes the old token")
	addOTLPFlag(f, &o.replica, "Export OpenTelemetry traces to this OTLP/HTTP collector URL; \"\" turns tracing off")
	f.Bool(&o.storageMigrated, "storage-migrated", false, "The new storage already holds the images (you copied them); keep tags and metadata", "STORAGE_MIGRATED")
	f.Bool(&o.rotateTokenKey, "rotate-token-key", false, "Sign tokens with a new key from now on; tokens signed with the old key stay valid until they expire (restarts nothing)", "DTR_ROTATE_TOKEN_KEY")
	addIdentitySourceFlag(f, &o.identitySource, "")
	addApplyFlags(f, &o.apply)
	return cmd
}

func runReconfigure(ctx context.Context, cli *Cli, cmd *cobra.Command, o *reconfigureOptions) error {
	if err := o.replica.validate(cmd); err != nil {
		return err
	}
	if o.existingReplica != "" {
		if _, err := validateReplicaID(o.existingReplica); err != nil {
			return err
		}
	}
	var err error
	if o.metricsToken, o.metricsTokenGiven, err = o.replica.metricsToken(cli, cmd); err != nil {
		return err
	}
	cli.Log.Info("Starting phase1 reconfigure")
	o.replica.warnIgnored(cli, cmd)
	cluster, existing, replicas, err := o.ucp.connectToReplicas(ctx, cli, cmd, credsAlways,
		&replicaChoice{flag: "existing-replica-id", id: o.existingReplica, question: "Choose a replica to reconfigure"})
	if err != nil {
		return err
	}
	defer cluster.Close()
	ch, err := o.change(cmd, existing)
	if err != nil {
		return err
	}
	var identity *orchestrator.IdentitySource
	if changed(cmd, "identity-source") {
		if identity, err = identitySource(o.identitySource, &o.ucp); err != nil {
			return err
		}
	}
	if ch.Describe() == "" && !o.rotateTokenKey && identity == nil {
		return usageErrorf("nothing to change: give at least one setting, e.g. --dtr-external-url, --replica-https-port, --identity-source or --rotate-token-key")
	}
	if ch.HTTPPort != nil || ch.HTTPSPort != nil || ch.MetricsPort != nil && *ch.MetricsPort != 0 {
		nodes := map[string]string{}
		for _, r := range replicas {
			if other, ok := nodes[r.Node]; ok {
				return usageErrorf("replicas %s and %s share node %s: one port setting cannot fit both; reconfigure ports only on clusters with one replica per node", other, r.ID, r.Node)
			}
			nodes[r.Node] = r.ID
			http, https := r.HTTPPort, r.HTTPSPort
			if ch.HTTPPort != nil {
				http = *ch.HTTPPort
			}
			if ch.HTTPSPort != nil {
				https = *ch.HTTPSPort
			}
			metrics := r.MetricsPort
			if ch.MetricsPort != nil {
				metrics = *ch.MetricsPort
			}
			if err := metricsPortClash(metrics, http, https); err != nil {
				return err
			}
			ports := []int{http, https}
			if metrics != 0 {
				ports = append(ports, metrics)
			}
			users, err := orchestrator.PortsInUseExcept(ctx, cluster, r.Node, contract.ServiceName(r.ID), ports...)
			if err != nil {
				return err
			}
			if len(users) > 0 {
				return usageErrorf("port %d is already published on node %s by service %s; choose another port (nothing was changed)", users[0].Port, r.Node, users[0].Service)
			}
			if r.PeerPort > 0 && (http == r.PeerPort || https == r.PeerPort || metrics == r.PeerPort) {
				return usageErrorf("port %d is replica %s's metadata peer port on node %s; choose another port (nothing was changed)", r.PeerPort, r.ID, r.Node)
			}
		}
	}
	api, problems, err := apiAndProblems(ctx, cluster, &o.ucp, existing, replicas)
	if err != nil {
		return err
	}
	if problems != "" {
		return fmt.Errorf("refusing to restart replicas while the cluster is unhealthy (%s): fix it first", problems)
	}
	addrs := map[string]string{}
	for _, r := range replicas {
		if addrs[r.Node], err = nodeAddr(ctx, cluster, r.Node); err != nil {
			return err
		}
	}
	in := &orchestrator.Reconfigure{Replicas: replicas, Addrs: addrs, Change: ch, Client: api.Client, Timeout: healthTimeout}
	if ch.ExternalURL != nil {
		was, err := existing.Config()
		if err != nil {
			return fmt.Errorf("reading the settings of replica %s: %w", existing.ID, err)
		}
		in.Settings = func(ctx context.Context) error {
			return api.PatchSettings(ctx, contract.SettingsPatch{ExternalURL: ch.ExternalURL})
		}
		if was.ExternalURL != "" {
			in.UndoSettings = func(ctx context.Context) error {
				return api.PatchSettings(ctx, contract.SettingsPatch{ExternalURL: &was.ExternalURL})
			}
		}
	}
	if o.rotateTokenKey {
		in.RotateThrough = existing.ID
		in.RotateTokenKey = func(ctx context.Context) error {
			r, err := api.RotateTokenKey(ctx)
			if err != nil {
				return err
			}
			cli.Log.Infof("Token signing key rotated: new key %s; tokens signed with the old key stay valid until %s", r.KeyID, r.PreviousValidUntil.UTC().Format(time.RFC3339))
			return nil
		}
	}
	if identity != nil {
		in.Identity, in.IdentityThrough = identity, existing.ID
		in.SetIdentity = func(ctx context.Context) error { return api.SetIdentity(ctx, *identity) }
		if !o.apply.dryRun {
			// What to put back if a later step fails (secrets masked: a
			// PUT of the mask keeps the stored ones).
			saved, err := api.Identity(ctx)
			if err != nil {
				return fmt.Errorf("reading the identity settings through replica %s: %w", existing.ID, err)
			}
			in.UndoIdentity = func(ctx context.Context) error { return api.RestoreIdentity(ctx, saved) }
		}
	}
	if ch.Storage != nil {
		cli.Log.Info("The `--storage-migrated` flag is set. Not erasing tags.")
	}
	objs := orchestrator.Objects{C: cluster, Warn: warner(cli)}
	if ch.MetricsToken != "" {
		if in.MetricsTokenSecret, err = objs.NextMetricsTokenSecret(ctx); err != nil {
			return err
		}
	}
	plan := objs.PlanReconfigure(in)
	if o.apply.dryRun {
		return plan.DryRun(cli.Out)
	}
	if err := plan.Apply(ctx, cli.Log, o.apply.keepOnFailure); err != nil {
		if o.apply.keepOnFailure {
			return fmt.Errorf("%w; the replicas before the failing one run the new settings, the others the old ones: fix the cause and run reconfigure again", err)
		}
		return fmt.Errorf("%w; every replica runs its old settings again: fix the cause and run reconfigure again", err)
	}
	cli.Log.Info("Reconfiguration is complete")
	return nil
}

// change collects the settings given on the command line. Settings this
// version cannot apply are refused rather than silently ignored.
func (o *reconfigureOptions) change(cmd *cobra.Command, existing orchestrator.Replica) (orchestrator.Change, error) {
	var ch orchestrator.Change
	str := func(flag string, v string) *string {
		if changed(cmd, flag) {
			return &v
		}
		return nil
	}
	ch.ExternalURL = str("dtr-external-url", o.replica.externalURL)
	ch.HTTPProxy = str("http-proxy", o.replica.httpProxy)
	ch.HTTPSProxy = str("https-proxy", o.replica.httpsProxy)
	ch.NoProxy = str("no-proxy", o.replica.noProxy)
	ch.LogLevel = str("log-level", cmd.Flags().Lookup("log-level").Value.String())
	if changed(cmd, "replica-http-port") {
		ch.HTTPPort = &o.replica.httpPort
	}
	if changed(cmd, "replica-https-port") {
		ch.HTTPSPort = &o.replica.httpsPort
	}
	if changed(cmd, "dtr-cert") {
		ch.TLSCert, ch.TLSKey = o.replica.dtrCert, o.replica.dtrKey
	}
	if changed(cmd, "metrics-port") {
		ch.MetricsPort = &o.replica.metricsPort
	}
	ch.OTLPEndpoint = str("otlp-endpoint", o.replica.otlpEndpoint)
	ch.MetricsToken, ch.MetricsTokenOff = o.metricsToken, o.metricsTokenGiven && o.metricsToken == ""
	for _, flag := range []string{"enable-client-cert-auth", "client-cert-auth-ca", "custom-ca-cert-bundle", "log-protocol", "log-host", "enable-pprof", "dtr-ca"} {
		if changed(cmd, flag) {
			return ch, usageErrorf("--%s cannot be changed by reconfigure in this version of dtr; nothing was changed", flag)
		}
	}
	if changed(cmd, "dtr-storage-volume") || changed(cmd, "nfs-storage-url") || changed(cmd, "async-nfs") || changed(cmd, "nfs-options") {
		was, err := existing.Config()
		if err != nil {
			return ch, fmt.Errorf("reading the settings of replica %s: %w", existing.ID, err)
		}
		st := orchestrator.Storage{Volume: o.replica.storageVolume, NFSURL: o.replica.nfsURL, NFSOptions: o.replica.nfsOptions, AsyncNFS: o.replica.asyncNFS}
		if !changed(cmd, "dtr-storage-volume") && !changed(cmd, "nfs-storage-url") {
			st.Volume, st.NFSURL = was.Storage.Volume, was.Storage.NFSURL
		}
		if st != was.Storage {
			if !o.storageMigrated {
				return ch, usageErrorf("changing the image storage: the new storage must already hold the images, or every tag would point at missing blobs. dtr never deletes tags: copy the images into the new storage, then run reconfigure again with --storage-migrated")
			}
			ch.Storage = &st
		}
	}
	return ch, nil
}

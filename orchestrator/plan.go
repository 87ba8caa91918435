package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"strings"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"github.com/sirupsen/logrus"
)

// State is what the steps of one run share: what they find or create and
// later steps use. It is the only thing steps share; no step changes the
// plan's input, so a plan prints (--dry-run) and applies from the same data.
type State struct {
	Secrets map[string]string // secret name → ID
	Configs map[string]string // config name → ID
	// Created names the secrets and configs this run created, so that an
	// undo removes only those: an existing object may be in use.
	Created map[string]bool
	// CAPEM is the cluster CA certificate, once known.
	CAPEM []byte
	// InitialCluster is a joining replica's, from the add-replica answer.
	InitialCluster string
}

func (s State) clone() State {
	s.Secrets, s.Configs, s.Created = maps.Clone(s.Secrets), maps.Clone(s.Configs), maps.Clone(s.Created)
	return s
}

func (s *State) setSecret(name, id string, created bool) {
	if s.Secrets == nil {
		s.Secrets = map[string]string{}
	}
	s.Secrets[name] = id
	s.markCreated("secret "+name, created)
}

func (s *State) setConfig(name, id string, created bool) {
	if s.Configs == nil {
		s.Configs = map[string]string{}
	}
	s.Configs[name] = id
	s.markCreated("config "+name, created)
}

func (s *State) markCreated(key string, created bool) {
	if !created {
		return
	}
	if s.Created == nil {
		s.Created = map[string]bool{}
	}
	s.Created[key] = true
}

// IDs are the IDs of the objects c's service references, as far as s knows
// them ("" for the others).
func (s State) IDs(c ReplicaConfig) ObjectIDs {
	ids := ObjectIDs{CAKey: s.Secrets[CAKeySecret], CACert: s.Configs[CACertConfig]}
	if c.AdminUsername != "" {
		ids.Admin = s.Secrets[AdminSecret(c.ID)]
	}
	if c.TLSKeySecret != "" {
		ids.TLSKey, ids.TLSCert = s.Secrets[c.TLSKeySecret], s.Configs[c.TLSCertConfig]
	}
	if c.MetricsTokenSecret != "" {
		ids.MetricsToken = s.Secrets[c.MetricsTokenSecret]
	}
	return ids
}

// Step is one change to the cluster: what it does, how to do it, and how to
// take it back if a later step fails.
type Step struct {
	Description string
	Apply       func(ctx context.Context, st *State) error
	Undo        func(ctx context.Context, st *State) error // nil: nothing to undo
	// Service, when set, is the spec of the service the step creates or
	// updates, from the state the step starts with. Apply uses it, and
	// --dry-run prints it.
	Service func(st State) (swarm.ServiceSpec, error)
}

// Plan is an ordered list of steps.
type Plan struct {
	Title string
	Steps []Step
	// Start is what planning found (the IDs of objects that exist); every
	// Apply starts from a copy of it.
	Start State
	// Forward: what the steps do cannot be taken back (remove, destroy,
	// repair). A failed step stops the plan, and running the command again
	// finishes the work.
	Forward bool
}

// Add appends a step.
func (p *Plan) Add(s Step) { p.Steps = append(p.Steps, s) }

// Print writes the plan, one numbered line per step.
func (p *Plan) Print(w io.Writer) {
	fmt.Fprintf(w, "%s (%d steps):\n", p.Title, len(p.Steps))
	for i, s := range p.Steps {
		fmt.Fprintf(w, "  %d. %s\n", i+1, s.Description)
	}
}

// DryRun is what --dry-run prints: the plan as Print writes it, and under
// each step that creates or updates a service, that service's spec as the
// step would send it, in JSON. What earlier steps would learn while they run
// (the IDs of the objects they create, a joiner's initial cluster) is not
// known yet, and empty there.
func (p *Plan) DryRun(w io.Writer) error {
	fmt.Fprintf(w, "%s (%d steps):\n", p.Title, len(p.Steps))
	for i, s := range p.Steps {
		fmt.Fprintf(w, "  %d. %s\n", i+1, s.Description)
		if s.Service == nil {
			continue
		}
		spec, err := s.Service(p.Start.clone())
		if err != nil {
			return fmt.Errorf("step %d (%s): %w", i+1, s.Description, err)
		}
		b, err := json.MarshalIndent(spec, "     ", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "     service spec (IDs of objects earlier steps create are empty here):\n     %s\n", strings.TrimSpace(string(b)))
	}
	return nil
}

// Apply runs the steps in order, logging each. When one fails, the steps
// already done are undone in reverse order unless keep is set (or the plan
// goes only forward), and the error says what failed and what was left.
func (p *Plan) Apply(ctx context.Context, log logrus.FieldLogger, keep bool) error {
	st := p.Start.clone()
	for i, s := range p.Steps {
		log.Infof("(%d/%d) %s", i+1, len(p.Steps), s.Description)
		start := time.Now()
		err := s.Apply(ctx, &st)
		if err == nil {
			log.Debugf("(%d/%d) done in %v", i+1, len(p.Steps), time.Since(start).Round(time.Millisecond))
			continue
		}
		switch {
		case p.Forward && i == 0:
			return fmt.Errorf("step 1 (%s) failed: %w", s.Description, err)
		case p.Forward && i == 1:
			return fmt.Errorf("step 2 (%s) failed: %w; step 1 was done", s.Description, err)
		case p.Forward:
			return fmt.Errorf("step %d (%s) failed: %w; steps 1 to %d were done", i+1, s.Description, err, i)
		case keep:
			return fmt.Errorf("step %d (%s) failed: %w; --keep-on-failure left steps 1 to %d in place for inspection", i+1, s.Description, err, i)
		}
		// Undo with a fresh context: an interrupt must not leave half an install.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		defer cancel()
		var undoErrs []error
		for j := i; j >= 0; j-- {
			if p.Steps[j].Undo == nil {
				continue
			}
			log.Infof("Undoing: %s", p.Steps[j].Description)
			if uerr := p.Steps[j].Undo(uctx, &st); uerr != nil {
				undoErrs = append(undoErrs, fmt.Errorf("undoing %q: %w", p.Steps[j].Description, uerr))
			}
		}
		if len(undoErrs) > 0 {
			return fmt.Errorf("step %d (%s) failed: %w; undoing it also failed: %v — run destroy for this replica to clean up", i+1, s.Description, err, undoErrs)
		}
		return fmt.Errorf("step %d (%s) failed: %w; everything this run created was removed", i+1, s.Description, err)
	}
	return nil
}

// createService is the Apply of a step whose Service is the spec it creates.
func (o Objects) createService(spec func(State) (swarm.ServiceSpec, error)) func(context.Context, *State) error {
	return func(ctx context.Context, st *State) error {
		s, err := spec(*st)
		if err != nil {
			return err
		}
		_, err = o.CreateService(ctx, s)
		return err
	}
}

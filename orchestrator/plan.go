package orchestrator

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/sirupsen/logrus"
)

// Step is one change to the cluster: what it does, how to do it, and how to
// take it back if a later step fails.
type Step struct {
	Description string
	Apply       func(ctx context.Context) error
	Undo        func(ctx context.Context) error // nil: nothing to undo
}

// Plan is an ordered list of steps.
type Plan struct {
	Title string
	Steps []Step
}

// Add appends a step.
func (p *Plan) Add(s Step) { p.Steps = append(p.Steps, s) }

// Print writes the plan, one numbered line per step (--dry-run).
func (p *Plan) Print(w io.Writer) {
	fmt.Fprintf(w, "%s (%d steps):\n", p.Title, len(p.Steps))
	for i, s := range p.Steps {
		fmt.Fprintf(w, "  %d. %s\n", i+1, s.Description)
	}
}

// Apply runs the steps in order, logging each. When one fails, the steps
// already done are undone in reverse order unless keep is set, and the
// error says what failed and what was left.
func (p *Plan) Apply(ctx context.Context, log logrus.FieldLogger, keep bool) error {
	for i, s := range p.Steps {
		log.Infof("(%d/%d) %s", i+1, len(p.Steps), s.Description)
		start := time.Now()
		err := s.Apply(ctx)
		if err == nil {
			log.Debugf("(%d/%d) done in %v", i+1, len(p.Steps), time.Since(start).Round(time.Millisecond))
			continue
		}
		if keep {
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
			if uerr := p.Steps[j].Undo(uctx); uerr != nil {
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

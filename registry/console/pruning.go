package console

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/dtr-registry/dtr/registry/meta"
)

// Pruning policies on a repository page: list, add (with a dry run first
// if the operator asks), enable, disable and delete, all through the admin
// API's /repositories/{ns}/{repo}/pruningPolicies, which decides who may.

// policyRules is how many rule rows the add form offers; a policy needs
// at least one, and every rule must hold for a tag to be pruned.
const policyRules = 3

// ruleRow is one row of the add form, as sent.
type ruleRow struct {
	Field, Operator, Values string
}

type policyForm struct {
	Rules    []ruleRow
	Enabled  bool
	Evaluate bool // prune the existing tags now (?initialEvaluation=true)
}

// pruneCandidate is a tag the dry run would prune.
type pruneCandidate struct {
	Name   string `json:"name"`
	Digest string `json:"digest"`
}

func defaultPolicyForm() policyForm {
	f := policyForm{Enabled: true, Rules: make([]ruleRow, policyRules)}
	f.Rules[0] = ruleRow{Field: "tag", Operator: "sw"}
	return f
}

// pruningFields and pruningOperators are the choices of the form (DTR's
// names; the API says which operator goes with which field).
var (
	pruningFields    = []string{"tag", "updated_at", "updated_at_duration"}
	pruningOperators = []struct{ Op, Text string }{
		{"eq", "equals"}, {"sw", "starts with"}, {"ew", "ends with"}, {"c", "contains"},
		{"oo", "is one of"}, {"noo", "is not one of"}, {"matches", "matches (regular expression)"},
		{"bf", "before"}, {"af", "after"},
	}
)

// readPolicyForm reads the add form. Values are separated by commas or
// spaces (tag names, durations and times have neither), except for
// "matches", whose value is one regular expression.
func readPolicyForm(f url.Values) (policyForm, []meta.PruningRule) {
	pf := policyForm{Enabled: f.Get("enabled") == "on", Evaluate: f.Get("evaluate") == "on"}
	var rules []meta.PruningRule
	for i := range policyRules {
		n := strconv.Itoa(i)
		row := ruleRow{Field: f.Get("field" + n), Operator: f.Get("operator" + n), Values: strings.TrimSpace(f.Get("values" + n))}
		pf.Rules = append(pf.Rules, row)
		if row.Values == "" {
			continue
		}
		vals := []string{row.Values}
		if row.Operator != "matches" {
			vals = strings.FieldsFunc(row.Values, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
		}
		rules = append(rules, meta.PruningRule{Field: row.Field, Operator: row.Operator, Values: vals})
	}
	return pf, rules
}

// policyID is the grammar of a policy's ID in a form: it becomes one path
// segment of the API call.
func validPolicyID(id string) bool {
	return id != "" && len(id) <= 128 && !strings.ContainsAny(id, "/?#%") && id != "." && id != ".."
}

func (c *Console) pruningAction(w http.ResponseWriter, r *http.Request, s *session, act, ns, name, back string) error {
	base := apiRepoPath(ns, name) + "/pruningPolicies"
	f := r.PostForm
	var err error
	flash := ""
	switch act {
	case "add-policy", "test-policy":
		pf, rules := readPolicyForm(f)
		if len(rules) == 0 {
			return c.repositoryProblem(w, r, s, http.StatusBadRequest, "Give at least one rule with a value: a policy without rules would prune every tag.", &pf, nil)
		}
		if act == "test-policy" {
			var sel []pruneCandidate
			if err := s.api("POST", base+"/test", map[string]any{"rules": rules}, &sel); err != nil {
				ue := asUserError(err)
				return c.repositoryProblem(w, r, s, ue.Status, ue.Message, &pf, nil)
			}
			if sel == nil {
				sel = []pruneCandidate{}
			}
			return c.repositoryProblem(w, r, s, http.StatusOK, "", &pf, &sel)
		}
		path := base
		if pf.Evaluate {
			path += "?initialEvaluation=true"
		}
		if err := s.api("POST", path, map[string]any{"enabled": pf.Enabled, "rules": rules}, nil); err != nil {
			ue := asUserError(err)
			return c.repositoryProblem(w, r, s, ue.Status, ue.Message, &pf, nil)
		}
		return done(w, r, back, "policy-added")
	case "enable-policy", "disable-policy":
		id := f.Get("policy")
		if !validPolicyID(id) {
			return errorPage(http.StatusBadRequest, "Policy "+strconv.Quote(id)+" is not a pruning policy's ID; reload the page and use its buttons.")
		}
		err = s.api("PUT", base+"/"+url.PathEscape(id), map[string]any{"enabled": act == "enable-policy"}, nil)
		flash = "policy-saved"
	case "delete-policy":
		id := f.Get("policy")
		if !validPolicyID(id) {
			return errorPage(http.StatusBadRequest, "Policy "+strconv.Quote(id)+" is not a pruning policy's ID; reload the page and use its buttons.")
		}
		if f.Get("confirmed") != "yes" {
			return c.confirm(w, r, s, confirmPage{Action: back, Button: "Delete pruning policy", Back: back,
				Warning: fmt.Sprintf("Delete pruning policy %s of %s/%s? Tags it would have pruned stay.", id, ns, name)})
		}
		err = s.api("DELETE", base+"/"+url.PathEscape(id), nil, nil)
		flash = "policy-deleted"
	}
	if err != nil {
		ue := asUserError(err)
		return c.repositoryProblem(w, r, s, ue.Status, ue.Message, nil, nil)
	}
	return done(w, r, back, flash)
}

// repositoryProblem shows the repository page again after a form, with
// the refusal in the API's words and the add-a-policy form as sent. When
// the caller may not even read the page, the refusal is the page.
func (c *Console) repositoryProblem(w http.ResponseWriter, r *http.Request, s *session, status int, problem string, pf *policyForm, sel *[]pruneCandidate) error {
	d, err := c.loadRepository(r, s)
	if err != nil {
		if problem != "" {
			return errorPage(status, problem)
		}
		return err
	}
	if !d.IsAdmin && problem != "" {
		return errorPage(status, problem)
	}
	if pf != nil {
		d.Policy = *pf
	}
	d.Prunable = sel
	c.showRepository(w, r, s, status, problem, d)
	return nil
}

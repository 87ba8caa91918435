package commands

import (
	"strings"

	"github.com/dtr-registry/dtr/orchestrator"
	"github.com/dtr-registry/dtr/ucp"
)

const usageIdentitySource = "Where users sign in from: local (dtr's own accounts) or ucp (UCP/MKE's users, organizations and teams, as DTR did; needs --ucp-url https://<ucp>, and --ucp-ca unless a CA the system trusts signed UCP's certificate). " +
	"With ucp, the --ucp-username account reads UCP's directory and its --ucp-password is kept, write-only, in dtr's metadata: give a UCP administrator account dedicated to dtr. LDAP/AD is set in the console or the admin API"

func addIdentitySourceFlag(f flags, p *string, def string) {
	f.String(p, "identity-source", def, usageIdentitySource, "DTR_IDENTITY_SOURCE")
}

// identitySource turns --identity-source into what the installer sets,
// refusing what cannot work before anything changes: UCP identity reads
// users from UCP/MKE itself, over https with a verified certificate, since
// the replicas send users' passwords to it.
func identitySource(kind string, o *ucpOptions) (*orchestrator.IdentitySource, error) {
	switch strings.ToLower(strings.TrimSpace(kind)) {
	case orchestrator.IdentityLocal:
		return &orchestrator.IdentitySource{Kind: orchestrator.IdentityLocal}, nil
	case orchestrator.IdentityUCP:
	case "ldap":
		return nil, usageErrorf("--identity-source ldap is not set at install: install with --identity-source local, then set LDAP/AD in the console (System, Identity) or with PUT /api/v0/meta/settings/identity")
	default:
		return nil, usageErrorf("--identity-source %q: give local (dtr's own accounts) or ucp (UCP/MKE's users)", kind)
	}
	ep, err := ucp.ParseURL(o.url)
	if err != nil {
		return nil, err
	}
	if ep.Scheme != ucp.SchemeUCP {
		return nil, usageErrorf("--identity-source ucp needs UCP/MKE itself: --ucp-url %s is a Docker engine, which has no users; give --ucp-url https://<ucp-host>, or use --identity-source local", ep)
	}
	if o.insecure {
		return nil, usageErrorf("--identity-source ucp cannot use --ucp-insecure-tls: the replicas send users' passwords to UCP and must verify its certificate; give UCP's CA instead: --ucp-ca \"$(curl -sk https://%s/ca)\" (check it first)", ep.Address)
	}
	if o.username == "" || o.password == "" {
		return nil, usageErrorf("--identity-source ucp needs --ucp-username and --ucp-password: a UCP administrator account that reads UCP's users, organizations and teams")
	}
	return &orchestrator.IdentitySource{Kind: orchestrator.IdentityUCP, UCPURL: ep.String(), UCPCA: o.ca, Username: o.username, Password: o.password}, nil
}

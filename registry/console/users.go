package console

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/dtr-registry/dtr/registry/meta"
)

func requireAdmin(s *session) error {
	if !s.acc.IsAdmin {
		return errorPage(http.StatusForbidden, "Only a system administrator may open this page.")
	}
	return nil
}

type usersPage struct {
	Users []meta.Account
}

func (c *Console) users(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.showUsers(w, r, s, http.StatusOK, "")
}

func (c *Console) showUsers(w http.ResponseWriter, r *http.Request, s *session, status int, problem string) error {
	if err := requireAdmin(s); err != nil {
		return err
	}
	var list struct {
		Accounts []meta.Account `json:"accounts"`
	}
	if err := s.api("GET", "/accounts", nil, &list); err != nil {
		return err
	}
	var d usersPage
	for _, a := range list.Accounts {
		if !a.IsOrg {
			d.Users = append(d.Users, a)
		}
	}
	c.render(w, r, status, "users", s, page{Title: "Users", Section: "users", Error: problem, Data: d})
	return nil
}

func (c *Console) usersAction(w http.ResponseWriter, r *http.Request, s *session) error {
	if err := requireAdmin(s); err != nil {
		return err
	}
	f := r.PostForm
	user := strings.TrimSpace(f.Get("user"))
	path := "/accounts/" + url.PathEscape(user)
	var err error
	flash := "user-saved"
	switch f.Get("action") {
	case "create":
		err = s.api("POST", "/accounts", map[string]any{"name": user, "password": f.Get("password"), "fullName": f.Get("fullName"), "isAdmin": f.Get("isAdmin") == "on"}, nil)
		flash = "user-created"
	case "deactivate", "activate":
		err = s.api("PATCH", path, map[string]bool{"isActive": f.Get("action") == "activate"}, nil)
	case "make-admin", "revoke-admin":
		err = s.api("PATCH", path, map[string]bool{"isAdmin": f.Get("action") == "make-admin"}, nil)
	case "reset-password":
		err = s.api("POST", path+"/changePassword", map[string]string{"newPassword": f.Get("password")}, nil)
		flash = "password-changed"
	default:
		return errorPage(http.StatusBadRequest, "Unknown action "+strconv.Quote(f.Get("action"))+".")
	}
	if err != nil {
		ue := asUserError(err)
		return c.showUsers(w, r, s, ue.Status, ue.Message)
	}
	return done(w, r, "/users", flash)
}

func (c *Console) accountPage(w http.ResponseWriter, r *http.Request, s *session) error {
	c.render(w, r, http.StatusOK, "account", s, page{Title: "Your account", Section: "account"})
	return nil
}

func (c *Console) accountAction(w http.ResponseWriter, r *http.Request, s *session) error {
	f := r.PostForm
	if f.Get("new") != f.Get("repeat") {
		c.render(w, r, http.StatusBadRequest, "account", s, page{Title: "Your account", Section: "account", Error: "The two new passwords differ; type the same one twice."})
		return nil
	}
	err := s.api("POST", "/accounts/"+url.PathEscape(s.acc.Name)+"/changePassword", map[string]string{"oldPassword": f.Get("old"), "newPassword": f.Get("new")}, nil)
	if err != nil {
		ue := asUserError(err)
		c.render(w, r, ue.Status, "account", s, page{Title: "Your account", Section: "account", Error: ue.Message})
		return nil
	}
	// The new password ended this session with every other token of the
	// account (its epoch changed): sign in again.
	http.Redirect(w, r, "/login?signedout=1", http.StatusSeeOther)
	return nil
}

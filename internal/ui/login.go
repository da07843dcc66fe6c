package ui

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/web"
)

// LoginPathPrefix starts every login URL's path; the code follows in the
// fragment.
const LoginPathPrefix = "/ui/login#code="

// LoginPath mints a login code for account and returns the path (with the
// code in its fragment) that logs a browser in, and when the code expires.
// gantry dev calls it in-process; gantry dashboard through CodesPath.
func (u *UI) LoginPath(ctx context.Context, account, subject string) (string, time.Time, error) {
	code, exp, err := u.sessions.issueCode(ctx, account, subject)
	if err != nil {
		return "", time.Time{}, err
	}
	return LoginPathPrefix + code, exp, nil
}

// CodeAnswer is the body of POST CodesPath.
type CodeAnswer struct {
	// LoginPath is the path, code in its fragment, to open on the server
	// the request went to.
	LoginPath string    `json:"loginPath"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// mintCode serves POST CodesPath. Only an admin token may mint one: an API
// key, even a reading one, could otherwise turn itself into a browser
// session of the whole account.
func (u *UI) mintCode(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	if p.Kind != auth.KindAdminToken {
		return problem.Errorf(http.StatusForbidden, "a dashboard login code needs an admin token (<data-dir>/admin-token), not an API key")
	}
	path, exp, err := u.LoginPath(r.Context(), p.Account, "dashboard:"+p.Subject)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	return web.JSON(w, http.StatusCreated, CodeAnswer{LoginPath: path, ExpiresAt: exp.UTC()})
}

// index serves the dashboard to a session, and the page that says how to
// log in to anyone else.
func (u *UI) index(w http.ResponseWriter, r *http.Request) {
	if _, err := u.Authenticate(r); err != nil {
		if !errors.Is(err, auth.ErrNoCredential) && !errors.Is(err, auth.ErrBadCredential) {
			u.log.Warn("ui: session check failed", "err", err)
		}
		page(w, http.StatusUnauthorized, "signin.html")
		return
	}
	page(w, http.StatusOK, "index.html")
}

// loginPage serves the page whose script reads the code from the URL's
// fragment and posts it: a GET never spends a code, so a link previewer or
// prefetcher that opens the URL cannot use it up.
func (u *UI) loginPage(w http.ResponseWriter, r *http.Request) {
	page(w, http.StatusOK, "login.html")
}

// login exchanges the posted code for a session cookie. A browser posts it
// from the login page, so failures answer the sign-in page, not a problem.
func (u *UI) login(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		page(w, http.StatusForbidden, "signin.html")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := r.ParseForm(); err != nil {
		page(w, http.StatusBadRequest, "signin.html")
		return
	}
	v, rec, err := u.sessions.redeem(r.Context(), r.PostForm.Get("code"))
	if err != nil {
		if !errors.Is(err, ErrCodeUsed) {
			u.log.Warn("ui: login failed", "err", err)
		}
		page(w, http.StatusUnauthorized, "signin.html")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: v, Path: "/ui", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil, Expires: rec.ExpiresAt, MaxAge: int(time.Until(rec.ExpiresAt).Seconds())})
	u.log.Info("ui: dashboard session started", "account", rec.Account, "subject", rec.Subject)
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}

// logout ends the session and clears its cookie.
func (u *UI) logout(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		page(w, http.StatusForbidden, "signin.html")
		return
	}
	if c, err := r.Cookie(CookieName); err == nil {
		if err := u.sessions.end(r.Context(), c.Value); err != nil {
			u.log.Warn("ui: logout", "err", err)
		}
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/ui", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil, MaxAge: -1})
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}

// sameOrigin refuses form posts another site's page sent (login CSRF: being
// logged in to someone else's account). Browsers send Origin on every POST;
// a client without one (curl) is let through.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	ou, err := url.Parse(o)
	return err == nil && ou.Host == r.Host
}

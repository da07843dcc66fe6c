package controlplane

import (
	"context"
	"errors"
	"net/http"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/events"
	"github.com/gantry-dev/gantry/internal/ui"
)

// startUI opens the dashboard's session bucket and serves it at /ui, with
// POST /v1/gantry/dashboard/codes for admin tokens (package ui).
func (s *Server) startUI(ctx context.Context, mux *http.ServeMux, authn auth.Authenticator) error {
	cfg := ui.Config{JS: s.js, Store: s.st, QueueDepth: s.queueDepth, Events: events.NewLog(s.js), Auth: authn, Logger: s.log}
	if s.metrics != nil {
		cfg.Calls = s.metrics.Calls()
	}
	u, err := ui.New(cfg)
	if err != nil {
		return err
	}
	if err := u.Start(ctx); err != nil {
		return err
	}
	u.Register(mux)
	s.ui = u
	return nil
}

// DashboardLoginURL mints a one-time login code for the server's account
// and returns the URL that logs a browser in to the dashboard with it
// (gantry dev prints it; never log it: it is a credential until used).
func (s *Server) DashboardLoginURL(ctx context.Context) (string, error) {
	if s.ui == nil {
		return "", errors.New("controlplane: the dashboard is not running")
	}
	path, _, err := s.ui.LoginPath(ctx, s.cfg.Account, "dashboard:gantry-dev")
	if err != nil {
		return "", err
	}
	return s.URL() + path, nil
}

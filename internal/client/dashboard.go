package client

import (
	"context"
	"net/http"
	"time"
)

// DashboardCode is a one-time dashboard login: the path (code in its
// fragment) to open on the server, and when the code expires.
type DashboardCode struct {
	LoginPath string    `json:"loginPath"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// DashboardLogin mints a one-time dashboard login code (admin token only)
// and returns the URL that logs a browser in with it.
func (c *Client) DashboardLogin(ctx context.Context) (string, DashboardCode, error) {
	var out DashboardCode
	if err := c.doJSON(ctx, http.MethodPost, "/v1/gantry/dashboard/codes", nil, &out); err != nil {
		return "", out, err
	}
	return c.BaseURL() + out.LoginPath, out, nil
}

package client

import (
	"context"
	"io"
	"net/http"
)

// Backup asks the server for a backup file (GET /v1/gantry/backup, behind
// the installation gate). The caller reads the tar from the returned body
// and closes it; size is its length, or -1 when the server did not say.
func (c *Client) Backup(ctx context.Context) (body io.ReadCloser, size int64, err error) {
	req, err := c.newRequest(ctx, http.MethodGet, "/v1/gantry/backup", nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		data, _ := readBody(resp.Body)
		return nil, 0, newAPIError(resp, data)
	}
	return resp.Body, resp.ContentLength, nil
}

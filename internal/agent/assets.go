package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/stream"
	"github.com/gantry-dev/gantry/internal/validate"
)

// assetHeadWait bounds the wait for a gateway to take a fetch and start the
// content; the content itself is bounded by the stream's keepalives.
const assetHeadWait = 30 * time.Second

// errAssetsCanceled is a fetch stopped because the call was canceled.
var errAssetsCanceled = errors.New("agent: the call was canceled while its assets were fetched")

// assetError is a fetch that failed with a status for the caller.
type assetError struct {
	status int
	detail string
}

func (e *assetError) Error() string { return e.detail }

// prepareAssets puts the call's assets (bus.HeaderAssets) in the request's
// asset directory, NVCF-ASSET-DIR, one file per asset id, before the call
// reaches the function, and returns what removes them once it is answered.
// When they cannot all be fetched the call is answered here, with why, and
// ok is false. A call without assets costs a header lookup.
func (w *worker) prepareAssets(ctx context.Context, c call) (cleanup func(), ok bool) {
	header := c.hdr.Get(bus.HeaderAssets)
	if header == "" {
		return func() {}, true
	}
	reqID := c.hdr.Get(bus.HeaderReqID)
	fail := func(err error) (func(), bool) {
		var ae *assetError
		switch {
		case errors.Is(err, errAssetsCanceled):
			w.done(c) // the gateway canceled: nobody waits for an answer
		case errors.As(err, &ae):
			w.finish(c, errorAnswer(ae.status, ae.detail))
		default:
			w.log.Warn("agent: fetching a call's assets failed", "requestId", reqID, "err", err)
			w.finish(c, errorAnswer(http.StatusBadGateway, "the call's assets could not be fetched: "+err.Error()))
		}
		return nil, false
	}
	grants, err := bus.ParseAssetGrants(header)
	if err != nil || validate.ID("request id", reqID) != nil {
		return fail(&assetError{http.StatusBadRequest, "the call's asset grants are malformed"})
	}
	if st, err := os.Stat(w.assetDir); w.assetDir == "" || err != nil || !st.IsDir() {
		return fail(&assetError{http.StatusNotImplemented, fmt.Sprintf("this instance cannot receive assets: its asset directory %q is not on the agent's file system "+
			"(the Kubernetes runtime does not deliver assets yet); call it without %s", w.assetDir, validate.AssetReferencesHeader)})
	}
	dir := filepath.Join(w.assetDir, reqID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail(fmt.Errorf("create the request's asset directory: %w", err))
	}
	cleanup = func() {
		if err := os.RemoveAll(dir); err != nil {
			w.log.Warn("agent: could not remove a call's assets", "requestId", reqID, "err", err)
		}
	}
	account := c.hdr.Get(bus.HeaderAccount)
	for _, g := range grants {
		if err := w.fetchAsset(ctx, account, g, filepath.Join(dir, g.ID)); err != nil {
			cleanup()
			return fail(err)
		}
	}
	return cleanup, true
}

// fetchAsset streams one asset from a gateway into path: the fetch is
// offered on bus.AssetFetchSubject, the gateway that takes it accepts with
// its endpoint's address, sends a head with the asset's status and length,
// then the content, at the pace this side writes it to disk.
func (w *worker) fetchAsset(ctx context.Context, account string, g bus.AssetGrant, path string) error {
	ep, err := w.mux.Open(w.callID("asset-" + g.ID))
	if err != nil {
		return err
	}
	defer ep.Close()
	stop := context.AfterFunc(ctx, ep.Cancel)
	defer stop()
	hdr := nats.Header{}
	hdr.Set(bus.HeaderAccount, account)
	hdr.Set(bus.HeaderAsset, g.String())
	if err := ep.Offer(bus.AssetFetchSubject, hdr); err != nil {
		return err
	}
	hctx, cancel := context.WithTimeout(ctx, assetHeadWait)
	defer cancel()
	var head stream.Frame
	for head.Kind != stream.KindHead && head.Kind != stream.KindHeadEnd {
		fr, err := ep.Next(hctx)
		switch {
		case ctx.Err() != nil:
			return errAssetsCanceled
		case errors.Is(err, stream.ErrNoResponders):
			return &assetError{http.StatusServiceUnavailable, "no gateway is serving assets right now; retry the call"}
		case err != nil:
			return fmt.Errorf("asset %s: %w", g.ID, err)
		case fr.Kind == stream.KindAccept:
			ep.SetPeer(string(fr.Data))
		}
		head = fr
	}
	if st, _ := strconv.Atoi(head.Header.Get(bus.HeaderStatus)); st != http.StatusOK {
		if st < 400 || st > 599 {
			st = http.StatusBadGateway
		}
		return &assetError{st, head.Header.Get(bus.HeaderError)}
	}
	size, _ := strconv.ParseInt(head.Header.Get(bus.HeaderLength), 10, 64)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("asset %s: %w", g.ID, err)
	}
	pb := w.mux.Buffer()
	defer w.mux.Recycle(pb)
	// The buffer is the stream's chunk size (os.File's ReadFrom would copy
	// through one of its own).
	n, err := io.CopyBuffer(struct{ io.Writer }{f}, ep.Body(), *pb)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	switch {
	case ctx.Err() != nil:
		return errAssetsCanceled
	case err != nil:
		return fmt.Errorf("asset %s broke off after %d bytes: %w", g.ID, n, err)
	case n != size:
		return fmt.Errorf("asset %s: %d bytes arrived, its size is %d", g.ID, n, size)
	}
	return nil
}

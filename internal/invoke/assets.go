package invoke

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/stream"
	"github.com/gantry-dev/gantry/internal/validate"
)

// AssetFetchPurpose is what the grants of a call's assets sign, so that no
// other signature Gantry makes (an upload URL's) fetches an asset.
const AssetFetchPurpose = "asset-fetch"

// AssetStore is what the gateway reads of assets: the record of each one a
// call names, and of each one a worker fetches.
type AssetStore interface {
	GetAsset(ctx context.Context, account, id string) (model.Asset, error)
}

var _ AssetStore = (*store.Store)(nil)

// AssetsConfig wires the gateway's side of assets.
type AssetsConfig struct {
	Conn *nats.Conn
	// JS and Objects hold the content (bus.OpenObject).
	JS      jetstream.JetStream
	Store   AssetStore
	Objects jetstream.ObjectStore
	Signer  *auth.URLSigner
	// Stream tunes the streams the content goes to workers on.
	Stream stream.Options
	Logger *slog.Logger
	Now    func() time.Time
}

// Assets is the gateway's side of input assets. Before a call is offered or
// queued it checks the assets the call names in NVCF-INPUT-ASSET-REFERENCES
// (each the caller's own, not expired, uploaded) and gives the call a
// signed grant for each; the worker that runs the call presents them on
// bus.AssetFetchSubject and any gateway replica streams the content from
// the object store to it (package stream: credit flow control, so memory
// stays flat whatever the size). Workers never read the object store
// themselves: it holds every account's assets.
type Assets struct {
	cfg AssetsConfig
	log *slog.Logger

	mux *stream.Mux
	sub *nats.Subscription
	ctx context.Context
	end context.CancelFunc
	wg  sync.WaitGroup
}

// NewAssets builds the gateway's asset side; Start serves fetches.
func NewAssets(cfg AssetsConfig) *Assets {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Assets{cfg: cfg, log: log}
}

// Start subscribes to workers' fetches, in the gateways' queue group.
func (a *Assets) Start() error {
	prefix := bus.ReplyPrefix("assets" + nuid.Next())
	mux, err := stream.NewMux(a.cfg.Conn, prefix[:len(prefix)-1], a.cfg.Stream)
	if err != nil {
		return fmt.Errorf("invoke: %w", err)
	}
	a.ctx, a.end = context.WithCancel(context.Background())
	sub, err := a.cfg.Conn.QueueSubscribe(bus.AssetFetchSubject, bus.AssetFetchQueue, func(msg *nats.Msg) {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.serve(msg)
		}()
	})
	if err != nil {
		mux.Close()
		return fmt.Errorf("invoke: subscribe to asset fetches: %w", err)
	}
	a.mux, a.sub = mux, sub
	return nil
}

// Close stops serving fetches; those under way end (their workers see the
// stream canceled and fail their calls).
func (a *Assets) Close() {
	if a.sub != nil {
		_ = a.sub.Unsubscribe()
	}
	if a.end != nil {
		a.end()
	}
	if a.mux != nil {
		_ = a.mux.Close()
	}
	a.wg.Wait()
}

// callAssets is what a call carries of its assets.
type callAssets struct {
	ids    []string
	grants []string
}

// references checks the assets a call names and grants them, or says which
// one it cannot use. A call that names none costs one header lookup.
func (a *Assets) references(ctx context.Context, h http.Header, account string) (callAssets, error) {
	vs := h.Values(validate.AssetReferencesHeader)
	if len(vs) == 0 {
		return callAssets{}, nil
	}
	ids, err := validate.AssetReferences(strings.Join(vs, ","))
	if err != nil || len(ids) == 0 {
		return callAssets{}, err
	}
	if a == nil {
		return callAssets{}, problem.BadRequest("this gateway serves no assets: call without %s", validate.AssetReferencesHeader)
	}
	ca := callAssets{ids: ids}
	now := a.cfg.Now()
	for _, id := range ids {
		as, err := a.cfg.Store.GetAsset(ctx, account, id)
		switch {
		case errors.Is(err, store.ErrNotFound) || (err == nil && !now.Before(as.ExpiresAt)):
			return callAssets{}, problem.NotFound("asset %s named in %s not found: it never existed, belongs to another account, was deleted, or expired; nothing was queued",
				id, validate.AssetReferencesHeader)
		case err != nil:
			return callAssets{}, err
		case !as.Uploaded():
			return callAssets{}, problem.BadRequest("asset %s named in %s has no content yet: PUT its content to the uploadUrl POST /v2/nvcf/assets answered, then call again; nothing was queued",
				id, validate.AssetReferencesHeader)
		}
		sig := a.cfg.Signer.Sign(AssetFetchPurpose, as.ExpiresAt, account, id)
		ca.grants = append(ca.grants, bus.AssetGrant{ID: id, Expires: as.ExpiresAt, Signature: sig}.String())
	}
	return ca, nil
}

// set puts a call's assets on its head: the grants for the worker, and for
// the function the ids, as NVCF passes them (NVCF-FUNCTION-ASSET-IDS, and
// the caller's NVCF-INPUT-ASSET-REFERENCES, which every NVCF-* header the
// caller sent is stripped of).
func (ca callAssets) set(hdr nats.Header) {
	if len(ca.ids) == 0 {
		return
	}
	ids := strings.Join(ca.ids, ",")
	hdr.Set(bus.HeaderAssets, strings.Join(ca.grants, ","))
	hdr.Set(validate.AssetReferencesHeader, ids)
	hdr.Set("NVCF-FUNCTION-ASSET-IDS", ids)
}

// fetchWait bounds how long a worker's fetch may go without progress on
// the gateway's side before the content starts (a record and object read).
const fetchWait = 30 * time.Second

// serve streams one asset to the worker that asked: accept (our address),
// then a head saying its status, then the content. Anything but a valid
// grant for an existing asset of the grant's account is answered with an
// error head, never with content.
func (a *Assets) serve(msg *nats.Msg) {
	if !bus.IsAgentInbox(msg.Reply) {
		return // only a worker's own endpoint may receive an asset
	}
	ep, err := a.mux.Open(nuid.Next())
	if err != nil {
		return
	}
	defer ep.Close()
	ep.SetPeer(msg.Reply)
	if err := ep.Send(stream.KindAccept, []byte(ep.Addr())); err != nil {
		return
	}
	ctx, cancel := context.WithCancel(a.ctx)
	defer cancel()
	stop := context.AfterFunc(epDone(ep), cancel)
	defer stop()

	refuse := func(status int, format string, args ...any) {
		h := nats.Header{}
		h.Set(bus.HeaderStatus, strconv.Itoa(status))
		h.Set(bus.HeaderError, fmt.Sprintf(format, args...))
		_ = ep.SendHead(h, nil, true)
	}
	account := msg.Header.Get(bus.HeaderAccount)
	g, err := bus.ParseAssetGrant(msg.Header.Get(bus.HeaderAsset))
	if err != nil {
		refuse(http.StatusForbidden, "the fetch carries no valid asset grant")
		return
	}
	switch err := a.cfg.Signer.Verify(g.Signature, AssetFetchPurpose, g.Expires, account, g.ID); {
	case errors.Is(err, auth.ErrURLExpired):
		refuse(http.StatusNotFound, "asset %s expired before the call ran", g.ID)
		return
	case err != nil:
		a.log.Warn("invoke: an asset fetch with a grant Gantry did not sign", "asset", g.ID, "reply", msg.Reply)
		refuse(http.StatusForbidden, "the grant for asset %s is not valid", g.ID)
		return
	}
	rctx, rcancel := context.WithTimeout(ctx, fetchWait)
	as, err := a.cfg.Store.GetAsset(rctx, account, g.ID)
	rcancel()
	switch {
	case errors.Is(err, store.ErrNotFound) || (err == nil && !as.Uploaded()):
		refuse(http.StatusNotFound, "asset %s was deleted or expired before the call ran", g.ID)
		return
	case err != nil:
		a.log.Error("invoke: read an asset for a fetch", "asset", g.ID, "err", err)
		refuse(http.StatusBadGateway, "asset %s could not be read; retry the call", g.ID)
		return
	}
	head := nats.Header{}
	head.Set(bus.HeaderStatus, strconv.Itoa(http.StatusOK))
	head.Set(bus.HeaderLength, strconv.FormatInt(as.Size, 10))
	head.Set("Content-Type", as.ContentType)
	if as.Size == 0 {
		_ = ep.SendHead(head, nil, true)
		return
	}
	obj, err := bus.OpenObject(ctx, a.cfg.JS, a.cfg.Objects, bus.AssetObject(account, g.ID))
	if err != nil {
		if ctx.Err() == nil {
			a.log.Error("invoke: open an asset's content", "asset", g.ID, "err", err)
			refuse(http.StatusBadGateway, "the content of asset %s could not be read; retry the call", g.ID)
		}
		return
	}
	defer obj.Close()
	if err := ep.SendHead(head, nil, false); err != nil {
		return
	}
	pb := a.mux.Buffer()
	defer a.mux.Recycle(pb)
	n, err := io.CopyBuffer(ep, obj, *pb)
	switch {
	case err == nil && n == as.Size:
		_ = ep.CloseWrite()
	case ctx.Err() != nil:
		// The worker went away or canceled; nobody to tell.
	default:
		a.log.Error("invoke: an asset's content broke off", "asset", g.ID, "bytes", n, "size", as.Size, "err", err)
		_ = ep.Fail(fmt.Sprintf("the content of asset %s broke off after %d of %d bytes; retry the call", g.ID, n, as.Size))
	}
}

// epDone is a context that ends with the endpoint.
func epDone(ep *stream.Endpoint) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-ep.Done()
		cancel()
	}()
	return ctx
}

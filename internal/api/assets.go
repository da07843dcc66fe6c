package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/model"
	"github.com/gantry-dev/gantry/internal/problem"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/validate"
	"github.com/gantry-dev/gantry/internal/web"
)

// AssetStore is what the asset routes and their sweep read and write.
// Reads are by account, so one account never reaches another's asset.
type AssetStore interface {
	CreateAsset(ctx context.Context, a *model.Asset) error
	GetAsset(ctx context.Context, account, id string) (model.Asset, error)
	ListAssets(ctx context.Context, account string) ([]model.Asset, error)
	ListAllAssets(ctx context.Context) ([]model.Asset, error)
	UpdateAsset(ctx context.Context, a *model.Asset) error
	DeleteAsset(ctx context.Context, account, id string) error
	DeleteAssetAt(ctx context.Context, a model.Asset) error
}

var _ AssetStore = (*store.Store)(nil)

// Asset defaults, NVCF's: an asset lives 24 hours, its upload URL one hour,
// and its content is at most 5 GB (Gantry reads that as 5 GiB).
const (
	DefaultMaxAssetSize   = 5 << 30
	DefaultAssetTTL       = 24 * time.Hour
	DefaultAssetUploadTTL = time.Hour
)

// AssetUploadPath (+ account/asset id) is where an asset's pre-signed
// upload URL points: a Gantry route that takes the content with no
// credential but the URL's signature, as NVCF's pre-signed S3 URL does.
const AssetUploadPath = "/v1/gantry/assets/"

// AssetUploadPurpose is what upload URL signatures sign, so that no other
// signature Gantry makes opens an upload.
const AssetUploadPurpose = "asset-upload"

// descriptionHeader is the metadata header NVCF's clients send with the
// upload, as its pre-signed S3 URL requires.
const descriptionHeader = "X-Amz-Meta-Nvcf-Asset-Description"

// AssetsConfig wires the asset routes. Zero limits take the defaults.
type AssetsConfig struct {
	Store AssetStore
	// JS and Objects hold the content (bus.PutObject).
	JS      jetstream.JetStream
	Objects jetstream.ObjectStore
	Signer  *auth.URLSigner
	Guard   web.Guard
	// MaxSize is the largest content accepted, in bytes.
	MaxSize int64
	// TTL is how long an asset lives; UploadTTL how long its upload URL
	// works (at most TTL).
	TTL, UploadTTL time.Duration
	Now            func() time.Time
}

// Assets serves NVCF's asset routes and Gantry's upload route, and sweeps
// expired assets (on the leading replica). The content streams from the
// upload into the object store: nothing holds a whole asset in memory.
type Assets struct {
	cfg AssetsConfig
	log *slog.Logger
}

// NewAssets builds the asset routes.
func NewAssets(cfg AssetsConfig) *Assets {
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = DefaultMaxAssetSize
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultAssetTTL
	}
	if cfg.UploadTTL <= 0 {
		cfg.UploadTTL = DefaultAssetUploadTTL
	}
	cfg.UploadTTL = min(cfg.UploadTTL, cfg.TTL)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Guard.Log == nil {
		cfg.Guard.Log = slog.New(slog.DiscardHandler)
	}
	return &Assets{cfg: cfg, log: cfg.Guard.Log}
}

// Register adds the routes to mux: NVCF's under invoke_function, as NVCF
// scopes them, and the upload route, which the URL's signature guards.
func (a *Assets) Register(mux *http.ServeMux) {
	route := func(pattern string, fn web.HandlerFunc) {
		mux.Handle(pattern, a.cfg.Guard.Route(auth.ScopeInvokeFunction, fn))
	}
	route("POST /v2/nvcf/assets", a.create)
	route("GET /v2/nvcf/assets", a.list)
	route("GET /v2/nvcf/assets/{assetId}", a.get)
	route("DELETE /v2/nvcf/assets/{assetId}", a.delete)
	mux.Handle("PUT "+AssetUploadPath+"{ncaId}/{assetId}", web.Unguarded(a.log, a.upload))
}

func assetNotFound(id string) error {
	return problem.NotFound("asset %s not found: it never existed, belongs to another account, was deleted, or expired", id)
}

// own reads an asset of p's account that has not expired.
func (a *Assets) own(ctx context.Context, account, id string) (model.Asset, error) {
	if err := validate.ID("asset id", id); err != nil {
		return model.Asset{}, err
	}
	as, err := a.cfg.Store.GetAsset(ctx, account, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !a.cfg.Now().Before(as.ExpiresAt)) {
		return model.Asset{}, assetNotFound(id)
	}
	return as, err
}

func (a *Assets) create(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	var req model.CreateAssetRequest
	if err := validate.Decode(r.Body, 0, &req); err != nil {
		return err
	}
	if err := validate.Asset(&req); err != nil {
		return err
	}
	now := a.cfg.Now().UTC().Truncate(time.Second)
	as := &model.Asset{ID: uuid.NewString(), NCAID: p.Account, ContentType: req.ContentType, Description: req.Description,
		CreatedAt: now, ExpiresAt: now.Add(a.cfg.TTL)}
	if err := a.cfg.Store.CreateAsset(r.Context(), as); err != nil {
		return err
	}
	expires := now.Add(a.cfg.UploadTTL)
	return web.JSON(w, http.StatusOK, model.CreateAssetResponse{AssetID: as.ID, UploadURL: a.uploadURL(r, *as, expires),
		ContentType: as.ContentType, Description: as.Description, UploadExpiresAt: expires, ExpiresAt: as.ExpiresAt})
}

// uploadURL is the pre-signed URL an asset's content is PUT to. It is
// absolute, as NVCF's is, on the scheme and host the request came to
// (X-Forwarded-Proto says the scheme behind a TLS-terminating proxy).
func (a *Assets) uploadURL(r *http.Request, as model.Asset, expires time.Time) string {
	scheme := "http"
	if r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		scheme = "https"
	}
	q := url.Values{}
	q.Set("expires", strconv.FormatInt(expires.Unix(), 10))
	q.Set("signature", a.cfg.Signer.Sign(AssetUploadPurpose, expires, as.NCAID, as.ID))
	u := url.URL{Scheme: scheme, Host: r.Host, Path: AssetUploadPath + as.NCAID + "/" + as.ID, RawQuery: q.Encode()}
	return u.String()
}

func (a *Assets) list(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	all, err := a.cfg.Store.ListAssets(r.Context(), p.Account)
	if err != nil {
		return err
	}
	out := model.ListAssetsResponse{Assets: []model.Asset{}}
	now := a.cfg.Now()
	for _, as := range all {
		if now.Before(as.ExpiresAt) {
			out.Assets = append(out.Assets, as)
		}
	}
	return web.JSON(w, http.StatusOK, out)
}

func (a *Assets) get(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	as, err := a.own(r.Context(), p.Account, r.PathValue("assetId"))
	if err != nil {
		return err
	}
	return web.JSON(w, http.StatusOK, model.AssetResponse{Asset: as})
}

// delete removes the record first, so the asset is gone for every reader
// at once, then the content; content left behind by a failure here is
// removed by the sweep.
func (a *Assets) delete(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	as, err := a.own(r.Context(), p.Account, r.PathValue("assetId"))
	if err != nil {
		return err
	}
	if err := a.cfg.Store.DeleteAsset(r.Context(), as.NCAID, as.ID); errors.Is(err, store.ErrNotFound) {
		return assetNotFound(as.ID)
	} else if err != nil {
		return err
	}
	a.deleteContent(r.Context(), as.NCAID, as.ID)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *Assets) deleteContent(ctx context.Context, account, id string) {
	err := a.cfg.Objects.Delete(ctx, bus.AssetObject(account, id))
	if err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		a.log.Warn("api: could not delete an asset's content; the sweep will", "asset", id, "err", err)
	}
}

// upload takes an asset's content at its pre-signed URL. The signature is
// checked before anything else, and before a byte is read; the content
// streams into the object store, whose Put discards what it stored when
// the body breaks off or goes over the limit, so a failed upload leaves
// the earlier content (or none).
func (a *Assets) upload(w http.ResponseWriter, r *http.Request) error {
	account, id := r.PathValue("ncaId"), r.PathValue("assetId")
	q := r.URL.Query()
	exp, perr := strconv.ParseInt(q.Get("expires"), 10, 64)
	if perr != nil || q.Get("signature") == "" {
		return problem.Errorf(http.StatusForbidden, "the upload URL lacks its expires and signature parameters: PUT to the whole uploadUrl POST /v2/nvcf/assets answered")
	}
	expires := time.Unix(exp, 0)
	switch err := a.cfg.Signer.Verify(q.Get("signature"), AssetUploadPurpose, expires, account, id); {
	case errors.Is(err, auth.ErrURLExpired):
		return problem.Errorf(http.StatusForbidden, "the upload URL expired at %s (upload URLs work for %s): create a new asset with POST /v2/nvcf/assets for a fresh one",
			expires.UTC().Format(time.RFC3339), a.cfg.UploadTTL)
	case err != nil:
		return problem.Errorf(http.StatusForbidden, "the upload URL's signature does not match it: the URL was altered or is not Gantry's; PUT to the uploadUrl exactly as POST /v2/nvcf/assets answered it")
	}
	ctx := r.Context()
	as, err := a.own(ctx, account, id)
	if err != nil {
		return err
	}
	if err := validate.AssetUploadContentType(as.ContentType, r.Header.Get("Content-Type")); err != nil {
		return err
	}
	if d, sent := r.Header[descriptionHeader]; sent && (len(d) != 1 || d[0] != as.Description) {
		return problem.BadRequest("header x-amz-meta-nvcf-asset-description does not match the asset's description %q: send the description the asset was created with, or leave the header out", as.Description)
	}
	if r.ContentLength > a.cfg.MaxSize {
		return a.tooLarge(r.ContentLength)
	}
	body := &uploadReader{r: r.Body, left: a.cfg.MaxSize}
	info, err := bus.PutObject(ctx, a.cfg.JS, a.cfg.Objects, bus.AssetObject(account, id), body)
	switch {
	case errors.Is(err, errAssetTooLarge):
		return a.tooLarge(-1)
	case err != nil && ctx.Err() != nil:
		return ctx.Err()
	case err != nil && body.readErr != nil:
		return problem.BadRequest("the upload broke off after %d bytes (%v): nothing was stored; PUT the whole content again", body.n, body.readErr)
	case err != nil:
		return fmt.Errorf("api: store asset %s: %w", id, err)
	}
	if err := a.markUploaded(ctx, as, info); err != nil {
		return err
	}
	w.Header().Set("ETag", strconv.Quote(info.Digest))
	w.WriteHeader(http.StatusOK)
	return nil
}

func (a *Assets) tooLarge(n int64) error {
	what := "the upload is larger than"
	if n >= 0 {
		what = fmt.Sprintf("the upload is %d bytes, over", n)
	}
	return problem.Errorf(http.StatusRequestEntityTooLarge, "%s the asset limit of %d bytes (%s; gantry server --max-asset-size): nothing was stored; split the content into several assets",
		what, a.cfg.MaxSize, sizeName(a.cfg.MaxSize))
}

func sizeName(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + " GiB"
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + " MiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// markUploaded records the stored content in the asset's record, read
// again on a conflict (a second upload racing this one: the last record
// wins, as the last object does). A record deleted meanwhile takes the
// content with it.
func (a *Assets) markUploaded(ctx context.Context, as model.Asset, info *jetstream.ObjectInfo) error {
	for {
		as.Size, as.Digest, as.UploadedAt = int64(info.Size), info.Digest, a.cfg.Now().UTC()
		err := a.cfg.Store.UpdateAsset(ctx, &as)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, store.ErrNotFound):
			a.deleteContent(context.WithoutCancel(ctx), as.NCAID, as.ID)
			return problem.NotFound("asset %s was deleted while its content was uploaded; nothing was kept", as.ID)
		case !errors.Is(err, store.ErrConflict):
			return err
		}
		if as, err = a.cfg.Store.GetAsset(ctx, as.NCAID, as.ID); err != nil {
			return err
		}
	}
}

// errAssetTooLarge ends an upload over the limit.
var errAssetTooLarge = errors.New("api: asset over the size limit")

// uploadReader feeds an upload to the object store: it stops with
// errAssetTooLarge past the limit, and keeps the body's own error to tell a
// broken-off upload.
type uploadReader struct {
	r       io.Reader
	left    int64 // bytes still allowed
	n       int64 // bytes read
	readErr error
}

func (u *uploadReader) Read(p []byte) (int, error) {
	m, err := u.r.Read(p)
	u.n += int64(m)
	if u.left -= int64(m); u.left < 0 {
		return m, errAssetTooLarge
	}
	if err != nil && err != io.EOF {
		u.readErr = err
	}
	return m, err
}

// Sweep deletes expired assets, record and content, until ctx ends: at
// once, then every interval (a minute, or a quarter of the assets'
// lifetime when that is shorter). Only the leading replica runs it.
func (a *Assets) Sweep(ctx context.Context) {
	every := max(min(time.Minute, a.cfg.TTL/4), 100*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if n, err := a.SweepOnce(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("api: asset sweep failed; retrying", "err", err)
		} else if n > 0 {
			a.log.Info("api: expired assets deleted", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// SweepOnce deletes every expired asset and any content whose record is
// gone (left by a failure between the two deletes), and returns how many
// assets it deleted. A record changed since it was listed (uploaded again)
// is left for the next pass.
func (a *Assets) SweepOnce(ctx context.Context) (int, error) {
	started := a.cfg.Now()
	all, err := a.cfg.Store.ListAllAssets(ctx)
	if err != nil {
		return 0, err
	}
	live := map[string]bool{}
	n := 0
	for _, as := range all {
		if started.Before(as.ExpiresAt) {
			live[bus.AssetObject(as.NCAID, as.ID)] = true
			continue
		}
		if err := a.cfg.Store.DeleteAssetAt(ctx, as); err != nil {
			if !errors.Is(err, store.ErrConflict) {
				return n, err
			}
			live[bus.AssetObject(as.NCAID, as.ID)] = true
			continue
		}
		a.deleteContent(ctx, as.NCAID, as.ID)
		n++
	}
	objs, err := a.cfg.Objects.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return n, nil
	}
	if err != nil {
		return n, err
	}
	// Content younger than an upload URL may belong to an asset created
	// after the records were listed.
	cutoff := started.Add(-a.cfg.UploadTTL)
	for _, o := range objs {
		if !live[o.Name] && o.ModTime.Before(cutoff) {
			if err := a.cfg.Objects.Delete(ctx, o.Name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
				return n, err
			}
		}
	}
	return n, nil
}

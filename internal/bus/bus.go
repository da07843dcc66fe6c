// Package bus is Gantry's messaging over NATS with JetStream: the invocation
// work queue, the result and desired-state key-value buckets, and the subject
// names every component agrees on. The same code runs against the embedded
// nats-server (gantry dev, tests) and an external NATS cluster.
package bus

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Names of streams, buckets and subjects. Subjects use only ids that the API
// validated ([A-Za-z0-9-]), so no token can contain a NATS wildcard or dot.
const (
	// InvokeStream holds pending invocations; a work queue, so each message
	// is delivered to exactly one worker and removed when acknowledged.
	InvokeStream = "GANTRY_INVOKE"
	// WatchStream holds the calls that were answered 202 while running
	// straight on a worker slot (the fast path), with their bodies, so
	// that the gateways can run one again if its worker goes away. A work
	// queue read by the gateways only.
	WatchStream = "GANTRY_WATCH"
	// WatchConsumer is the consumer every gateway replica shares.
	WatchConsumer = "gateways"
	// ResultsBucket keeps results (and pending markers) of requests whose
	// caller stopped waiting, until the caller polls or the TTL passes.
	ResultsBucket = "gantry_results"
	// LimitsBucket holds the shared rate-limit windows of functions whose
	// rateLimit asks for syncCheck, so every gateway replica counts the
	// same calls.
	LimitsBucket = "gantry_ratelimits"
	// DesiredBucket holds each cluster's whole desired state, keyed by
	// cluster id; agents watch their key and converge.
	DesiredBucket = "gantry_desired"
	// LargeBucket is the object store that holds the answers of polled
	// (202) calls too large for the results bucket, for as long as
	// results are kept.
	LargeBucket = "gantry_large"

	subjectInvokePrefix = "gantry.invoke."
	subjectReportPrefix = "gantry.report."
	subjectSecretPrefix = "gantry.secrets."
	subjectReplyPrefix  = "gantry.reply."
	subjectFastPrefix   = "gantry.fast."
	subjectQueuedPrefix = "gantry.queued."
	subjectLeasePrefix  = "gantry.lease."
	subjectWatchPrefix  = "gantry.watch."
	subjectLoadPrefix   = "gantry.load."
	subjectDemandPrefix = "gantry.demand."
)

// Message size limits. Requests up to 6 MiB and responses up to 5 MiB travel
// inline; the bus allows a little more for headers.
const (
	MaxRequestBody  = 6 << 20
	MaxResponseBody = 5 << 20
	MaxPayload      = 8 << 20
)

// Control headers on invocation messages. HTTP headers of the caller travel
// alongside them unchanged; these names cannot collide with NVCF's.
const (
	HeaderReply   = "Gantry-Reply"   // subject the worker answers on
	HeaderMethod  = "Gantry-Method"  // HTTP method for the function
	HeaderPath    = "Gantry-Path"    // path (and query) for the function
	HeaderStatus  = "Gantry-Status"  // HTTP status of the function's answer
	HeaderAccount = "Gantry-Account" // owner account of the request
	HeaderTaken   = "Gantry-Taken"   // gateway's answer to a worker's reply
	HeaderError   = "Gantry-Error"   // worker-side failure, as a problem detail
	HeaderMode    = "Gantry-Mode"    // ModePollable, or empty: only the caller can take the answer
	HeaderBody    = "Gantry-Body"    // BodyStreamed: the body is not in the message but follows from the gateway
	HeaderLength  = "Gantry-Length"  // the request body's length, when the caller said it
	HeaderWorker  = "Gantry-Worker"  // on a watched call: the address of its worker's endpoint
	HeaderReqID   = "NVCF-REQID"
)

// Values of HeaderMode and HeaderBody.
const (
	// ModePollable marks a call (pexec) whose answer can be polled for, so a
	// worker that finds no gateway waiting still runs it and stores it.
	ModePollable = "pollable"
	// BodyStreamed marks a queued call whose body was too large to queue:
	// only its gateway can send it, so without that gateway it is dropped.
	BodyStreamed = "streamed"
)

// InvokeSubject is the work-queue subject of one function version.
func InvokeSubject(functionID, versionID string) string {
	return subjectInvokePrefix + functionID + "." + versionID
}

// FastSubject is where gateways offer sync calls of one function version to
// its workers' free slots (a queue group: one worker gets each offer).
func FastSubject(functionID, versionID string) string {
	return subjectFastPrefix + functionID + "." + versionID
}

// LeaseSubject is where a gateway asks the workers of one function version
// for a slot it may call the instance on directly (a queue group: one
// worker answers; invoke/direct.go). Only workers whose instance the
// gateways can reach listen there.
func LeaseSubject(functionID, versionID string) string {
	return subjectLeasePrefix + functionID + "." + versionID
}

// QueuedSubject is the doorbell a gateway rings after queueing a call of one
// function version, so that workers with a free slot pull.
func QueuedSubject(functionID, versionID string) string {
	return subjectQueuedPrefix + functionID + "." + versionID
}

// LoadSubject is where gateway id reports, about every half second, the
// sync calls it holds on worker slots per function version (the fast path,
// which no stream counts); the leading autoscaler adds what the streams
// hold. LoadSubjects matches every gateway's.
func LoadSubject(gatewayID string) string { return subjectLoadPrefix + gatewayID }

// LoadSubjects matches every LoadSubject.
const LoadSubjects = subjectLoadPrefix + "*"

// DemandSubject is where a gateway says that a call of one function version
// found no free slot and waits, so the autoscaler looks at once instead of
// at its next period (a call at zero instances must not wait a period).
func DemandSubject(functionID, versionID string) string {
	return subjectDemandPrefix + functionID + "." + versionID
}

// DemandSubjects matches every DemandSubject.
const DemandSubjects = subjectDemandPrefix + "*.*"

// Load is the body of a LoadSubject report: version id -> calls held.
type Load map[string]int

// InvokeSubjects and WatchSubjects match every version's work-queue and
// watch subjects, for counting what the streams hold per version.
const (
	InvokeSubjects = subjectInvokePrefix + "*.*"
	WatchSubjects  = subjectWatchPrefix + "*.*"
)

// ParseInvokeSubject returns the function version of an InvokeSubject.
func ParseInvokeSubject(subject string) (functionID, versionID string, ok bool) {
	rest, ok := strings.CutPrefix(subject, subjectInvokePrefix)
	if !ok {
		return "", "", false
	}
	functionID, versionID, ok = strings.Cut(rest, ".")
	return functionID, versionID, ok && functionID != "" && versionID != ""
}

// WatchSubject is where a gateway records a detached fast-path call of
// one function version (see WatchStream).
func WatchSubject(functionID, versionID string) string {
	return subjectWatchPrefix + functionID + "." + versionID
}

// ParseWatchSubject returns the function version of a WatchSubject.
func ParseWatchSubject(subject string) (functionID, versionID string, ok bool) {
	rest, ok := strings.CutPrefix(subject, subjectWatchPrefix)
	if !ok {
		return "", "", false
	}
	functionID, versionID, ok = strings.Cut(rest, ".")
	return functionID, versionID, ok && functionID != "" && versionID != "" && !strings.Contains(versionID, ".")
}

// ResultSubject is where a result for reqID is published to land in the
// results bucket: what a key-value Put sends, without the bucket lookup that
// agents are not permitted.
func ResultSubject(reqID string) string { return "$KV." + ResultsBucket + "." + reqID }

// ConsumerName is the durable consumer every worker of a version shares.
func ConsumerName(versionID string) string { return "fv-" + versionID }

// ReportSubject is where a cluster's agent sends its heartbeat report.
func ReportSubject(clusterID string) string { return subjectReportPrefix + clusterID }

// ReportSubjectAll matches every agent report, for the control plane.
const ReportSubjectAll = subjectReportPrefix + "*"

// SecretsSubject is where a cluster's agent asks for an instance's secrets.
func SecretsSubject(clusterID string) string { return subjectSecretPrefix + clusterID }

// SecretsSubjectAll matches every agent's secret requests.
const SecretsSubjectAll = subjectSecretPrefix + "*"

// ReplyPrefix is the subject prefix one gateway receives results on.
func ReplyPrefix(gatewayID string) string { return subjectReplyPrefix + gatewayID + "." }

// ClusterFromSubject returns the last token of a per-cluster subject.
func ClusterFromSubject(subject string) string {
	return subject[strings.LastIndexByte(subject, '.')+1:]
}

// Config tunes the JetStream assets.
type Config struct {
	// ResultTTL is how long an unclaimed async result is kept.
	ResultTTL time.Duration
	// Replicas is the JetStream replication factor (1 embedded, 3 in a cluster).
	Replicas int
}

// Setup creates or updates the stream and buckets. Every server replica runs
// it at start; it is idempotent.
func Setup(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	if cfg.ResultTTL <= 0 {
		cfg.ResultTTL = time.Hour
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        InvokeStream,
		Description: "Gantry invocations waiting for a worker",
		Subjects:    []string{subjectInvokePrefix + ">"},
		Retention:   jetstream.WorkQueuePolicy,
		// Direct gets tell a queued call's position (invoke/position.go).
		AllowDirect: true,
		Storage:     jetstream.FileStorage,
		MaxMsgSize:  MaxPayload,
		MaxAge:      24 * time.Hour,
		Replicas:    cfg.Replicas,
	}); err != nil {
		return fmt.Errorf("bus: stream %s: %w", InvokeStream, err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        WatchStream,
		Description: "Gantry calls answered 202 while running on a worker slot, until they have a result",
		Subjects:    []string{subjectWatchPrefix + ">"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		MaxMsgSize:  MaxPayload,
		MaxAge:      24 * time.Hour,
		Replicas:    cfg.Replicas,
	}); err != nil {
		return fmt.Errorf("bus: stream %s: %w", WatchStream, err)
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      LimitsBucket,
		Description: "rate-limit windows shared by the gateways (rateLimit.syncCheck)",
		TTL:         25 * time.Hour, // the longest window is a day
		Storage:     jetstream.MemoryStorage,
		Replicas:    cfg.Replicas,
	}); err != nil {
		return fmt.Errorf("bus: bucket %s: %w", LimitsBucket, err)
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:       ResultsBucket,
		Description:  "results of invocations answered after the caller stopped waiting",
		TTL:          cfg.ResultTTL,
		MaxValueSize: MaxPayload,
		Storage:      jetstream.FileStorage,
		Replicas:     cfg.Replicas,
	}); err != nil {
		return fmt.Errorf("bus: bucket %s: %w", ResultsBucket, err)
	}
	if _, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      LargeBucket,
		Description: "answers of polled invocations too large for the results bucket",
		TTL:         cfg.ResultTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	}); err != nil {
		return fmt.Errorf("bus: object store %s: %w", LargeBucket, err)
	}
	if _, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      AssetsBucket,
		Description: "content of input assets, until their record expires (the leader sweeps both)",
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	}); err != nil {
		return fmt.Errorf("bus: object store %s: %w", AssetsBucket, err)
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      DesiredBucket,
		Description: "desired state of each cluster",
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	}); err != nil {
		return fmt.Errorf("bus: bucket %s: %w", DesiredBucket, err)
	}
	return nil
}

// Connect dials NATS with settings suited to a long-running component:
// unlimited reconnects, a name for monitoring, and errors logged by the
// caller through the returned conn's status.
func Connect(url, name string, opts ...nats.Option) (*nats.Conn, error) {
	base := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.PingInterval(10 * time.Second),
	}
	nc, err := nats.Connect(url, append(base, opts...)...)
	if err != nil {
		if hint := tlsHint(err); hint != "" {
			return nil, fmt.Errorf("bus: connect to %s: %s: %w", url, hint, err)
		}
		return nil, fmt.Errorf("bus: connect to %s: %w", url, err)
	}
	return nc, nil
}

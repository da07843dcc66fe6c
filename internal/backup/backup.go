// Package backup writes and restores Gantry backups: one tar file holding a
// consistent etcd snapshot and the JetStream streams that hold state a
// restored platform needs and cannot derive again.
//
// The file is a tar whose first entry is manifest.json (Manifest): format,
// Gantry and schema versions, the etcd revision, time, and the size and
// SHA-256 of every other entry. etcd/snapshot.db is etcd's own snapshot
// (Maintenance.SnapshotWithVersion), which ends in a SHA-256 of itself;
// jetstream/<stream>.jsonl holds a stream's messages, one Message per line.
//
// What is kept and what is not (see docs/architecture.md, "Backups and
// upgrades"):
//
//   - etcd: every key under the installation's prefix except those bound
//     to a lease (leader election, locks), which die with their lease.
//   - GANTRY_EVENTS: the platform events, which are derived from etcd's
//     history and could not be derived again from a restored etcd.
//   - gantry_results (KV): answered async calls, so a caller holding a
//     request id can still fetch its answer; pending markers are left out,
//     since the calls they wait for are not restored.
//   - gantry_large, gantry_assets (object stores): large answers of those
//     calls and the content of input assets whose records etcd holds.
//   - Not kept: GANTRY_INVOKE and GANTRY_WATCH (calls in flight),
//     gantry_desired (the controller publishes it again from etcd at
//     start), gantry_ratelimits (windows of at most a day, in memory).
//
// The master key (MEK) never goes into a backup: etcd holds only NEKs
// wrapped by it and secrets sealed by NEKs. The operator keeps the MEK
// separately (<data-dir>/keys/mek with the file provider, or the OpenBao
// secret) and hands it to restore.
package backup

import (
	"errors"
	"time"

	"github.com/gantry-dev/gantry/internal/bus"
	"github.com/gantry-dev/gantry/internal/events"
)

// FormatVersion is the layout of the backup file this release writes; it
// reads this version and every earlier one.
const FormatVersion = 1

// Entry names inside the tar.
const (
	ManifestName = "manifest.json"
	SnapshotName = "etcd/snapshot.db"
	streamDir    = "jetstream/"
)

// Entry kinds.
const (
	KindEtcd   = "etcd-snapshot"
	KindStream = "jetstream-stream"
)

// Limits the reader enforces before it trusts anything in a file.
const (
	maxManifest = 1 << 20
	maxEntries  = 64
	// maxLine bounds one stream message's line: a message is at most
	// bus.MaxPayload, base64 grows it by a third, headers add a little.
	maxLine = bus.MaxPayload*4/3 + 1<<20
)

// Errors callers branch on.
var (
	// ErrCorrupt means the file is not a backup this release can trust:
	// damaged, truncated or not a backup at all. Nothing was restored.
	ErrCorrupt = errors.New("backup: the file is damaged or not a Gantry backup")
	// ErrNotEmpty means restore was given a data dir that already holds
	// something.
	ErrNotEmpty = errors.New("backup: the data dir is not empty")
	// ErrNewer means the backup was written by a release with a newer
	// file format or schema than this one understands.
	ErrNewer = errors.New("backup: the backup is from a newer release")
)

// Manifest describes a backup. It is the tar's first entry.
type Manifest struct {
	Format        int       `json:"format"`
	GantryVersion string    `json:"gantryVersion"`
	SchemaVersion int       `json:"schemaVersion"`
	EtcdRevision  int64     `json:"etcdRevision"`
	EtcdVersion   string    `json:"etcdVersion,omitempty"`
	Prefix        string    `json:"prefix"`
	CreatedAt     time.Time `json:"createdAt"`
	// MEKProvider and MEKVersions say which master key the restored
	// secret store needs: the provider the server used and the versions
	// that are not retired. The keys themselves are never in the file.
	MEKProvider string  `json:"mekProvider,omitempty"`
	MEKVersions []int   `json:"mekVersions,omitempty"`
	Entries     []Entry `json:"entries"`
}

// Entry is one file in the backup after the manifest.
type Entry struct {
	Name     string `json:"name"`
	Kind     string `json:"kind"`
	Stream   string `json:"stream,omitempty"`
	Messages int    `json:"messages,omitempty"`
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
}

// Message is one JetStream message of a backed-up stream, as a line of its
// entry: what is needed to publish it again to the same subject.
type Message struct {
	Subject string              `json:"subject"`
	Header  map[string][]string `json:"header,omitempty"`
	Data    []byte              `json:"data,omitempty"`
}

// stream is a stream the backup keeps, and which of its messages.
type stream struct {
	name    string
	subject string // every message's subject starts with it
	keep    func(Message) bool
}

// streams lists what a backup holds besides etcd, in restore order: the
// answers' large bodies before the records that name them.
var streams = []stream{
	{name: events.Stream, subject: events.SubjectPrefix, keep: keepAll},
	{name: "OBJ_" + bus.LargeBucket, subject: "$O." + bus.LargeBucket + ".", keep: keepAll},
	{name: "OBJ_" + bus.AssetsBucket, subject: "$O." + bus.AssetsBucket + ".", keep: keepAll},
	{name: "KV_" + bus.ResultsBucket, subject: "$KV." + bus.ResultsBucket + ".", keep: keepAnswered},
}

func keepAll(Message) bool { return true }

// keepAnswered keeps a results record that holds an answer: not a pending
// marker (its call is not restored, so it would stay pending until the TTL)
// and not a delete or purge marker.
func keepAnswered(m Message) bool {
	if len(m.Header["Kv-Operation"]) > 0 || len(m.Header["KV-Operation"]) > 0 {
		return false
	}
	r, err := bus.DecodeResult(m.Data)
	return err == nil && !r.Pending
}

func knownStream(name string) (stream, bool) {
	for _, s := range streams {
		if s.name == name {
			return s, true
		}
	}
	return stream{}, false
}

// dropHeaders are not carried into the restored stream: message ids would
// sit in the new stream's duplicate window and could swallow new messages
// that happen to reuse one (events' ids are etcd revisions, which restart
// low), and expectations guard the original publish only.
var dropHeaders = map[string]bool{
	"Nats-Msg-Id":                         true,
	"Nats-Expected-Stream":                true,
	"Nats-Expected-Last-Msg-Id":           true,
	"Nats-Expected-Last-Sequence":         true,
	"Nats-Expected-Last-Subject-Sequence": true,
}

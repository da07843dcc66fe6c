package bus

import (
	"crypto/sha256"
	"crypto/subtle"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Verifier is what the bus needs from the control plane's credential store:
// which cluster, if any, an agent token belongs to. Check calls it while the
// client's CONNECT is being processed, concurrently for many connections and
// under the server's auth timeout (2s), so it must be safe for concurrent use
// and fast (an in-memory lookup, not a round trip to etcd).
type Verifier interface {
	VerifyAgent(token string) (clusterID string, ok bool)
}

// Authenticator decides who may connect to the embedded nats-server and what
// each connection may do. The control plane's own connections present the
// internal token and get full permissions; an agent presents its cluster's
// token and gets agentPermissions of that cluster; anything else is refused.
// It installs as server.Options.CustomClientAuthentication (see Apply).
//
// Tokens are compared and handed to the Verifier, never logged or kept in a
// registered user; the server itself redacts them in its own logs.
type Authenticator struct {
	internal       string
	internalDigest [sha256.Size]byte
	verifier       Verifier
	leaves         *LeafAuth // nil: no leaf node is admitted (leafauth.go)
	// perms are an agent's permissions: agentPermissions, or on a leaf
	// node, whose mappings apply before the check, leafPermissions.
	perms func(clusterID string) *server.Permissions
}

var _ server.Authentication = (*Authenticator)(nil)

// Usernames the server shows for authenticated connections (connz, logs).
const (
	internalUser    = "gantry-internal"
	agentUserPrefix = "agent:"
)

// agentInboxRoot is the root of agents' inbox subjects. An agent may
// subscribe only under its own cluster's branch, so it cannot read the
// replies (secrets among them) sent to the control plane or to other
// clusters' agents, which the default "_INBOX." would allow.
const agentInboxRoot = "_GANTRY_INBOX."

// NewAuthenticator returns an Authenticator accepting internalToken as the
// control plane's credential and agent tokens that v accepts. An empty
// internalToken admits no internal connection; a nil v admits no agent.
func NewAuthenticator(internalToken string, v Verifier) *Authenticator {
	return &Authenticator{internal: internalToken, internalDigest: sha256.Sum256([]byte(internalToken)), verifier: v, perms: agentPermissions}
}

// Apply makes opts authenticate every client with a. Call it on the options
// before server.NewServer.
func (a *Authenticator) Apply(opts *server.Options) {
	opts.CustomClientAuthentication = a
}

// InternalOption is the connect option carrying the internal token, for the
// control plane's own connections to a server that a guards.
func (a *Authenticator) InternalOption() nats.Option {
	return nats.Token(a.internal)
}

// Check implements server.Authentication: it admits the connection and
// registers its permissions, or refuses it.
func (a *Authenticator) Check(c server.ClientAuthentication) bool {
	if c.Kind() == server.LEAF {
		return a.checkLeaf(c)
	}
	if c.Kind() != server.CLIENT {
		return false
	}
	opts := c.GetOpts()
	if opts == nil || opts.Token == "" {
		return false
	}
	token := opts.Token
	// Compare digests so that the comparison takes the same time whatever
	// the lengths of the two tokens.
	if a.internal != "" {
		d := sha256.Sum256([]byte(token))
		if subtle.ConstantTimeCompare(d[:], a.internalDigest[:]) == 1 {
			c.RegisterUser(&server.User{Username: internalUser})
			return true
		}
	}
	if a.verifier == nil {
		return false
	}
	clusterID, ok := a.verifier.VerifyAgent(token)
	// The cluster id becomes one subject token in the permissions; anything
	// that could widen them (a dot, a wildcard, whitespace) is refused.
	if !ok || !isSubjectToken(clusterID) {
		return false
	}
	c.RegisterUser(&server.User{Username: agentUserPrefix + clusterID, Permissions: a.perms(clusterID)})
	return true
}

// AgentInboxPrefix is the inbox prefix an agent of clusterID must connect
// with (nats.CustomInboxPrefix); its permissions allow subscribing nowhere
// else.
func AgentInboxPrefix(clusterID string) string { return agentInboxRoot + clusterID }

// AgentOptions are the connect options of an agent of clusterID: its token
// and its inbox prefix. Pass them to Connect.
func AgentOptions(clusterID, token string) []nats.Option {
	return []nats.Option{nats.Token(token), nats.CustomInboxPrefix(AgentInboxPrefix(clusterID))}
}

// FromAgent reports whether msg, received on a per-cluster subject
// (ReportSubject, SecretsSubject), was sent by that cluster's agent, and
// returns the cluster. Handlers must check it rather than trust the subject:
// NATS does not authorize reply subjects, so any agent can make the server
// publish a JetStream API answer (server-made JSON, no reply subject) to any
// subject, gantry.report.<other> included, by naming it as the reply of a
// request it may send. A request from the agent itself carries a reply under
// the cluster's inbox prefix, which such messages never have: JetStream
// answers carry no reply and its deliveries reply to $JS.ACK or $JS.FC.
func FromAgent(msg *nats.Msg) (clusterID string, ok bool) {
	clusterID = ClusterFromSubject(msg.Subject)
	if !isSubjectToken(clusterID) {
		return "", false
	}
	return clusterID, strings.HasPrefix(msg.Reply, AgentInboxPrefix(clusterID)+".")
}

// agentPermissions is exactly what an agent of clusterID needs, listed with
// the call that needs it. Everything else is denied: other clusters'
// report and secrets subjects and desired state, any write of desired
// state, reading results, publishing work, stream create/update/delete/purge,
// consumer deletion, and every other inbox.
//
// What cannot be narrowed to the cluster with static subject permissions,
// and why:
//
//   - Work queues. Which versions run on a cluster changes at run time and a
//     version's instances may run on several clusters, and NATS wildcards
//     match whole tokens only ("fv-*" is not a pattern), so an agent may
//     create/update, inspect, pull from and ack any consumer of
//     GANTRY_INVOKE. It can therefore take or disturb any version's work.
//     Wildcard characters may also be published literally in a subject, so
//     the filter part of the create subject may be "gantry.invoke.*.*".
//   - Gateway replies: per gateway and per request (gantry.reply.*.*):
//     every frame of a call's stream, to any gateway.
//   - Offers, doorbells and lease asks (gantry.fast.*.*, gantry.queued.*.*,
//     gantry.lease.*.*), for the same reason as work queues: an agent can
//     take any version's offered calls, or answer a gateway's ask for a
//     slot with an endpoint of its choosing.
//   - Results: keyed by request id ($KV.gantry_results.*); an agent can
//     overwrite a result whose request id it knows. It cannot read results,
//     nor list their keys (no stream info on the results bucket).
//   - Large results: an agent can add objects to the gantry_large object
//     store and read the meta of an object whose name it knows, which
//     names its chunks; Gantry's names are random, so only the agent that
//     put one (and the gateways) know them. Stream info on the store shows
//     its size and message counts, not names.
//   - Assets: any agent may ask for an asset; the gateway streams it only
//     for a grant it signed for the asset's call (bus.AssetGrant), and only
//     to an agent inbox (IsAgentInbox). An agent sees the grants of the
//     calls it can see, which is any version's (above).
//   - Reply subjects are not authorized at all (see FromAgent): an agent can
//     make the server publish its answer to an API request (stream info, a
//     publish ack) to any subject, $KV.gantry_desired.<other> included, so
//     the agent must ignore a desired state whose clusterId is not its own
//     and the control plane must accept reports and secret requests only
//     when FromAgent says so.
//   - Stream info on the desired-state bucket, needed to bind the watch,
//     can list which clusters have a desired state (their ids).
//
// Removing these needs a NATS account per cluster importing only its own
// services and streams; then reply subjects, consumers and inboxes stay in
// the cluster's account.
func agentPermissions(clusterID string) *server.Permissions {
	desiredStream := "KV_" + DesiredBucket
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			// jetstream.KeyValue(DesiredBucket): stream info binds the bucket.
			"$JS.API.STREAM.INFO." + desiredStream,
			// KeyValue.Watch(clusterID): an ordered push consumer whose
			// filter the server checks against the last tokens of the create
			// subject, so only this cluster's key can be watched...
			"$JS.API.CONSUMER.CREATE." + desiredStream + ".*.$KV." + DesiredBucket + "." + clusterID,
			// ... and its flow-control replies.
			"$JS.FC." + desiredStream + ".>",
			// Worker: CreateOrUpdateConsumer fv-<version> with its filter
			// (the server checks the filter against the subject), consumer
			// info, one-message pull requests, and ack/nak/in-progress.
			"$JS.API.CONSUMER.CREATE." + InvokeStream + ".*." + subjectInvokePrefix + "*.*",
			"$JS.API.CONSUMER.INFO." + InvokeStream + ".*",
			"$JS.API.CONSUMER.MSG.NEXT." + InvokeStream + ".*",
			"$JS.ACK." + InvokeStream + ".>",
			// Worker: a result nobody waited for, published as a KV put...
			"$KV." + ResultsBucket + ".*",
			// ... and, when too large for it, put in the object store:
			// bind it, check that the (fresh) name is unused, then its
			// chunks and meta.
			"$JS.API.STREAM.INFO.OBJ_" + LargeBucket,
			"$JS.API.DIRECT.GET.OBJ_" + LargeBucket + ".$O." + LargeBucket + ".M.*",
			"$O." + LargeBucket + ".C.*",
			"$O." + LargeBucket + ".M.*",
			// Worker: the answer to the waiting gateway (and credit for an
			// asset a gateway streams to it).
			subjectReplyPrefix + "*.*",
			// Worker: fetch a call's asset, with the grant the call carried.
			AssetFetchSubject,
			// Heartbeat reports and secret requests of this cluster only.
			ReportSubject(clusterID),
			SecretsSubject(clusterID),
			// What this site publishes for the others (SiteSubject).
			siteSubjectPrefix + clusterID + ".>",
			// Its instances' log lines (LogsSubject).
			subjectLogsPrefix + clusterID + ".>",
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{
			// Every reply, pull delivery, watch delivery and call stream
			// comes to the agent's own inboxes...
			AgentInboxPrefix(clusterID) + ".>",
			// ... but for the offers of sync calls to free slots, and the
			// doorbell that says a call was queued, per function version.
			subjectFastPrefix + "*.*",
			subjectQueuedPrefix + "*.*",
			// ... and the gateways' asks for a slot to call directly.
			subjectLeasePrefix + "*.*",
			// What every site publishes for the others (SiteSubject).
			SiteSubjects,
		}},
	}
}

// isSubjectToken reports whether s can stand as one literal subject token:
// non-empty, and only letters, digits, '-' and '_' (ids are validated to
// [A-Za-z0-9-]).
func isSubjectToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9', b == '-', b == '_':
		default:
			return false
		}
	}
	return true
}

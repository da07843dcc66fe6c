package bus

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// HubDomain is the JetStream domain of the hub, set on the embedded server
// when it accepts leaf nodes. NATS never forwards the plain JetStream API
// ($JS.API.>, $KV.>) over a leaf connection of an ordinary account, so a
// leaf maps what its clients send there to $JS.gantry.API.> (leafMappings)
// and the hub maps it back: clients in a cluster use the plain API.
const HubDomain = "gantry"

// jsDomainAPI is the prefix under which the hub's JetStream API crosses a
// leaf connection.
const jsDomainAPI = "$JS." + HubDomain + ".API."

// siteSubjectPrefix roots the subjects sites exchange among themselves
// (SiteSubject).
const siteSubjectPrefix = "gantry.site."

// SiteSubject is where cluster clusterID's clients publish what other
// sites and the hub may read: name's tokens under gantry.site.<cluster>.
// Every site may subscribe to every site's (SiteSubjects); nothing of one
// tenant belongs there.
func SiteSubject(clusterID, name string) string { return siteSubjectPrefix + clusterID + "." + name }

// SiteSubjects matches every site's SiteSubject.
const SiteSubjects = siteSubjectPrefix + ">"

// LeafKeys tells which cluster a leaf node's NKey belongs to. Check calls
// it while a leaf's CONNECT is processed, under the server's auth timeout.
type LeafKeys interface {
	LeafCluster(publicKey string) (clusterID string, ok bool)
}

// LeafKeyDir is the output directory of `gantry bus gen-secrets`: the user
// NKey of site <id> is DIR/cpc/<id>/nkeys/user/pubkey. It is read at every
// lookup (leaf connections are few), so a site added by a later run is
// admitted without a restart, and a removed one is refused.
type LeafKeyDir string

var _ LeafKeys = LeafKeyDir("")

// LeafCluster implements LeafKeys.
func (d LeafKeyDir) LeafCluster(publicKey string) (string, bool) {
	files, err := filepath.Glob(filepath.Join(string(d), "cpc", "*", "nkeys", "user", "pubkey"))
	if err != nil {
		return "", false
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || strings.TrimSpace(string(b)) != publicKey {
			continue
		}
		// .../cpc/<id>/nkeys/user/pubkey
		return filepath.Base(filepath.Dir(filepath.Dir(filepath.Dir(f)))), true
	}
	return "", false
}

// LeafAuth is how the hub admits leaf nodes: each signs the server's nonce
// with its site's user NKey (LeafNodeOptions), names its cluster as the
// user of its hub URL, and, when the connection carries a verified client
// certificate, that certificate's common name must be the same cluster
// (gen-secrets issues cpc/<id>/tls with CN = id). The key must be that
// cluster's according to Keys: a leaf with another site's key is refused.
type LeafAuth struct {
	Keys LeafKeys
	// Refused is told why a leaf was refused (never the key or signature).
	Refused func(remote, reason string)
}

// Usernames the server shows for leaf connections (leafz, logs).
const leafUserPrefix = "leaf:"

// AdmitLeaves makes a also admit leaf nodes per l. Call it before the
// server starts.
func (a *Authenticator) AdmitLeaves(l LeafAuth) {
	if l.Refused == nil {
		l.Refused = func(string, string) {}
	}
	a.leaves = &l
}

// checkLeaf admits a leaf connection with the permissions of its cluster
// (leafPermissions), or refuses it saying why.
func (a *Authenticator) checkLeaf(c server.ClientAuthentication) bool {
	l := a.leaves
	if l == nil || l.Keys == nil {
		return false
	}
	remote := ""
	if addr := c.RemoteAddress(); addr != nil {
		remote = addr.String()
	}
	refuse := func(format string, args ...any) bool {
		l.Refused(remote, fmt.Sprintf(format, args...))
		return false
	}
	opts := c.GetOpts()
	if opts == nil || opts.Nkey == "" || opts.Sig == "" {
		return refuse("the leaf presented no NKey: give the agent its site's seed (gen-secrets' cpc/<id>/nkeys/user/seed)")
	}
	claimed := opts.Username
	if !isSubjectToken(claimed) {
		return refuse("the leaf names no cluster (the user of its hub URL)")
	}
	sig, err := base64.RawURLEncoding.DecodeString(opts.Sig)
	if err != nil {
		if sig, err = base64.StdEncoding.DecodeString(opts.Sig); err != nil {
			return refuse("the leaf's signature of the nonce is not base64")
		}
	}
	pub, err := nkeys.FromPublicKey(opts.Nkey)
	if err != nil || !nkeys.IsValidPublicUserKey(opts.Nkey) {
		return refuse("the leaf of cluster %s presented no user public key", claimed)
	}
	if err := pub.Verify(c.GetNonce(), sig); err != nil {
		return refuse("the leaf of cluster %s did not sign the nonce with the key it presented", claimed)
	}
	cluster, ok := l.Keys.LeafCluster(opts.Nkey)
	switch {
	case !ok:
		return refuse("the leaf of cluster %s presented a key of no known site (not in the hub's leaf keys)", claimed)
	case cluster != claimed:
		return refuse("the leaf of cluster %s presented another site's key: give it its own site's seed", claimed)
	case !isSubjectToken(cluster):
		return refuse("the site's id cannot name a subject")
	}
	if st := c.GetTLSConnectionState(); st != nil && len(st.VerifiedChains) > 0 && len(st.VerifiedChains[0]) > 0 {
		if cn := st.VerifiedChains[0][0].Subject.CommonName; cn != cluster {
			return refuse("the leaf of cluster %s presented the client certificate of %q: give it its own site's (cpc/<id>/tls)", cluster, cn)
		}
	}
	c.RegisterUser(&server.User{Username: leafUserPrefix + cluster, Permissions: leafPermissions(cluster)})
	return true
}

// leafPermissions are an agent's permissions (agentPermissions), as they
// cross a leaf connection: the JetStream API under the hub's domain
// (jsDomainAPI), everything else unchanged. From the leaf's side: Publish
// is what its clients may send to the hub, Subscribe what they may receive.
func leafPermissions(clusterID string) *server.Permissions {
	p := agentPermissions(clusterID)
	pub := make([]string, 0, len(p.Publish.Allow))
	for _, s := range p.Publish.Allow {
		pub = append(pub, toHubDomain(s))
	}
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: pub},
		Subscribe: &server.SubjectPermission{Allow: p.Subscribe.Allow},
	}
}

// toHubDomain is the subject a leaf sends for s (see leafMappings).
func toHubDomain(s string) string {
	if rest, ok := strings.CutPrefix(s, "$JS.API."); ok {
		return jsDomainAPI + rest
	}
	if strings.HasPrefix(s, "$KV.") {
		return jsDomainAPI + s
	}
	return s
}

// leafMappings are the leaf's subject mappings that send its clients'
// JetStream API to the hub's domain; the hub maps them back.
var leafMappings = map[string]string{
	"$JS.API.>": jsDomainAPI + ">",
	"$KV.>":     jsDomainAPI + "$KV.>",
}

// constantTimeEqual compares a and b in time independent of where they
// differ and of their lengths.
func constantTimeEqual(a, b string) bool {
	da, db := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(da[:], db[:]) == 1
}

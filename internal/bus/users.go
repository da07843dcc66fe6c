package bus

import (
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// UserVerifier is what the bus needs to admit the people and programs of an
// account (not the control plane, not agents): the account a credential
// (an API key or admin token, given as an MQTT password or a NATS token)
// belongs to, if it may read that account's events, when the credential
// expires (zero: never), and why not otherwise. Check calls it while a CONNECT is processed, under the
// server's auth timeout (2 s), concurrently; it must not log the
// credential.
type UserVerifier interface {
	VerifyUser(token string) (account string, expires time.Time, err error)
}

// UserConnectionLimit is the longest a user connection lives: the server
// closes it then (or when its credential expires, if sooner) and the
// client reconnects, presenting its credential again, so a revoked key's
// connections end within this.
const UserConnectionLimit = 10 * time.Minute

// Usernames of user connections, as the server shows them (connz).
const userPrefix = "user:"

// userAuthenticator admits what the Authenticator admits and, after it,
// user credentials, each with permission to subscribe to its account's
// subjects (subjects(account)) and to publish nothing.
type userAuthenticator struct {
	inner    *Authenticator
	users    UserVerifier
	subjects func(account string) []string
	refused  func(remote, reason string)
}

var _ server.Authentication = (*userAuthenticator)(nil)

// Check implements server.Authentication.
func (u *userAuthenticator) Check(c server.ClientAuthentication) bool {
	if u.inner != nil && u.inner.Check(c) {
		return true
	}
	if c.Kind() != server.CLIENT {
		return false
	}
	opts := c.GetOpts()
	remote := ""
	if a := c.RemoteAddress(); a != nil {
		remote = a.String()
	}
	if opts == nil || opts.Token == "" {
		u.refused(remote, "no credential: send an API key or an admin token as the password (MQTT) or token (NATS)")
		return false
	}
	account, expires, err := u.users.VerifyUser(opts.Token)
	if err != nil {
		u.refused(remote, err.Error())
		return false
	}
	if !isSubjectToken(account) {
		u.refused(remote, "the account cannot name a subject")
		return false
	}
	deadline := time.Now().Add(UserConnectionLimit)
	if !expires.IsZero() && expires.Before(deadline) {
		deadline = expires
	}
	c.RegisterUser(&server.User{Username: userPrefix + account, ConnectionDeadline: deadline, Permissions: &server.Permissions{
		Publish:   &server.SubjectPermission{Deny: []string{">"}},
		Subscribe: &server.SubjectPermission{Allow: u.subjects(account)},
	}})
	return true
}

package agent

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
)

// identityKey is the key of the identity in its Secret.
const identityKey = "identity.json"

// SecretIdentity keeps the identity in a Secret of the agent's own namespace.
// An agent pod has no durable disk of its own, and a Secret survives the pod
// being rescheduled, so the cluster id stays the same and the agent never
// registers a second cluster.
type SecretIdentity struct {
	// Secrets is the Secrets API of the agent's namespace.
	Secrets corev1client.SecretInterface
	// Namespace is only for messages; Name is the Secret's name.
	Namespace, Name string
}

var _ IdentityStore = SecretIdentity{}

// String names the Secret.
func (s SecretIdentity) String() string { return fmt.Sprintf("Secret %s/%s", s.Namespace, s.Name) }

// Load reads the Secret; a missing Secret means no identity yet.
func (s SecretIdentity) Load(ctx context.Context) (Identity, bool, error) {
	sec, err := s.Secrets.Get(ctx, s.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return Identity{}, false, nil
	}
	if err != nil {
		return Identity{}, false, fmt.Errorf("agent: read identity from %s: %w", s, err)
	}
	b, ok := sec.Data[identityKey]
	if !ok {
		return Identity{}, false, nil
	}
	return DecodeIdentity(b, s.String())
}

// Save creates or updates the Secret.
func (s SecretIdentity) Save(ctx context.Context, id Identity) error {
	b, _ := json.Marshal(id)
	sec, err := s.Secrets.Get(ctx, s.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		sec = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: s.Name,
				Labels: map[string]string{"app.kubernetes.io/managed-by": "gantry", "app.kubernetes.io/component": "agent"}},
			Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{identityKey: b},
		}
		_, err = s.Secrets.Create(ctx, sec, metav1.CreateOptions{})
	case err == nil:
		if sec.Data == nil {
			sec.Data = map[string][]byte{}
		}
		sec.Data[identityKey] = b
		_, err = s.Secrets.Update(ctx, sec, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("agent: save identity to %s: %w", s, err)
	}
	return nil
}

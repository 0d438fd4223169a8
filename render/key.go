package render

import (
	"log/slog"

	discoveryv1 "k8s.io/api/discovery/v1"
)

// ServiceKey names a Service: the unit that edsync debounces, renders and writes.
type ServiceKey struct {
	Namespace string
	Name      string
}

// String gives "namespace/name", the form used in logs and flags.
func (k ServiceKey) String() string { return k.Namespace + "/" + k.Name }

// LogValue logs the key as "namespace/name" in every handler (JSON's would
// otherwise print the struct's fields).
func (k ServiceKey) LogValue() slog.Value { return slog.StringValue(k.String()) }

// ServiceOf returns the Service a slice belongs to, read from its
// kubernetes.io/service-name label. ok is false for a slice without the label
// (a slice managed by something other than a Service): such slices are not
// published, and the caller counts them.
func ServiceOf(s *discoveryv1.EndpointSlice) (key ServiceKey, ok bool) {
	name := s.Labels[discoveryv1.LabelServiceName]
	if name == "" || s.Namespace == "" {
		return ServiceKey{}, false
	}
	return ServiceKey{Namespace: s.Namespace, Name: name}, true
}

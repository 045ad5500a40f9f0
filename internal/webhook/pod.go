// Package webhook holds the mutating admission webhook that mounts a replica's key Secret.
package webhook

import (
	"context"
	"fmt"
	"path"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/validation"
	ctrl "sigs.k8s.io/controller-runtime"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
)

const (
	// Path is where the webhook is served.
	Path = "/mutate-v1-pod"
	// VolumeName is the name of the injected key volume.
	VolumeName = "dkm-key"
	// DefaultMountPath is where the key Secret is mounted unless dkm.io/mount-path says otherwise.
	DefaultMountPath = "/var/run/secrets/dkm"
)

// PodInjector mounts the key Secret of the DKMContainer a pod names in its dkm.io/inject
// annotation, read-only, into every container. The Secret's name depends on the pod's name, so a
// pod created with generateName gets its final name here (the API server keeps a name that is
// already set), the same way the API server would pick it.
type PodInjector struct{}

// Default mutates one pod. It is idempotent, so reinvocation changes nothing.
func (PodInjector) Default(_ context.Context, pod *corev1.Pod) error {
	dkm, ok := pod.Annotations[dkmv1.AnnotationInject]
	if !ok {
		return nil
	}
	if errs := validation.IsDNS1123Subdomain(dkm); len(errs) > 0 {
		return fmt.Errorf("annotation %s=%q does not name a DKMContainer: %v", dkmv1.AnnotationInject, dkm, errs)
	}
	mountPath := DefaultMountPath
	if p, ok := pod.Annotations[dkmv1.AnnotationMountPath]; ok {
		if !path.IsAbs(p) || path.Clean(p) != p {
			return fmt.Errorf("annotation %s=%q must be a clean absolute path", dkmv1.AnnotationMountPath, p)
		}
		mountPath = p
	}
	if pod.Name == "" {
		if pod.GenerateName == "" {
			return fmt.Errorf("pod has neither a name nor generateName")
		}
		// What the API server's name generator does: generateName plus five random characters.
		pod.Name = pod.GenerateName + rand.String(5)
	}
	for _, v := range pod.Spec.Volumes {
		if v.Name == VolumeName {
			return nil
		}
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{
		Name: VolumeName,
		VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			// Not optional: the kubelet waits for the projector to create it, so a replica never
			// starts without its key.
			SecretName: dkmv1.KeySecretName(dkm, pod.Name),
		}},
	})
	mount := corev1.VolumeMount{Name: VolumeName, MountPath: mountPath, ReadOnly: true}
	for i := range pod.Spec.Containers {
		pod.Spec.Containers[i].VolumeMounts = append(pod.Spec.Containers[i].VolumeMounts, mount)
	}
	return nil
}

// +kubebuilder:webhook:path=/mutate-v1-pod,mutating=true,failurePolicy=fail,sideEffects=None,groups="",resources=pods,verbs=create,versions=v1,name=inject.dkm.io,admissionReviewVersions=v1,reinvocationPolicy=IfNeeded

// SetupWithManager registers the webhook on the manager's webhook server.
func SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewWebhookManagedBy(mgr, &corev1.Pod{}).
		WithDefaulter(PodInjector{}).
		WithDefaulterCustomPath(Path).
		Complete()
}

// InjectionLabel opts a namespace in to key injection (as Istio's istio-injection label does).
// The webhook's failure policy is Fail, so that a replica never starts without its key because
// the operator was briefly down; the namespace selector limits that to opted-in namespaces.
const InjectionLabel = "dkm.io/injection"

// NamespaceSelector is the webhook configuration's namespace selector (config/webhook and the
// Helm chart carry the same).
func NamespaceSelector() *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{InjectionLabel: "enabled"}}
}

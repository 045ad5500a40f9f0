package controllers

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// CacheOptions keeps the manager's cache narrow: Secrets only when labelled as projected key
// Secrets (never every Secret in the cluster), and only the given namespaces when any are given
// (namespaced mode). Bind and KEK Secrets are read uncached through the API reader. Pods are not
// in it: the projector watches them only where a DKMContainer selects pods (namespaceCaches).
func CacheOptions(namespaces []string) cache.Options {
	projected, _ := labels.NewRequirement(LabelContainer, selection.Exists, nil)
	opts := cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Label: labels.NewSelector().Add(*projected)},
		},
	}
	if len(namespaces) > 0 {
		opts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			opts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return opts
}

// projectionFields keeps of a pod what the projector reads: its identity and labels (the
// selector, the Secret's owner), whether it is terminating or finished, and its service
// account. Every other pod of such a namespace is cached too (a selector can match any), so
// the rest (containers, volumes, status, managed fields) is dropped before it is stored.
func projectionFields(in any) (any, error) {
	pod, ok := in.(*corev1.Pod)
	if !ok {
		return in, nil
	}
	return &corev1.Pod{
		TypeMeta: pod.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID, ResourceVersion: pod.ResourceVersion,
			Labels: pod.Labels, DeletionTimestamp: pod.DeletionTimestamp,
		},
		Spec:   corev1.PodSpec{ServiceAccountName: pod.Spec.ServiceAccountName},
		Status: corev1.PodStatus{Phase: pod.Status.Phase},
	}, nil
}

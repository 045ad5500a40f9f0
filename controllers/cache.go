package controllers

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// CacheOptions keeps the manager's cache narrow: Secrets only when labelled as projected key
// Secrets (never every Secret in the cluster), and only the given namespaces when any are given
// (namespaced mode). Bind and KEK Secrets are read uncached through the API reader.
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
